"""Static PNG figures of a run (matplotlib): what executed notebooks store.

An executed notebook holding plotly.js weighs megabytes; a PNG of the same curves weighs
kilobytes and reads anywhere, offline. The interactive versions are in ``plots.py``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .rundir import RunDir
from .tying import resolve_roots


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def curves_png(run_dir: str | Path) -> bytes:
    """Training and validation loss of a run against steps."""
    rows = RunDir(run_dir).read_jsonl(RunDir.METRICS)
    fig, ax = _figure(5.5, 3.2)
    steps = [r["step"] for r in rows]
    train = [(r["step"], r["train_loss"]) for r in rows if r["train_loss"] is not None]
    ax.plot([s for s, _ in train], [v for _, v in train], marker=".", label="train loss")
    ax.plot(steps, [r["val_loss"] for r in rows], marker="o", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def tie_history_png(run_dir: str | Path) -> bytes:
    """Which block's weights each block runs, from every tie change of a run (block x step)."""
    run = RunDir(run_dir)
    rows = run.read_jsonl(RunDir.TIE_MAPS)
    if not rows:
        raise FileNotFoundError(f"no tie-map history in {run_dir}")
    steps = [r["step"] for r in rows]
    last = max([steps[-1] + 1] + [r["step"] for r in run.read_jsonl(RunDir.METRICS)])
    roots = [resolve_roots(r["tie_map"]) for r in rows]
    n_layer = len(roots[0])
    z = [[roots[t][b] for t in range(len(rows))] for b in range(n_layer)]
    fig, ax = _figure(6.0, 0.25 * n_layer + 1.4)
    mesh = ax.pcolormesh(steps + [last], range(n_layer + 1), z, cmap="viridis", vmin=0, vmax=max(1, n_layer - 1),
                         shading="flat")
    ax.set_yticks([b + 0.5 for b in range(n_layer)], [str(b) for b in range(n_layer)])
    ax.invert_yaxis()
    ax.set_xlabel("step (map in force from this step)")
    ax.set_ylabel("block")
    fig.colorbar(mesh, ax=ax, label="root block")
    return _png(fig)
