"""A tqdm progress bar as an event subscriber (the CLI's view of a run)."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from .events import EndEvent, EvalEvent, Event, StepEvent, TieChangeEvent


class ProgressBar:
    """Shows steps, loss and the latest validation perplexity; prints tie changes."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train", **tqdm_kwargs: Any) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, **tqdm_kwargs)
        self.val_ppl: float | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            post = {"loss": f"{event.loss:.3f}"}
            if self.val_ppl is not None:
                post["val_ppl"] = f"{self.val_ppl:.2f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        elif isinstance(event, EvalEvent):
            self.val_ppl = event.record["val_ppl"]
        elif isinstance(event, TieChangeEvent):
            self.bar.write(f"step {event.step}: tie map -> {list(event.new)} ({event.unique_blocks} unique, "
                           f"{event.reason})")
        elif isinstance(event, EndEvent):
            self.bar.close()
