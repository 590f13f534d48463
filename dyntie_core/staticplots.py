"""Static PNG figures (matplotlib): what executed notebooks store.

An executed notebook holding plotly.js weighs megabytes; a PNG of the same figure weighs
kilobytes and reads anywhere, offline. The interactive versions are in ``plots.py``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .rundir import RunDir
from .tying import resolve_roots


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def tie_map_png(tie_map: Sequence[int], title: str = "") -> bytes:
    """The L x L tie map: row = block, dark cell = the block whose weights it runs."""
    roots = resolve_roots(tie_map)
    n = len(tie_map)
    z = [[1.0 if roots[i] == j else (0.5 if tie_map[i] == j else 0.0) for j in range(n)] for i in range(n)]
    fig, ax = _figure(3.4, 3.4)
    ax.imshow(z, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("weights of block")
    ax.set_ylabel("block")
    ax.set_title(title or f"Tie map {list(tie_map)}", fontsize=9)
    return _png(fig)


def history_png(steps: Sequence[int], roots: Sequence[Sequence[int]], last_step: int, title: str = "") -> bytes:
    """Which block's weights each block runs after each tie change (block x step), up to ``last_step``."""
    n_layer = len(roots[0])
    z = [[roots[t][b] for t in range(len(steps))] for b in range(n_layer)]
    fig, ax = _figure(6.0, 0.25 * n_layer + 1.4)
    mesh = ax.pcolormesh(list(steps) + [max(last_step, steps[-1] + 1)], range(n_layer + 1), z, cmap="viridis",
                         vmin=0, vmax=max(1, n_layer - 1), shading="flat")
    ax.set_yticks([b + 0.5 for b in range(n_layer)], [str(b) for b in range(n_layer)])
    ax.invert_yaxis()
    ax.set_xlabel("step (map in force from this step)")
    ax.set_ylabel("block")
    ax.set_title(title or "Tie-map history: root block each block runs", fontsize=9)
    fig.colorbar(mesh, ax=ax, label="root block")
    return _png(fig)


def curves_png(steps: Sequence[int], train: Sequence[float | None], val: Sequence[float]) -> bytes:
    """Training (mean since the last evaluation) and validation loss against steps."""
    fig, ax = _figure(5.5, 3.2)
    points = [(s, v) for s, v in zip(steps, train) if v is not None]
    ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label="train loss")
    ax.plot(list(steps), list(val), marker="o", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def run_curves_png(run_dir: str | Path) -> bytes:
    rows = RunDir(run_dir).read_jsonl(RunDir.METRICS)
    return curves_png([r["step"] for r in rows], [r["train_loss"] for r in rows], [r["val_loss"] for r in rows])


def run_history_png(run_dir: str | Path) -> bytes:
    run = RunDir(run_dir)
    steps, maps = run.tie_log()
    last = max([r["step"] for r in run.read_jsonl(RunDir.METRICS)] or [0])
    return history_png(steps, [resolve_roots(m) for m in maps], last)


def pareto_png(points: Sequence[tuple[str, float, float]], title: str = "") -> bytes:
    """(label, trainable parameters, validation perplexity) points: lower-left is better."""
    fig, ax = _figure(5.5, 3.6)
    for label in dict.fromkeys(p[0] for p in points):
        mine = [p for p in points if p[0] == label]
        ax.scatter([p[1] for p in mine], [p[2] for p in mine], label=label, s=40)
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("best validation perplexity")
    ax.set_title(title or "Trainable parameters vs validation perplexity", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)
