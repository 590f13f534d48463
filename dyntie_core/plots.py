"""Static, offline HTML figures (plotly.js embedded: our machines have no CDN access).

Two views a researcher wants after a run: the Pareto front of trainable parameters
against validation perplexity (one point per run), and a run's tie-map history as a
block x step heatmap of which root each block runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runlog import TIE_MAPS, read_jsonl
from .tying import resolve_roots


def _write(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def pareto_html(runs: Sequence[tuple[str, dict[str, Any]]], path: str | Path, title: str = "") -> Path:
    """Scatter of (trainable parameters, best validation perplexity), one point per (label, summary)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label in dict.fromkeys(lbl for lbl, _ in runs):
        pts = [s for lbl, s in runs if lbl == label]
        fig.add_trace(go.Scatter(
            x=[s["trainable_params"] for s in pts], y=[s["best_val_ppl"] for s in pts], mode="markers",
            name=label, marker={"size": 11},
            text=[f"{label} seed {s.get('seed')}<br>unique blocks {s['unique_blocks']}<br>test ppl "
                  f"{s['test_ppl']:.2f}" for s in pts], hoverinfo="text+x+y"))
    fig.update_layout(title=title or "Trainable parameters vs validation perplexity (lower-left is better)",
                      xaxis_title="trainable parameters", yaxis_title="best validation perplexity",
                      template="plotly_white")
    return _write(fig, Path(path))


def tie_history(run_dir: str | Path) -> tuple[list[int], list[list[int]]]:
    """(steps, roots) from a run's ``tie_maps.jsonl``: ``roots[b][t]`` is the root block b runs after change t."""
    rows = read_jsonl(Path(run_dir) / TIE_MAPS)
    if not rows:
        raise FileNotFoundError(f"no tie-map history in {run_dir} ({TIE_MAPS} missing or empty)")
    steps = [int(r["step"]) for r in rows]
    per_change = [resolve_roots(r["tie_map"]) for r in rows]
    n_layer = len(per_change[0])
    return steps, [[roots[b] for roots in per_change] for b in range(n_layer)]


def tie_history_html(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Block x step heatmap of the root each block runs (diagonal colour = independent)."""
    import plotly.graph_objects as go

    run_dir = Path(run_dir)
    steps, roots = tie_history(run_dir)
    n_layer = len(roots)
    label = json.loads((run_dir / "config.json").read_text()).get("method", {}).get("name", "")
    hover = [[f"block {b} runs block {roots[b][t]}" + (" (independent)" if roots[b][t] == b else "")
              for t in range(len(steps))] for b in range(n_layer)]
    fig = go.Figure(go.Heatmap(z=roots, x=steps, y=list(range(n_layer)), text=hover, hoverinfo="text+x",
                               colorscale="Viridis", zmin=0, zmax=max(1, n_layer - 1),
                               colorbar={"title": "root block"}))
    fig.update_layout(title=f"Tie-map history ({label}): which block's weights each block runs",
                      xaxis_title="step (map in force from this step)", yaxis_title="block",
                      yaxis={"autorange": "reversed", "dtick": 1}, template="plotly_white")
    return _write(fig, Path(path) if path else run_dir / "tie_history.html")
