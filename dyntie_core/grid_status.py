"""Where a long grid stands (``dyntie status OUT``): which cells are done, training now, stopped half-way
(resumable), failed or not started, how far each has trained and about how long the rest will take.

Studies at the paper's horizon run for days across sessions; this reads only what the grid runner and the
trainer write (``status.json``, the run directory's metrics, checkpoints and lock), so it is safe to run beside
a grid, and it tells a cell that is training now from one whose process died with its session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError
from .grid import Grid, finished_summary
from .rundir import RunDir

STATES = ("done", "running", "stopped", "failed", "pending")


@dataclass(frozen=True)
class CellProgress:
    """One cell's standing. ``step``: the last evaluated step; ``resume_step``: where a rerun of a stopped or
    failed cell continues (the newest checkpoint); ``eta_s``: the remaining steps at the run's own training rate
    (evaluation excluded)."""

    name: str
    state: str
    step: int | None = None
    total_steps: int | None = None
    resume_step: int | None = None
    val_ppl: float | None = None
    eta_s: float | None = None
    error: str = ""


def cell_progress(cell_dir: Path) -> CellProgress:
    """The standing of the cell whose grid folder is ``cell_dir`` (``OUT/<cell>``)."""
    name = cell_dir.name
    status_path = cell_dir / "status.json"
    status = json.loads(status_path.read_text(encoding="utf-8")) if status_path.is_file() else {}
    run = RunDir(cell_dir / "run")
    rows = run.read_jsonl(RunDir.METRICS)
    last = rows[-1] if rows else {}
    step = int(last["step"]) if last else None
    total = run.read_config().train.steps if run.holds_run() else None
    if run.in_use():
        state = "running"
    elif finished_summary(cell_dir) is not None:
        state = "done"
    elif status.get("state") == "failed":
        state = "failed"
    elif rows:
        state = "stopped"
    else:
        state = "pending"
    resume = None  # only where a rerun would resume: reading checkpoint metadata costs a file open each
    if state in ("stopped", "failed") and run.path.is_dir():
        resume = next((s for _, s in run.resume_candidates() if s is not None), None)
    eta = None
    if state in ("running", "stopped") and step and total and last.get("train_time_s"):
        eta = (total - step) * float(last["train_time_s"]) / step
    return CellProgress(name, state, step, total, resume, last.get("val_ppl"), eta,
                        str(status.get("error", "")) if state == "failed" else "")


def grid_progress(out_dir: str | Path, grids: Sequence[Grid] = ()) -> list[CellProgress]:
    """Every cell of ``grids`` (in their order, "pending" where nothing was written yet), then every other cell
    folder found in ``out_dir``, sorted by name."""
    out = Path(out_dir)
    if not out.is_dir() and not grids:
        raise ConfigError(f"results folder not found: {out}")
    names = list(dict.fromkeys(c.name for g in grids for c in g.cells))
    found = sorted(p.name for p in out.iterdir() if (p / "status.json").is_file() or (p / "run").is_dir()) \
        if out.is_dir() else []
    names += [n for n in found if n not in names]
    return [cell_progress(out / n) if (out / n).is_dir() else CellProgress(n, "pending") for n in names]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def progress_table(cells: Sequence[CellProgress]) -> str:
    """A Markdown table, one row per cell, and a one-line count by state."""
    lines = ["| cell | state | step | val ppl | resumes at | ETA |", "| --- | --- | --- | --- | --- | --- |"]
    for c in cells:
        step = f"{c.step}/{c.total_steps}" if c.step is not None and c.total_steps else ""
        ppl = f"{c.val_ppl:.2f}" if c.val_ppl is not None else ""
        resume = str(c.resume_step) if c.resume_step is not None else ""
        state = f"{c.state}: {c.error}" if c.error else c.state
        lines.append(f"| {c.name} | {state} | {step} | {ppl} | {resume} | {_duration(c.eta_s)} |")
    counts = ", ".join(f"{sum(c.state == s for c in cells)} {s}" for s in STATES)
    left = sum(c.eta_s or 0.0 for c in cells)
    tail = f"; the unfinished started cells need about {_duration(left)} of training (one job each)" if left else ""
    return "\n".join(lines) + f"\n\n{len(cells)} cells: {counts}{tail}"
