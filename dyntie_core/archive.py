"""Keep a grid's finished cells in git (``dyntie archive SRC DEST``).

A study at the paper's horizon spans sessions, and a session's machine, with its results folder (``runs/``),
does not outlive it. Checkpoints are too large to commit, but a finished cell is fully described by a few
small files: its config, data notes, metrics, tie maps, decisions and summary, which is all that
``dyntie report``, ``dyntie status`` and the study tables read. This copies those files of every finished cell
(and nothing of a cell still training or stopped) into a folder that is committed; the same command copies them
back into a fresh results folder, where the grid runner counts them as finished and runs only the rest.

A cell already in DEST with different contents is a second result for the same cell: it is refused, naming
the cell, unless ``replace`` is asked for. Nothing is overwritten silently.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError
from .grid import finished_summary
from .rundir import RunDir

RUN_FILES = (RunDir.CONFIG, RunDir.DATA, RunDir.METRICS, RunDir.TIE_MAPS, RunDir.DECISIONS, RunDir.SUMMARY)
CELL_FILES = ("status.json", "params.yaml")


@dataclass
class ArchiveResult:
    """What one ``archive_cells`` call did, by cell name."""

    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    bytes_copied: int = 0


def kept_files(cell_dir: Path) -> list[Path]:
    """The files of a finished cell that are kept, relative to the cell's folder (those that exist)."""
    names = [Path(n) for n in CELL_FILES] + [Path("run") / n for n in RUN_FILES]
    return [n for n in names if (cell_dir / n).is_file()]


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def archive_cells(src: str | Path, dest: str | Path, patterns: Sequence[str] | None = None,
                  replace: bool = False) -> ArchiveResult:
    """Copy the kept files of every finished cell of ``src`` (cells matching ``patterns``, if given) into
    ``dest/<cell>/``. Each cell is written to a temporary folder and renamed into place, so an interrupted copy
    leaves either the old cell or the new one."""
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise ConfigError(f"results folder not found: {src}")
    if src.resolve() == dest.resolve():
        raise ConfigError(f"source and destination are the same folder: {src}")
    result = ArchiveResult()
    cells = sorted(p for p in src.iterdir() if p.is_dir() and (p / "status.json").is_file())
    if patterns:
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    conflicts = []
    plan = []
    for cell in cells:
        if finished_summary(cell) is None:
            result.unfinished.append(cell.name)
            continue
        files = kept_files(cell)
        target = dest / cell.name
        if target.exists() and all(_same(cell / f, target / f) for f in files) \
                and sorted(kept_files(target)) == sorted(files):
            result.unchanged.append(cell.name)
            continue
        if target.exists() and not replace:
            conflicts.append(cell.name)
            continue
        plan.append((cell, files, target))
    if conflicts:
        raise ConfigError(f"{len(conflicts)} cell(s) already in {dest} hold a different result: "
                          f"{', '.join(conflicts)}; compare them, or pass --replace to keep the ones in {src}")
    for cell, files, target in plan:
        staging = dest / f".{cell.name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        for name in files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cell / name, staging / name)
            result.bytes_copied += (cell / name).stat().st_size
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        result.copied.append(cell.name)
    return result
