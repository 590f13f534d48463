"""The grid runner behind ``dyntie reproduce``: a YAML grid of experiment cells, each run through the
experiment notebook with papermill, failure-isolated, resumable and parallel.

A grid file::

    notebook: notebooks/experiments/lm.ipynb     # optional; this is the default
    parameters: {preset: paper-gpt2-12-cpu}      # shared by every cell
    axes:                                        # every combination is a cell
      dataset: [../shared/data/wikitext-2/raw]
      method: [vanilla, dlt, "random-fixed:4", "cycle-rev:4"]   # name:n sets n_unique
      seed: [1, 2, 3]
    cells:                                       # optional per-cell settings, deep-merged in order
      - match: {method: dlt}
        set: {agent: {k_steps: 4}}

An axis named ``variant`` only names cells (its values are labels, not notebook parameters): rules
matching on it say what each variant sets, e.g. ``{match: {variant: dlt-k16}, set: {method: dlt,
agent: {k_steps: 16}}}``. That is how a study varies one factor at a time.

Each cell gets ``OUT/<cell>/``: ``cell.ipynb`` (the executed notebook), ``run/`` (its run
directory), ``params.yaml``, ``papermill.log`` and ``status.json``. A finished cell is
skipped; a failed or interrupted one is run again, and its training resumes from its last
checkpoint (set ``train.checkpoint_interval`` in ``overrides`` for long cells).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, merge_config_dicts
from .fileio import write_json, write_text_atomic
from .rundir import RunDir

DEFAULT_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "experiments" / "lm.ipynb"
GRID_KEYS = {"notebook", "parameters", "axes", "cells"}


@dataclass
class Cell:
    name: str
    params: dict[str, Any]


@dataclass
class Grid:
    notebook: Path
    cells: list[Cell]


@dataclass
class CellResult:
    name: str
    state: str  # "done", "reused" or "failed"
    error: str = ""
    wall_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


def _slug(key: str, value: Any) -> str:
    """A readable directory-name part: paths by their last two parts, numbers with their axis name."""
    if isinstance(value, str):
        text = "-".join(Path(value).parts[-2:]) if os.sep in value else value
    else:
        text = f"{key}{value}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or key


def _split_method(params: dict[str, Any]) -> dict[str, Any]:
    """``method: "cycle-rev:4"`` -> ``method: cycle-rev, n_unique: 4``."""
    method = params.get("method")
    if isinstance(method, str) and ":" in method:
        name, _, n = method.partition(":")
        try:
            params = {**params, "method": name, "n_unique": int(n)}
        except ValueError:
            raise ConfigError(f"grid method {method!r}: expected name or name:n_unique") from None
    return params


def load_grid(path: str | Path) -> Grid:
    """Read and expand a grid file; raises ``ConfigError`` saying what is wrong with it."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"grid file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"grid file {path} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"grid file {path} must hold a mapping with keys {sorted(GRID_KEYS)}")
    unknown = sorted(set(spec) - GRID_KEYS)
    if unknown:
        raise ConfigError(f"grid file {path}: unknown key(s) {unknown}; known: {sorted(GRID_KEYS)}")
    base = spec.get("parameters") or {}
    axes = spec.get("axes") or {}
    rules = spec.get("cells") or []
    if not isinstance(base, dict) or not isinstance(axes, dict) or not isinstance(rules, list):
        raise ConfigError(f"grid file {path}: parameters and axes must be mappings, cells a list")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid file {path}: axis {key!r} must be a non-empty list")
    for k, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) - {"match", "set"} or not isinstance(rule.get("set", {}), dict):
            raise ConfigError(f"grid file {path}: cells[{k}] must be {{match: {{...}}, set: {{...}}}}")
    notebook = Path(spec.get("notebook") or DEFAULT_NOTEBOOK)
    cells = []
    for combo in itertools.product(*axes.values()) if axes else [()]:
        point = dict(zip(axes, combo))
        params = {**base, **{k: v for k, v in point.items() if k != "variant"}}
        for rule in rules:
            if all(point.get(k, base.get(k)) == v for k, v in (rule.get("match") or {}).items()):
                params = merge_config_dicts(params, rule.get("set") or {})
        name = "__".join(_slug(k, v) for k, v in point.items()) or "cell"
        cells.append(Cell(name, _split_method(params)))
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ConfigError(f"grid file {path}: two cells would share a directory name; make axis values distinct")
    return Grid(notebook, cells)


def finished_summary(cell_dir: Path) -> dict[str, Any] | None:
    """The summary of a cell the runner finished (status done, a summary, not stopped early), else None."""
    status = cell_dir / "status.json"
    if not status.is_file() or json.loads(status.read_text(encoding="utf-8")).get("state") != "done":
        return None
    summary = RunDir(cell_dir / "run").read_summary()
    return summary if summary is not None and not summary.get("stopped_early") else None


def run_cell(notebook: Path, cell: Cell, cell_dir: Path, threads: int, cwd: Path) -> CellResult:
    """Execute one cell's notebook with papermill in a subprocess (its own kernel, its own threads)."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    params = {**cell.params, "out_dir": str((cell_dir / "run").resolve()), "threads": threads}
    write_text_atomic(cell_dir / "params.yaml", yaml.safe_dump(params, sort_keys=True))
    start = time.time()
    write_json(cell_dir / "status.json", {"state": "running", "started": start, "params": params})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DYNTIE_HEADLESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(cell_dir / "cell.ipynb"), "-f",
           str(cell_dir / "params.yaml"), "-k", "python3", "--cwd", str(cwd), "--no-progress-bar"]
    with open(cell_dir / "papermill.log", "w", encoding="utf-8") as log:
        code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.time() - start
    summary = RunDir(cell_dir / "run").read_summary()
    if code == 0 and summary is not None:
        write_json(cell_dir / "status.json", {"state": "done", "started": start, "wall_s": wall, "params": params})
        return CellResult(cell.name, "done", wall_s=wall, summary=summary)
    error = _error_text((cell_dir / "papermill.log").read_text(encoding="utf-8", errors="replace"))
    write_json(cell_dir / "status.json", {"state": "failed", "started": start, "wall_s": wall, "error": error,
                                          "params": params})
    return CellResult(cell.name, "failed", error=error, wall_s=wall)


def _error_text(log: str) -> str:
    """The exception line papermill reports for the failing cell (else the log's last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors[-1] if errors else lines[-1] if lines else "papermill produced no output")[:500]


def select_cells(grid: Grid, patterns: Sequence[str]) -> Grid:
    """The cells whose names match any of the shell-style ``patterns`` (``tinyshakespeare*__shrink-*``), in the
    grid's order; an empty selection is an error that names the cells there are."""
    chosen = [c for c in grid.cells if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not chosen:
        names = ", ".join(c.name for c in grid.cells[:6]) + (", ..." if len(grid.cells) > 6 else "")
        raise ConfigError(f"no cell matches {', '.join(map(repr, patterns))}; cells are named like {names}")
    return dataclasses.replace(grid, cells=chosen)


def merge_grids(grids: Sequence[Grid]) -> Grid:
    """Several grids as one queue, their cells in the order given (a study's grids run into one results folder:
    ``dyntie reproduce A.yaml B.yaml --out DIR --jobs 2``). They must share the notebook, and a cell name may
    appear once: two cells with one name would share a directory."""
    if not grids:
        raise ConfigError("no grid to run")
    notebooks = {g.notebook.resolve() for g in grids}
    if len(notebooks) > 1:
        raise ConfigError(f"grids run together must use one notebook; these use {', '.join(map(str, notebooks))}")
    seen: set[str] = set()
    for cell in (c for g in grids for c in g.cells):
        if cell.name in seen:
            raise ConfigError(f"cell {cell.name!r} is in more than one of the grids given; they would share "
                              "its directory")
        seen.add(cell.name)
    return Grid(grids[0].notebook, [c for g in grids for c in g.cells])


def run_grid(grid: Grid, out_dir: str | Path, jobs: int = 1, cwd: str | Path | None = None,
             on_result: Callable[[CellResult], None] | None = None) -> list[CellResult]:
    """Run every cell not yet finished; ``jobs`` cells at once, the CPU threads divided between them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not grid.notebook.is_file():
        raise ConfigError(f"grid notebook not found: {grid.notebook}")
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    results: dict[str, CellResult] = {}
    todo = []
    for cell in grid.cells:
        summary = finished_summary(out / cell.name)
        if summary is not None:
            results[cell.name] = CellResult(cell.name, "reused", summary=summary)
            if on_result is not None:
                on_result(results[cell.name])
        else:
            todo.append(cell)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_cell, grid.notebook, c, out / c.name, threads, Path(cwd or os.getcwd()))
                   for c in todo]
        for future in as_completed(futures):
            result = future.result()
            results[result.name] = result
            if on_result is not None:
                on_result(result)
    ordered = [results[c.name] for c in grid.cells]
    write_json(out / "grid.json", [{"cell": r.name, "state": r.state, "error": r.error, "wall_s": r.wall_s}
                                   for r in ordered])
    return ordered
