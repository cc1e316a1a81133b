"""Smoke tests: every benchmark runs end to end on tiny parameters and reports its fields.

No timing assertions here (the figures belong to benchmarks/README.md); only that the benchmark
runs, counts what it should and writes the JSON it prints.
"""

from __future__ import annotations

import json

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
