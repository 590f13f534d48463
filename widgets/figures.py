"""Plotly figures of a run's state, shared by the live dashboard and its static fallback."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from dyntie_core import resolve_roots

MEMORY_PARTS = ("params", "grads", "optimizer")


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


def tie_map_figure(tie_map: Sequence[int], title: str = "") -> go.Figure:
    """The L x L heatmap of a tie map."""
    n = len(tie_map)
    roots = resolve_roots(tie_map)
    hover = [[f"block {i} runs block {roots[i]}" + (" (independent)" if roots[i] == i else "") for _ in range(n)]
             for i in range(n)]
    fig = go.Figure(go.Heatmap(z=tie_matrix(tie_map), x=list(range(n)), y=list(range(n)), text=hover,
                               hoverinfo="text", zmin=0, zmax=1, showscale=False,
                               colorscale=[[0, "#f4f4f4"], [0.5, "#9ecae1"], [1, "#08519c"]], xgap=1, ygap=1))
    fig.update_layout(title=title or f"Tie map {list(tie_map)}", xaxis_title="weights of block",
                      yaxis_title="block", yaxis={"autorange": "reversed", "dtick": 1}, xaxis={"dtick": 1},
                      width=380, height=380, margin={"l": 50, "r": 10, "t": 50, "b": 40}, template="plotly_white")
    return fig


def history_figure(n_layer: int) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=[[b] for b in range(n_layer)], x=[0], y=list(range(n_layer)),
                               colorscale="Viridis", zmin=0, zmax=max(1, n_layer - 1),
                               colorbar={"title": "root"}))
    fig.update_layout(title="Tie-map history: root each block runs", xaxis_title="step", yaxis_title="block",
                      yaxis={"autorange": "reversed", "dtick": 1}, width=520, height=380,
                      margin={"l": 50, "r": 10, "t": 50, "b": 40}, template="plotly_white")
    return fig


def curves_figure() -> go.Figure:
    fig = go.Figure([go.Scatter(x=[], y=[], name="train loss", mode="lines+markers"),
                     go.Scatter(x=[], y=[], name="val loss", mode="lines+markers")])
    fig.update_layout(title="Loss (val perplexity = exp(val loss))", xaxis_title="step", yaxis_title="cross-entropy",
                      width=520, height=330, margin={"l": 50, "r": 10, "t": 50, "b": 40}, template="plotly_white")
    return fig


def memory_figure() -> go.Figure:
    fig = go.Figure([go.Bar(x=list(MEMORY_PARTS), y=[0, 0, 0], name="measured MiB"),
                     go.Scatter(x=[], y=[], name="trainable params (M)", mode="lines+markers", xaxis="x2",
                                yaxis="y2")])
    fig.update_layout(title="Model-state memory and trainable parameters", yaxis_title="MiB",
                      xaxis={"domain": [0, 0.45]}, xaxis2={"domain": [0.55, 1], "title": "step"},
                      yaxis2={"anchor": "x2", "title": "trainable params (M)"}, showlegend=False,
                      width=520, height=330, margin={"l": 50, "r": 10, "t": 50, "b": 40}, template="plotly_white")
    return fig
