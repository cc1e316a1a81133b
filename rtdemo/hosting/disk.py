"""How much disk an owner's files and the whole workspace use: what the disk caps of
`rtdemo.hosting.quotas` are checked against (`Quotas.check_disk`).

An owner's files (`owner_paths`), in the workspace:

    uploads/<owner hash>/                   their kept uploads (task files, replay files); the
                                            folder is named by a hash of the owner id, which is
                                            a visitor's only credential and must not show in a
                                            command line a visitor shares
    runs/<job id>-<kind>/                   the folders of their jobs (log, progress)
    runs/students/<id>-<experiment>/        their experiments' student runs (base, final/, ...)
    experiments/<owner>/<experiment>/       their experiments' results
    publish/<id>-<experiment>/              their experiments' publishing folders

The store (questions, samples, reviews) is shared: it counts toward the workspace's total only.
Sizes are apparent file sizes (`st_size`, so a sparse file counts whole), symbolic links are not
followed, and a file that vanishes while it is measured is skipped. Measuring walks the folders
(no cache): a tiny run holds a few dozen files, so this costs milliseconds.

    used = owner_bytes(store, owner)
    total = tree_bytes(store.workspace)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rtdemo.evaluation.results import experiment_folder
from rtdemo.jobs.runner import list_jobs
from rtdemo.publishing.push import publish_folder
from rtdemo.training.runs import runs_folder
from rtdemo.workspace.store import Store

UPLOADS = "uploads"


def upload_folder(workspace: Path, owner: str) -> Path:
    """Where the owner's kept uploads go: `uploads/<16 hex digits of sha256(owner)>`."""
    return Path(workspace) / UPLOADS / hashlib.sha256(owner.encode()).hexdigest()[:16]


def tree_bytes(path: Path) -> int:
    """The bytes of every file under `path` (or of `path` itself, a file); 0 if it is absent."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return info.st_size
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def owner_paths(store: Store, owner: str) -> list[Path]:
    """The folders that hold `owner`'s files (module docstring); some may not exist."""
    paths = [upload_folder(store.workspace, owner)]
    paths += [job.run_dir for job in list_jobs(store, owner)]
    for experiment in store.list_experiments(owner):
        paths += [
            runs_folder(store, experiment),
            experiment_folder(store, experiment),
            publish_folder(store, experiment),
        ]
    return paths


def owner_bytes(store: Store, owner: str) -> int:
    """The bytes of `owner`'s files in the workspace."""
    return sum(tree_bytes(path) for path in dict.fromkeys(owner_paths(store, owner)))
