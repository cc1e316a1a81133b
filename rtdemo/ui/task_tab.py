"""The Task tab: the twelve tasks, where each can come from here, and a preview of its questions.

Handlers are plain functions of the core; they turn a `UserError` into a message shown in place.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.redaction import hide_folder
from rtdemo.tasks import TASKS, SourceOptions, get_task, load_examples, pick_source, source_status
from rtdemo.tasks.synthetic import split_size
from rtdemo.tasks.types import SOURCES, SPLITS
from rtdemo.ui.experiments import AUTO, TaskChoice
from rtdemo.ui.forms import FormFields

OVERVIEW_HEADERS = ["task", "name", "answer type", "paper train/test", "available here"]
PREVIEW_HEADERS = ["#", "split", "question", "answer"]
MAX_PREVIEW = 1000  # rows a preview shows at most (a synthetic task generates only those)


def task_overview() -> list[list[str]]:
    """One row per task: key, name, answer type, the paper's split sizes, sources available here."""
    options = SourceOptions()
    rows = []
    for key, task in TASKS.items():
        status = source_status(task, options)
        here = ", ".join(name for name, (ok, _) in status.items() if ok) or "upload a file"
        sizes = f"{task.paper_sizes['train']} / {task.paper_sizes['test']}"
        rows.append([key, task.name, task.answer_type, sizes, here])
    return rows


def source_notes(key: str) -> str:
    """Markdown: each source of the task and why it is (not) available here."""
    task = TASKS[key]
    lines = [f"**{task.name}** — {task.description} Answer type: `{task.answer_type}`."]
    options = SourceOptions()
    for name, (ok, why) in source_status(task, options).items():
        lines.append(f"- {'✔' if ok else '✘'} **{name}**: {_hide_server_folders(why, options)}")
    lines += [f"- {note}" for note in task.notes]
    return "\n".join(lines)


def _hide_server_folders(text: str, options: SourceOptions) -> str:
    """`text` with the server's data folders named by their variables, not their paths."""
    resolved = options.resolved()
    for folder, name in (
        (resolved.paper_data, "$RTDEMO_PAPER_DATA"),
        (resolved.hub_dir, "$RTDEMO_HUB_DIR"),
    ):
        if folder is not None:
            text = hide_folder(text, folder, name)
    return text


def preview(
    key: str,
    source: str,
    split: str,
    limit: float,
    seed: float,
    size: float,
    length: float,
    file: str | None,
    question_column: str = "question",
    answer_column: str = "answer",
    answer_type: str = "",
) -> tuple[list[list], str]:
    """The first `limit` questions of a task's split, and a status line (or the error).

    A file is read with the column mapping and answer type a new experiment would use."""
    try:
        choice = task_choice(
            key=key,
            source=source,
            seed=seed,
            size=size,
            length=length,
            file=file,
            question_column=question_column,
            answer_column=answer_column,
            answer_type=answer_type,
            limit=0,
        )
        options = choice.options(Path(file) if file else None)
        task = get_task(key)
        used = pick_source(task, options.resolved(), split) if source == AUTO else source
        wanted = min(max(0, int(limit or 0)), MAX_PREVIEW)
        if used == "synthetic":  # generates only what it shows, whatever the size asked for
            shown = load_examples(key, split, used, options, limit=wanted)
            total = split_size(options.synthetic.size, split)
        else:
            examples = load_examples(key, split, used, options)
            shown, total = examples[:wanted], len(examples)
    except UserError as err:
        return [], f"⚠️ {err}"
    rows = [[e.index, e.split, e.question, e.answer] for e in shown]
    status = f"{len(shown)} of {total} {split} questions of {task.name}."
    if limit and limit > MAX_PREVIEW:
        status += f" The preview shows at most {MAX_PREVIEW:,}."
    return rows, status


ANSWER_TYPES = ["", "number", "letter", "yes_no", "text"]


def task_choice(
    *,
    key: str,
    source: str,
    seed: float,
    size: float,
    length: float,
    file: str | None,
    question_column: str,
    answer_column: str,
    answer_type: str,
    limit: float,
) -> TaskChoice:
    """The Task tab's widgets as a `TaskChoice` (what a new experiment is made from); Gradio
    numbers come as floats, a cleared box as None."""
    return TaskChoice(
        key=key,
        source=source,
        seed=int(seed or 0),
        size=int(size or 0),
        length=int(length or 0),
        file=file,
        question_column=(question_column or "question").strip(),
        answer_column=(answer_column or "answer").strip(),
        answer_type=answer_type or "",
        limit=int(limit or 0),
    )


def build_task_tab() -> FormFields[TaskChoice]:
    """Lay out the Task tab; return its choice's components (what `create_experiment` reads)."""
    gr.Markdown("Pick one of the paper's twelve tasks and see where its data can come from here.")
    gr.Dataframe(value=task_overview, headers=OVERVIEW_HEADERS, interactive=False, label="Tasks")
    with gr.Row():
        key = gr.Dropdown(list(TASKS), value="coin_flip", label="Task")
        source = gr.Dropdown([AUTO, *SOURCES], value=AUTO, label="Source")
        split = gr.Radio(list(SPLITS), value="train", label="Split")
        limit = gr.Number(10, precision=0, minimum=0, label="Questions to show")
    with gr.Accordion("Synthetic task settings and your own file", open=False):
        with gr.Row():
            seed = gr.Number(0, precision=0, label="Seed")
            size = gr.Number(500, precision=0, minimum=1, label="Size (questions)")
            length = gr.Number(4, precision=0, minimum=1, label="People / words per question")
        file = gr.File(label="Your file (JSONL, JSON or CSV: question, answer)", type="filepath")
        with gr.Row():
            question_column = gr.Textbox("question", label="Question column")
            answer_column = gr.Textbox("answer", label="Answer column")
            answer_type = gr.Dropdown(
                ANSWER_TYPES, value="", label="Answer type (empty: the task's own)"
            )
            per_split = gr.Number(
                0, precision=0, minimum=0, label="Questions per split in a new experiment (0: all)"
            )
    choice = FormFields(
        TaskChoice,
        task_choice,
        key=key,
        source=source,
        seed=seed,
        size=size,
        length=length,
        file=file,
        question_column=question_column,
        answer_column=answer_column,
        answer_type=answer_type,
        limit=per_split,
    )
    notes = gr.Markdown(source_notes("coin_flip"))
    show = gr.Button("Show questions", variant="primary")
    status = gr.Markdown()
    table = gr.Dataframe(headers=PREVIEW_HEADERS, interactive=False, wrap=True, label="Questions")
    key.change(source_notes, key, notes, api_visibility="private")
    # `preview`'s own parameters by name: the split and how many to show, then the choice's
    # fields but the per-split limit of a new experiment.
    shown = {"key": key, "source": source, "split": split, "limit": limit}
    shown |= {n: c for n, c in choice.kwargs.items() if n not in ("key", "source", "limit")}
    show.click(preview, None, [table, status], inputs_kwargs=shown, api_name="preview_task")
    return choice
