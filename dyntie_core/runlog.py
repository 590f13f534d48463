"""The run directory: config, metrics (JSONL), tie-map history, decisions, summary.

``RunLogger`` is an event subscriber; the loop does not know it exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .events import DecisionEvent, EndEvent, EvalEvent, Event, TieChangeEvent

if TYPE_CHECKING:
    from .config import RunConfig
    from .data import TokenData

METRICS = "metrics.jsonl"
TIE_MAPS = "tie_maps.jsonl"
DECISIONS = "decisions.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class RunLogger:
    """Appends events to the run directory's JSONL files and writes the summary at the end.

    With ``resume_step`` set, rows the interrupted run logged after its last checkpoint
    are dropped, so the files read as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            # An evaluation at step s is logged before the checkpoint at s; tie changes and finished
            # decisions stamped s happen inside step s + 1, i.e. after that checkpoint.
            self._keep(METRICS, lambda r: r["step"] <= resume_step)
            self._keep(TIE_MAPS, lambda r: r.get("reason") == "initial" or r["step"] < resume_step)
            self._keep(DECISIONS, lambda r: r.get("reward_step", r["step"]) < resume_step)

    def start(self, config: RunConfig, data: TokenData, tie_map: tuple[int, ...]) -> None:
        """A fresh run: write the config, the tokenizer (when it can be saved) and the initial map."""
        for name in (METRICS, TIE_MAPS, DECISIONS, SUMMARY):
            (self.run_dir / name).unlink(missing_ok=True)
        self.write_config(config)
        tok = getattr(data.tokenizer, "tok", None)
        if tok is not None:
            tok.save(str(self.run_dir / "tokenizer.json"))
        write_json(self.run_dir / "data.json", {"corpus": data.corpus_name, "tokenizer": data.tokenizer.name,
                                                "vocab_size": data.vocab_size, "notices": data.notices,
                                                "tokens": {s: len(data.split(s)) for s in ("train", "valid", "test")}})
        self._append(TIE_MAPS, {"step": 0, "tie_map": list(tie_map), "reason": "initial"})

    def write_config(self, config: RunConfig) -> None:
        write_json(self.run_dir / CONFIG, config.to_dict())

    def _keep(self, name: str, keep: Callable[[dict[str, Any]], bool]) -> None:
        path = self.run_dir / name
        if path.is_file():
            rows = [r for r in read_jsonl(path) if keep(r)]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def _append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.run_dir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def __call__(self, event: Event) -> None:
        if isinstance(event, EvalEvent):
            self._append(METRICS, event.record)
        elif isinstance(event, TieChangeEvent):
            self._append(TIE_MAPS, {"step": event.step, "tie_map": list(event.new), "reason": event.reason,
                                    "unique_blocks": event.unique_blocks, "trainable_params": event.trainable_params})
        elif isinstance(event, DecisionEvent):
            self._append(DECISIONS, {"step": event.step, **event.record})
        elif isinstance(event, EndEvent):
            write_json(self.run_dir / SUMMARY, event.summary)
