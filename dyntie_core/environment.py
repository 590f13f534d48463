"""Where a run ran: the software and machine facts that decide whether it repeats bit for bit.

A seeded run repeats itself exactly on one machine with the same torch version and the same number of CPU
threads (the resume test pins it). Change either, or the CPU, and the floating-point reduction order changes:
vanilla's perplexity moves in its last digits, but training under changing ties amplifies such a difference
(the demo's DLT run ends 262.59 or 230.91 at one or two threads with the same decisions; README,
"Reproducibility"). So every checkpoint and summary records these facts, and a run resumed under different ones
says so in its notices.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from ._version import __version__

# the facts whose change breaks bit-identical continuation (the rest are informative)
REPRODUCIBILITY_KEYS = ("torch", "torch_threads", "processor", "device")


def processor_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows, else ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def source_revision() -> dict[str, Any] | None:
    """The git commit of the dyntie source tree that is running (and whether it had uncommitted changes), or
    None when dyntie is not run from a git checkout (an installed wheel) or git is missing."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def describe_environment(device: torch.device) -> dict[str, Any]:
    """The facts above for a run on ``device`` (a CUDA run names its GPU; a CPU run names the CPU)."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "dyntie": __version__,
        "source": source_revision(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": processor_name(),
        "device": gpu or device.type,
        "torch_threads": torch.get_num_threads(),
    }


def environment_changes(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's environment and this process's, in the facts that decide bit-identical
    continuation, as ``"key: old -> new"`` lines; empty when nothing does (or the checkpoint predates the record)."""
    if not before:
        return []
    return [f"{k}: {before.get(k)} -> {now.get(k)}" for k in REPRODUCIBILITY_KEYS if before.get(k) != now.get(k)]
