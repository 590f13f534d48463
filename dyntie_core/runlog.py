"""``RunLogger``: an event subscriber that writes a run directory's logs.

The loop does not know it exists: metrics, tie changes and decisions are appended as
events arrive, and the summary is written at the end.
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .data import TokenData
from .events import DecisionEvent, EndEvent, EvalEvent, Event, TieChangeEvent
from .rundir import RunDir


class RunLogger:
    """Appends events to the run directory's JSONL files and writes the summary at the end."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        run.path.mkdir(parents=True, exist_ok=True)

    def start(self, config: RunConfig, data: TokenData, tie_map: tuple[int, ...]) -> None:
        """A fresh run: clear what an earlier run left, write the config, tokenizer and initial map."""
        self.run.reset()
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.run.write_config(config)
        data.tokenizer.save(self.run / RunDir.TOKENIZER)
        self.run.write_data_info({"corpus": data.corpus_name, "tokenizer": data.tokenizer.name,
                                  "vocab_size": data.vocab_size, "notices": data.notices,
                                  "tokens": {s: len(data.split(s)) for s in ("train", "valid", "test")}})
        self.run.append_jsonl(RunDir.TIE_MAPS, {"step": 0, "tie_map": list(tie_map), "reason": "initial"})

    def truncate_after(self, step: int) -> None:
        """Resuming from a checkpoint at ``step``: drop rows the interrupted run logged after it, so
        the files read as one uninterrupted run."""
        # An evaluation at step s is logged before the checkpoint at s; tie changes and finished
        # decisions stamped s happen inside step s + 1, i.e. after that checkpoint.
        self._keep(RunDir.METRICS, lambda r: r["step"] <= step)
        self._keep(RunDir.TIE_MAPS, lambda r: r.get("reason") == "initial" or r["step"] < step)
        self._keep(RunDir.DECISIONS, lambda r: r.get("reward_step", r["step"]) < step)

    def _keep(self, name: str, keep: Any) -> None:
        if (self.run / name).is_file():
            self.run.rewrite_jsonl(name, [r for r in self.run.read_jsonl(name) if keep(r)])

    def __call__(self, event: Event) -> None:
        if isinstance(event, EvalEvent):
            self.run.append_jsonl(RunDir.METRICS, event.record)
        elif isinstance(event, TieChangeEvent):
            self.run.append_jsonl(RunDir.TIE_MAPS, {
                "step": event.step, "tie_map": list(event.new), "reason": event.reason,
                "unique_blocks": event.unique_blocks, "trainable_params": event.trainable_params,
                **({"loss_before": event.loss_before, "loss_after": event.loss_after}
                   if event.loss_before is not None else {})})
        elif isinstance(event, DecisionEvent):
            self.run.append_jsonl(RunDir.DECISIONS, {"step": event.step, **event.record})
        elif isinstance(event, EndEvent):
            self.run.write_summary(event.summary)
