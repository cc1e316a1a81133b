"""What every benchmark reports about the machine, and how it spots a run that shared its cores."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine_info(threads: int | str, with_torch: bool = True) -> dict[str, Any]:
    """CPU model, cores, Python, platform, torch and its threads: what the figures were run on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": threads,
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if not with_torch:
        return info
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


#: A run whose process got less than this share of `threads` cores of CPU time shared the cores
#: with another process: it is discarded from the median (unless every run was).
CONTENDED_BELOW = 0.9


def contended(cpu_per_wall: float, threads: int) -> bool:
    """Whether a run with this CPU time / wall time ratio shared its cores with another process."""
    return cpu_per_wall < CONTENDED_BELOW * min(threads, usable_cores())


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
