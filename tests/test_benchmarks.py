"""Smoke tests: every benchmark runs end to end on tiny parameters and reports its fields.

No timing assertions here (the figures belong to benchmarks/README.md); only that the benchmark
runs, counts what it should and writes the JSON it prints.
"""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import generation_throughput


@pytest.mark.parametrize("diagnostics", [[], ["--tcp-nodelay", "--listen-backlog", "16"]])
def test_generation_throughput_reports_every_figure(tmp_path, capsys, diagnostics):
    out = tmp_path / "figures.json"
    args = ["--questions", "4", "--latency", "0.001", "--repeats", "1", "--json", str(out)]
    result = generation_throughput.main([*args, *diagnostics])

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for key in (
        "date",
        "machine",
        "parameters",
        "sequential",
        "default",
        "speedup_vs_sequential",
        "bound_requests_per_s",
        "share_of_bound",
        "meets_target",
        "schedule_bound_requests_per_s",
        "rerun_requests",
        "store_commit_ms",
    ):
        assert key in result, key
    assert {"cpu", "cores", "python", "platform", "torch_threads"} <= set(result["machine"])
    params = result["parameters"]
    assert params["questions"] == 4 and params["concurrency"] == 8
    assert params["fake_server_tcp_nodelay"] is bool(diagnostics)
    for run in ("sequential", "default"):
        assert result[run]["requests"] == 8  # 4 questions × D=1 × 2 calls
        assert result[run]["requests_per_s"] > 0
    assert result["sequential"]["concurrency"] == 1
    assert result["sequential"]["max_in_flight"] == 1
    assert result["bound_requests_per_s"] == pytest.approx(8 / 0.001)
    assert result["rerun_requests"] == 0
    assert result["server_handler_errors"] == []
    table = capsys.readouterr().out
    assert "sequential (concurrency 1)" in table and "re-run on the same workspace" in table


# ---- training and evaluation (torch): tiny parameters, one thread --------------------------------


@pytest.mark.slow
def test_training_throughput_reports_every_figure(tmp_path, capsys):
    from benchmarks import training_throughput

    out = tmp_path / "figures.json"
    args = ["--questions", "150", "--steps", "2", "--warmup-steps", "1", "--repeats", "1"]
    tiny = ["--threads", "1", "--width", "32", "--layers", "1", "--batch-size", "4"]
    result = training_throughput.main([*args, *tiny, "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for key in ("date", "machine", "parameters", "variants", "project_vs_baseline"):
        assert key in result, key
    assert {"cpu", "cores", "python", "platform", "torch_threads"} <= set(result["machine"])
    assert result["machine"]["torch_threads"] == 1
    params = result["parameters"]
    assert params["tokenizer"] == "words" and params["timed_steps"] == 2
    assert 0 < params["records"] <= 150
    for name in ("project", "baseline", "diagnostic"):
        variant = result["variants"][name]
        assert variant["tokens_per_s"] > 0 and 0 <= variant["padding_waste"] < 1
        [run] = variant["runs"]
        assert run["steps"] == 2 and run["tokens"] <= run["positions"]
    assert result["variants"]["baseline"]["ratio_to_baseline"] == pytest.approx(1.0)
    assert "project vs baseline" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluation_batching_reports_every_figure(tmp_path, capsys):
    from benchmarks import evaluation_batching

    out = tmp_path / "figures.json"
    args = ["--prompts", "5", "--batch-sizes", "2,4", "--max-new-tokens", "3", "--repeats", "1"]
    result = evaluation_batching.main([*args, "--threads", "1", "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["identical_to_batch_1"] is True  # the benchmark raises otherwise
    assert set(result["batch_sizes"]) == {"1", "2", "4"}
    for figures in result["batch_sizes"].values():
        assert figures["examples_per_s"] > 0 and figures["ratio_to_batch_1"] > 0
    assert result["batch_sizes"]["1"]["ratio_to_batch_1"] == pytest.approx(1.0)
    assert result["answers"]["new_tokens_total"] <= 5 * 3
    assert {"cpu", "cores", "torch_threads"} <= set(result["machine"])
    assert "batch size   4" in capsys.readouterr().out


@pytest.mark.slow
def test_training_memory_reports_every_figure(tmp_path, capsys):
    from benchmarks import training_memory

    out = tmp_path / "figures.json"
    args = ["--steps", "1", "--batch-size", "1", "--tokens", "16", "--repeats", "1"]
    result = training_memory.main([*args, "--threads", "1", "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    lora, full = result["variants"]["lora"], result["variants"]["full"]
    assert lora["model_parameters"] == full["model_parameters"] > 100_000_000  # GPT-2 small
    assert lora["trainable_parameters"] < full["trainable_parameters"] == full["model_parameters"]
    for variant in (lora, full):
        assert variant["steps"] == 1 and variant["batch_shapes"] == [[1, 16]]
        assert variant["peak_mib"] >= variant["rss_after_load_mib"] > 0
        assert variant["peak_minus_load_mib"] >= 0
        assert variant["peak_minus_load_mib_runs"] == [variant["peak_minus_load_mib"]]
    assert result["full_vs_lora"] > 0
    assert "full / LoRA" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_seeds_runs_the_pipeline_per_seed_and_summarises(tmp_path, capsys):
    from benchmarks import demo_seeds

    config = tmp_path / "mini.yaml"
    text = (demo_seeds.REPO / "configs" / "demo.yaml").read_text()
    text = re.sub(r"(synthetic_train: \{seed: \d+, size: )\d+", r"\g<1>30", text)
    text = re.sub(r"(synthetic_test: \{seed: \d+, size: )\d+", r"\g<1>6", text)
    # An untrained student writes to the cap: keep the cap small so this stays a smoke test.
    config.write_text(re.sub(r"max_total_length: \d+", "max_total_length: 96", text))
    out = tmp_path / "seeds.json"
    args = ["--config", str(config), "--seeds", "0", "1", "--max-steps", "2", "--json", str(out)]
    result = demo_seeds.main(args)

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [s["seed"] for s in result["seeds"]] == [0, 1]
    for s in result["seeds"]:
        assert 0 <= s["vanilla_accuracy"] <= 1 and 0 <= s["cot_accuracy"] <= 1
        assert s["lead_points"] == round(100 * (s["cot_accuracy"] - s["vanilla_accuracy"]), 2)
    assert set(result["summary"]) == {
        "vanilla_accuracy",
        "cot_accuracy",
        "lead_points",
        "wall_seconds",
    }
    assert "| mean (min–max) |" in capsys.readouterr().out


@pytest.mark.slow
def test_smollm2_student_reports_every_figure(tmp_path, capsys, smollm2_folder):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from benchmarks import smollm2_student

    # SmolLM2's architecture and tokenizer, one small layer: the real model's code paths, cheaply.
    config = LlamaConfig.from_pretrained(smollm2_folder)
    config.num_hidden_layers, config.hidden_size, config.intermediate_size = 1, 64, 128
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 2, 1, 32
    model = tmp_path / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(model)
    AutoTokenizer.from_pretrained(smollm2_folder).save_pretrained(model)
    out = tmp_path / "figures.json"
    args = ["--model", str(model), "--questions", "8", "--batch-size", "2", "--warmup-steps", "0"]
    args += ["--steps", "2", "--threads", "1", "--variants", "lora-fp32", "full-fp32"]
    args += ["--eval-prompts", "3", "--eval-batch-size", "2", "--max-new-tokens", "3"]
    result = smollm2_student.main([*args, "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert {"cpu", "cores", "torch_threads", "fast_bf16"} <= set(result["machine"])
    assert list(result["variants"]) == ["lora-fp32", "full-fp32"]
    lora, full = result["variants"]["lora-fp32"], result["variants"]["full-fp32"]
    assert lora["trainable_parameters"] < full["trainable_parameters"] == full["model_parameters"]
    for variant in (lora, full):
        assert variant["steps"] == variant["timed_steps"] == 2 and len(variant["losses"]) == 2
        assert variant["tokens_per_s"] > 0 and variant["timed_tokens"] > 0
        assert variant["peak_mib"] >= variant["rss_after_load_mib"] > 0
        assert variant["tokens_per_example"]["min"] > 10  # SmolLM2 tokens, EOS included
    assert lora["tokens_per_s_vs_baseline"] == pytest.approx(1.0)
    assert full["timed_tokens"] == lora["timed_tokens"]  # the same batches in the same order
    evaluated = result["evaluation"]
    assert evaluated["identical_to_batch_1"] is True  # the benchmark raises otherwise
    assert set(evaluated["batch_sizes"]) == {"1", "2"}
    assert evaluated["batch_sizes"]["1"]["ratio_to_batch_1"] == pytest.approx(1.0)
    assert 0 < evaluated["answers"]["new_tokens_total"] <= 3 * 3
    table = capsys.readouterr().out
    assert "lora-fp32" in table and "batch size   2" in table
