"""The run directory: the one place that knows its file names.

    config.json        the RunConfig (enough to rebuild the run)
    data.json          corpus, tokenizer name, vocabulary size, token counts, notices
    tokenizer.json     the tokenizer (char vocabulary or a tokenizers JSON)
    metrics.jsonl      one row per evaluation
    tie_maps.jsonl     every tie change (the first row is the initial map)
    decisions.jsonl    every decision of an agent policy
    summary.json       written when the run ends (also when stopped early), with where it ran
    checkpoints/       best, last and periodic step_NNNNNNN checkpoints (safetensors)
    dashboard.html, tie_history.html   offline figures

A run directory is enough to reload the run's model and tokenizer (``load_model``,
``load_tokenizer``) and to continue it (``Trainer.resume``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint, CheckpointError, checkpoint_step, load_checkpoint
from .config import ConfigError, RunConfig
from .data import Tokenizer, load_tokenizer
from .fileio import write_json, write_text_atomic
from .model import TiedGPT

CHECKPOINT_KINDS = ("best", "last")


class RunDir:
    """Paths and small readers/writers of one run directory."""

    CONFIG = "config.json"
    DATA = "data.json"
    TOKENIZER = "tokenizer.json"
    METRICS = "metrics.jsonl"
    TIE_MAPS = "tie_maps.jsonl"
    DECISIONS = "decisions.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINTS = "checkpoints"
    LOCK = ".lock"
    DASHBOARD = "dashboard.html"
    TIE_HISTORY = "tie_history.html"
    FILES = (CONFIG, DATA, TOKENIZER, METRICS, TIE_MAPS, DECISIONS, SUMMARY, DASHBOARD, TIE_HISTORY)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- state ---------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for this process: a second process training into it is refused at once
        (an advisory ``flock`` on ``.lock``, released when the process ends, however it ends)."""
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with self._locked():
                yield
        finally:
            if created and [p.name for p in self.path.iterdir()] == [self.LOCK]:
                shutil.rmtree(self.path)  # nothing was written: leave no empty run directory behind

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / self.LOCK, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise ConfigError(f"{self.path} is in use by another dyntie process (pid {holder}); wait for it "
                                  "to finish or use another output directory") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def in_use(self) -> bool:
        """True while a process holds this run directory's lock (a run killed with its session does not).

        Read from ``/proc/locks`` without touching the lock, so asking never makes a starting run fail; where
        that file does not exist, a non-blocking shared lock is tried and released at once."""
        path = self.path / self.LOCK
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        held = _flock_listed(st.st_dev, st.st_ino)
        if held is not None:
            return held
        with open(path, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def holds_run(self) -> bool:
        """True when a run was started here (its config was written)."""
        return (self.path / self.CONFIG).is_file()

    def reset(self) -> None:
        """Remove everything a previous run wrote here (a fresh run must not inherit its checkpoints
        or tokenizer); files dyntie did not write are left alone."""
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{self.path} exists and is not a directory")
        for name in self.FILES:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / self.CHECKPOINTS, ignore_errors=True)

    # ---- config, summary, data ---------------------------------------------------------
    def read_config(self) -> RunConfig:
        return RunConfig.from_json_file(self.path / self.CONFIG)

    def write_config(self, config: RunConfig) -> None:
        write_json(self.path / self.CONFIG, config.to_dict())

    def read_summary(self) -> dict[str, Any] | None:
        path = self.path / self.SUMMARY
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / self.SUMMARY, summary)

    def write_data_info(self, info: dict[str, Any]) -> None:
        write_json(self.path / self.DATA, info)

    def read_data_info(self) -> dict[str, Any]:
        return json.loads((self.path / self.DATA).read_text(encoding="utf-8"))

    # ---- JSONL logs ----------------------------------------------------------------------
    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def append_jsonl(self, name: str, row: dict[str, Any]) -> None:
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def rewrite_jsonl(self, name: str, rows: list[dict[str, Any]]) -> None:
        write_text_atomic(self.path / name, "".join(json.dumps(r) + "\n" for r in rows))

    def tie_log(self) -> tuple[list[int], list[list[int]]]:
        """Steps and tie maps of every tie change a run logged (the first row is the initial map)."""
        rows = self.read_jsonl(self.TIE_MAPS)
        if not rows:
            raise FileNotFoundError(f"no tie-map history in {self.path} ({self.TIE_MAPS} missing or empty)")
        return [int(r["step"]) for r in rows], [r["tie_map"] for r in rows]

    # ---- checkpoints ---------------------------------------------------------------------
    def checkpoint_path(self, kind: str, step: int | None = None) -> Path:
        """``best``/``last``, or ``periodic`` (needs ``step``): ``checkpoints/step_NNNNNNN.safetensors``."""
        if kind == "periodic":
            if step is None:
                raise ValueError("a periodic checkpoint needs its step")
            name = f"step_{step:07d}"
        elif kind in CHECKPOINT_KINDS:
            name = kind
        else:
            raise ValueError(f"unknown checkpoint kind {kind!r}; use best, last or periodic")
        return self.path / self.CHECKPOINTS / f"{name}.safetensors"

    def periodic_checkpoints(self) -> list[Path]:
        return sorted((self.path / self.CHECKPOINTS).glob("step_*.safetensors"))

    def resume_candidates(self) -> list[tuple[Path, int | None]]:
        """Every checkpoint file with the step it holds, newest training state first (at equal steps last,
        then periodic, then best); files whose metadata cannot be read come last with step None."""
        files = [p for p in (self.checkpoint_path("last"), *reversed(self.periodic_checkpoints()),
                             self.checkpoint_path("best")) if p.is_file()]
        steps = [(p, checkpoint_step(p)) for p in files]
        return sorted(steps, key=lambda ps: -1 if ps[1] is None else ps[1], reverse=True)

    # ---- reloading what a run produced -------------------------------------------------
    def load_tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.path / self.TOKENIZER, self.read_data_info()["tokenizer"])

    def load_model(self, kind: str = "best", device: str = "cpu") -> TiedGPT:
        """The model of a ``best``/``last`` checkpoint, in eval mode."""
        path = self.checkpoint_path(kind)
        ckpt = load_checkpoint(path)
        return model_from_checkpoint(ckpt, self.read_config(), device).eval()


PROC_LOCKS = Path("/proc/locks")


def _flock_listed(device: int, inode: int) -> bool | None:
    """Whether the kernel's lock table lists a lock on this file (``MAJ:MIN:INODE``, hex device numbers);
    None where there is no such table (not Linux)."""
    try:
        text = PROC_LOCKS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    return any(wanted in line.split() for line in text.splitlines())


def model_from_checkpoint(ckpt: Checkpoint, config: RunConfig, device: str = "cpu") -> TiedGPT:
    """Build the model a checkpoint holds (its tie map, its weights)."""
    model = TiedGPT(config.model, ckpt.state["tie_map"]).to(device)
    try:
        model.load_state_dict(ckpt.group("model"))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit this model: {exc}") from None
    return model
