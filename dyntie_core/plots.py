"""Plotly figures of runs, shared by the CLI's offline HTML files and the dashboard.

Static HTML embeds plotly.js (our machines have no CDN access). The views: a tie map as
an L x L heatmap, a tie-map history as a block x step heatmap of the root each block
runs, loss curves, model-state memory, and the Pareto front of trainable parameters
against validation perplexity (one point per run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from .rundir import RunDir
from .tying import resolve_roots

MEMORY_PARTS = ("params", "grads", "optimizer")
_PANEL = {"margin": {"l": 50, "r": 10, "t": 50, "b": 40}, "template": "plotly_white"}


def write_html(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


# ---- tie maps ------------------------------------------------------------------------
def tie_matrix(tie_map: Sequence[int]) -> list[list[float]]:
    """Row i = block, column j: 1 where block i runs root j (diagonal: independent), 0.5 for a chain's direct target."""
    roots = resolve_roots(tie_map)
    n = len(tie_map)
    z = [[0.0] * n for _ in range(n)]
    for i, j in enumerate(tie_map):
        if j != roots[i]:
            z[i][j] = 0.5
        z[i][roots[i]] = 1.0
    return z


def _runs_text(block: int, root: int) -> str:
    return f"block {block} runs block {root}" + (" (independent)" if root == block else "")


def tie_map_figure(tie_map: Sequence[int], title: str = "") -> go.Figure:
    """The L x L heatmap of a tie map."""
    n = len(tie_map)
    roots = resolve_roots(tie_map)
    hover = [[_runs_text(i, roots[i])] * n for i in range(n)]
    fig = go.Figure(go.Heatmap(z=tie_matrix(tie_map), x=list(range(n)), y=list(range(n)), text=hover,
                               hoverinfo="text", zmin=0, zmax=1, showscale=False,
                               colorscale=[[0, "#f4f4f4"], [0.5, "#9ecae1"], [1, "#08519c"]], xgap=1, ygap=1))
    fig.update_layout(title=title or f"Tie map {list(tie_map)}", xaxis_title="weights of block",
                      yaxis_title="block", yaxis={"autorange": "reversed", "dtick": 1}, xaxis={"dtick": 1},
                      width=380, height=380, **_PANEL)
    return fig


def history_matrix(roots_by_change: Sequence[Sequence[int]]) -> list[list[int]]:
    """``z[b][t]``: the root block b runs after change t."""
    n_layer = len(roots_by_change[0])
    return [[roots[b] for roots in roots_by_change] for b in range(n_layer)]


def history_hover(z: Sequence[Sequence[int]]) -> list[list[str]]:
    """Hover text for a history matrix: which block's weights each block runs."""
    return [[_runs_text(b, root) for root in row] for b, row in enumerate(z)]


def history_figure(steps: Sequence[int], roots_by_change: Sequence[Sequence[int]], title: str = "",
                   width: int | None = None, height: int | None = None) -> go.Figure:
    """Block x step heatmap of the root each block runs (diagonal colour = independent)."""
    z = history_matrix(roots_by_change)
    n_layer = len(z)
    fig = go.Figure(go.Heatmap(z=z, x=list(steps), y=list(range(n_layer)), text=history_hover(z), hoverinfo="text+x",
                               colorscale="Viridis", zmin=0, zmax=max(1, n_layer - 1),
                               colorbar={"title": "root block"}))
    fig.update_layout(title=title or "Tie-map history: which block's weights each block runs",
                      xaxis_title="step (map in force from this step)", yaxis_title="block",
                      yaxis={"autorange": "reversed", "dtick": 1}, width=width, height=height, **_PANEL)
    return fig


def _tie_log(run: RunDir) -> tuple[list[int], list[tuple[int, ...]]]:
    steps, maps = run.tie_log()
    return steps, [resolve_roots(m) for m in maps]


def tie_history(run_dir: str | Path) -> tuple[list[int], list[list[int]]]:
    """(steps, roots) from a run's tie-map log: ``roots[b][t]`` is the root block b runs after change t."""
    steps, roots = _tie_log(RunDir(run_dir))
    return steps, history_matrix(roots)


def tie_history_html(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """A run's tie-map history as an offline HTML heatmap (default: ``RUN_DIR/tie_history.html``)."""
    run = RunDir(run_dir)
    steps, roots = _tie_log(run)
    label = run.read_config().method.name if run.holds_run() else ""
    fig = history_figure(steps, roots, title=f"Tie-map history ({label}): which block's weights each block runs")
    return write_html(fig, path or run / RunDir.TIE_HISTORY)


# ---- curves and memory -----------------------------------------------------------------
def curves_figure() -> go.Figure:
    fig = go.Figure([go.Scatter(x=[], y=[], name="train loss", mode="lines+markers"),
                     go.Scatter(x=[], y=[], name="val loss", mode="lines+markers")])
    fig.update_layout(title="Loss (val perplexity = exp(val loss))", xaxis_title="step", yaxis_title="cross-entropy",
                      width=520, height=330, **_PANEL)
    return fig


def memory_figure() -> go.Figure:
    """Bars: measured and predicted (analytic floor) model-state memory by component; line: trainable
    parameters over steps. Traces: 0 measured, 1 trainable parameters, 2 predicted."""
    fig = go.Figure([go.Bar(x=list(MEMORY_PARTS), y=[0, 0, 0], name="measured"),
                     go.Scatter(x=[], y=[], name="trainable params (M)", mode="lines+markers", xaxis="x2",
                                yaxis="y2", showlegend=False),
                     go.Bar(x=list(MEMORY_PARTS), y=[0, 0, 0], name="predicted", opacity=0.5)])
    fig.update_layout(title="Model-state memory and trainable parameters", yaxis_title="MiB", barmode="group",
                      xaxis={"domain": [0, 0.45]}, xaxis2={"domain": [0.55, 1], "title": "step"},
                      yaxis2={"anchor": "x2", "title": "trainable params (M)"},
                      legend={"orientation": "h", "x": 0, "y": -0.25},
                      width=520, height=330, **_PANEL)
    return fig


# ---- comparisons -------------------------------------------------------------------------
def pareto_html(runs: Sequence[tuple[str, dict[str, Any]]], path: str | Path, title: str = "") -> Path:
    """``pareto_figure`` as an offline HTML file."""
    return write_html(pareto_figure(runs, title), path)


def pareto_figure(runs: Sequence[tuple[str, dict[str, Any]]], title: str = "") -> go.Figure:
    """Scatter of (trainable parameters, best validation perplexity), one point per (label, summary)."""
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
    return fig
