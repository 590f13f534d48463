"""The live dashboard: tie map, its history, loss curves, memory, agent decisions, controls.

It subscribes to the training loop's events (the loop does not know it exists), runs
training in a background thread, and batches figure updates per tie change / evaluation,
never per step (plotly#1288). Without a live front end (papermill, nbconvert, plain
Python) it keeps plain figures and writes/displays them statically.
"""

from __future__ import annotations

import html
import time
import traceback
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from dyntie_core import RunDir, Trainer, resolve_roots
from dyntie_core.data import env_flag
from dyntie_core.events import DecisionEvent, EndEvent, EvalEvent, Event, StepEvent, TieChangeEvent
from dyntie_core.memory import format_bytes
from dyntie_core.plots import (
    MEMORY_PARTS,
    curves_figure,
    history_figure,
    history_hover,
    history_matrix,
    memory_figure,
    tie_map_figure,
    tie_matrix,
)
from dyntie_core.staticplots import curves_png, history_png, tie_map_png

from .runner import BackgroundRun

MiB = 1024 * 1024


def has_live_frontend() -> bool:
    """True inside a Jupyter kernel (a front end may be attached); False in plain Python, and wherever
    ``DYNTIE_HEADLESS=1`` says no one is watching (papermill, nbval, the grid runner): there training
    runs to its end in the cell instead of in a background thread."""
    if env_flag("DYNTIE_HEADLESS"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class Dashboard:
    """Watch and steer one ``Trainer``. ``live=None`` decides from the environment."""

    def __init__(self, trainer: Trainer, live: bool | None = None, log_size: int = 8) -> None:
        self.trainer = trainer
        self.run = BackgroundRun(trainer)
        self.live = has_live_frontend() if live is None else live
        self.n_layer = trainer.config.model.n_layer
        make = go.FigureWidget if self.live else go.Figure
        self.history_steps: list[int] = [trainer.step]
        self.history_roots: list[tuple[int, ...]] = [resolve_roots(trainer.model.tie_map)]
        self.tie_fig = make(tie_map_figure(trainer.model.tie_map))
        self.history_fig = make(history_figure(self.history_steps, self.history_roots, width=520, height=380))
        self.curves_fig = make(curves_figure())
        self.memory_fig = make(memory_figure())
        self.curve = {"step": [], "train": [], "val": [], "params": []}
        self.decisions: list[dict[str, Any]] = []
        self.log_size = log_size
        self._last_label = 0.0
        self._echo = False  # True while an event writes a value into a control (not a user edit)
        self.ui: Any = None
        if self.live:
            self._build_controls()
        self._draw_tie_map()
        trainer.subscribe(self._on_event)
        self.run.when_failed(self._on_failure)

    # ---- controls ------------------------------------------------------------------
    def _build_controls(self) -> None:
        import ipywidgets as w

        L = self.n_layer
        self.step_label = w.HTML(self._step_text())
        self.step_label.add_class("dyntie-step")
        self.map_label = w.HTML(self._map_text())
        self.map_label.add_class("dyntie-tiemap")
        self.status = w.HTML("ready")
        self.status.add_class("dyntie-status")
        self.start_btn = w.Button(description="Start", button_style="success")
        self.pause_btn = w.Button(description="Pause", disabled=True)
        self.stop_btn = w.Button(description="Stop", button_style="danger", disabled=True)
        for btn, cls in ((self.start_btn, "start"), (self.pause_btn, "pause"), (self.stop_btn, "stop")):
            btn.add_class(f"dyntie-{cls}")
        self.start_btn.on_click(lambda _: self.start())
        self.pause_btn.on_click(lambda _: self.toggle_pause())
        self.stop_btn.on_click(lambda _: self.stop())
        self.steps_box = w.BoundedIntText(value=self.trainer.config.train.steps, min=1, max=10**9,
                                          description="steps", layout=w.Layout(width="180px"))
        self.steps_box.observe(lambda ch: self._user_edit(self.set_steps, ch["new"]), names="value")
        agent = self._agent()
        self.k_box = w.BoundedIntText(value=agent.config.k_steps if agent else 4, min=1, max=10**6,
                                      description="K", disabled=agent is None, layout=w.Layout(width="140px"))
        self.eps_box = w.BoundedFloatText(value=agent.epsilon if agent else 0.0, min=0.0, max=1.0, step=0.05,
                                          description="epsilon", disabled=agent is None,
                                          layout=w.Layout(width="170px"))
        self.k_box.observe(lambda ch: self._user_edit(lambda v: self.set_agent(k_steps=v), ch["new"]), names="value")
        self.eps_box.observe(lambda ch: self._user_edit(lambda v: self.set_agent(epsilon=v), ch["new"]),
                             names="value")
        self.block_dd = w.Dropdown(options=list(range(1, L)), value=L - 1, description="tie block",
                                   layout=w.Layout(width="170px"))
        self.target_dd = w.Dropdown(options=list(range(L)), value=0, description="to block",
                                    layout=w.Layout(width="170px"))
        self.block_dd.add_class("dyntie-force-block")
        self.target_dd.add_class("dyntie-force-target")
        self.force_btn = w.Button(description="Force tie")
        self.force_btn.add_class("dyntie-force")
        self.force_btn.on_click(lambda _: self.force_tie(self.block_dd.value, self.target_dd.value))
        self.log = w.HTML(self._log_text())
        self.log.add_class("dyntie-log")
        self.error_out = w.Output()  # a training crash's traceback lands here
        try:  # clicking a heatmap cell (row = block, column = weights) forces that tie
            self.tie_fig.data[0].on_click(self._on_heatmap_click)
        except Exception:  # pragma: no cover - depends on the plotly front end
            pass
        controls = w.VBox([
            w.HBox([self.start_btn, self.pause_btn, self.stop_btn, self.steps_box, self.k_box, self.eps_box]),
            w.HBox([self.block_dd, self.target_dd, self.force_btn]),
            w.HBox([self.step_label, self.status]), self.map_label,
        ])
        self.ui = w.VBox([controls, w.HBox([self.tie_fig, self.history_fig]),
                          w.HBox([self.curves_fig, self.memory_fig]), w.HTML("<b>Agent decisions</b>"), self.log,
                          self.error_out])

    def _agent(self) -> Any:
        policy = self.trainer.policy
        return policy if hasattr(policy, "configure") else None

    def _user_edit(self, apply: Any, value: Any) -> None:
        """A control's observer: forward user edits, ignore the values events write into it."""
        if not self._echo:
            apply(value)

    def _on_heatmap_click(self, trace: Any, points: Any, selector: Any) -> None:
        if points.xs and points.ys:
            block, target = int(points.ys[0]), int(points.xs[0])
            if block >= 1:
                self.block_dd.value, self.target_dd.value = block, target
                self.force_tie(block, target)

    # ---- commands --------------------------------------------------------------------
    def start(self) -> None:
        self.run.start()
        if self.live:
            self.start_btn.disabled = True
            self.pause_btn.disabled = self.stop_btn.disabled = False
            self.status.value = "training"

    def toggle_pause(self) -> None:
        if self.run.paused:
            self.run.resume()
        else:
            self.run.pause()
        if self.live:
            self.pause_btn.description = "Resume" if self.run.paused else "Pause"
            self.status.value = "paused" if self.run.paused else "training"
            self.step_label.value = self._step_text()

    def stop(self) -> None:
        self.run.stop()
        if self.live:
            self.status.value = "stopping..."

    def force_tie(self, block: int, target: int) -> None:
        try:
            self.run.force_tie(block, target)
            message = f"forced: block {block} -> {target} (applied at the next step boundary)"
        except ValueError as exc:
            message = f"cannot force: {exc}"
        if self.live:
            self.status.value = html.escape(message)

    def set_steps(self, steps: int) -> None:
        """New step budget, applied by the training thread at the next step boundary."""
        self.run.set_steps(int(steps))

    def set_agent(self, k_steps: int | None = None, epsilon: float | None = None) -> None:
        """New K or epsilon for the agent, applied by the training thread at the next step boundary."""
        self.run.set_agent(k_steps=k_steps, epsilon=epsilon)

    def _on_failure(self, error: BaseException) -> None:
        if self.live:
            self.status.value = f"<b style='color:#b00'>training failed: {html.escape(repr(error))}</b>"
            self.error_out.append_stdout("".join(traceback.format_exception(error)))
            self.start_btn.disabled = self.pause_btn.disabled = self.stop_btn.disabled = True

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until training ends (headless use; in a live notebook this would freeze the buttons)."""
        return self.run.wait(timeout)

    def run_to_end(self) -> dict[str, Any] | None:
        """Headless: start, wait, then show the static figures and write ``dashboard.html``."""
        self.start()
        summary = self.wait()
        if self.trainer.run_dir is not None:
            self.save_html(self.trainer.run_dir / RunDir.DASHBOARD)
        self.show()
        return summary

    # ---- events (training thread) ----------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            if self.live and time.monotonic() - self._last_label > 0.25:
                self._last_label = time.monotonic()
                self.step_label.value = self._step_text()
        elif isinstance(event, TieChangeEvent):
            self.history_steps.append(event.step)
            self.history_roots.append(resolve_roots(event.new))
            self._draw_tie_map()
        elif isinstance(event, EvalEvent):
            self._draw_eval(event.record)
        elif isinstance(event, DecisionEvent):
            self.decisions = ([event.record | {"step": event.step}] + self.decisions)[: self.log_size]
            if self.live:
                self.log.value = self._log_text()
                self._echo = True
                try:
                    self.eps_box.value = float(event.record["epsilon"])
                finally:
                    self._echo = False
        elif isinstance(event, EndEvent) and self.live:
            self.step_label.value = self._step_text()
            self.status.value = "stopped early" if event.stopped_early else "finished"
            self.start_btn.disabled = self.pause_btn.disabled = self.stop_btn.disabled = True

    def _draw_tie_map(self) -> None:
        tie_map = self.trainer.model.tie_map
        history = history_matrix(self.history_roots)
        with self.tie_fig.batch_update(), self.history_fig.batch_update():
            self.tie_fig.data[0].z = tie_matrix(tie_map)
            self.tie_fig.layout.title.text = f"Tie map {list(tie_map)}"
            self.history_fig.data[0].z = history
            self.history_fig.data[0].text = history_hover(history)
            self.history_fig.data[0].x = list(self.history_steps)
        if self.live:
            self.map_label.value = self._map_text()

    def _draw_eval(self, record: dict[str, Any]) -> None:
        c = self.curve
        c["step"].append(record["step"])
        c["train"].append(record["train_loss"])
        c["val"].append(record["val_loss"])
        c["params"].append(record["trainable_params"] / 1e6)
        memory = record["memory"]
        with self.curves_fig.batch_update(), self.memory_fig.batch_update():
            self.curves_fig.data[0].x, self.curves_fig.data[0].y = list(c["step"]), list(c["train"])
            self.curves_fig.data[1].x, self.curves_fig.data[1].y = list(c["step"]), list(c["val"])
            self.memory_fig.data[0].y = [memory[p] / MiB for p in MEMORY_PARTS]
            predicted = record.get("memory_predicted")
            if predicted:
                self.memory_fig.data[2].y = [predicted[p] / MiB for p in MEMORY_PARTS]
            self.memory_fig.data[1].x, self.memory_fig.data[1].y = list(c["step"]), list(c["params"])
            self.curves_fig.layout.title.text = f"Loss (val ppl {record['val_ppl']:.2f} at step {record['step']})"

    # ---- text ------------------------------------------------------------------------
    def _step_text(self) -> str:
        t = self.trainer
        state = " (paused)" if self.run.paused else ""
        return f"<b>step <span class='dyntie-step-count'>{t.step}</span> / {t.config.train.steps}</b>{state}"

    def _map_text(self) -> str:
        tie_map = list(self.trainer.model.tie_map)
        return f"tie map: <code class='dyntie-map'>{tie_map}</code> ({len(set(resolve_roots(tie_map)))} unique)"

    def _log_text(self) -> str:
        if not self.decisions:
            return "<i>no decisions yet</i>"
        rows = "".join(
            f"<tr><td>{d['step']}</td><td>{d['block']}</td><td>{d['action']}</td><td>{d['reward']:.3f}</td>"
            f"<td>{d['epsilon']:.3f}</td><td>{d['q_value']:.3f}</td></tr>" for d in self.decisions)
        return ("<table><tr><th>step</th><th>block</th><th>action</th><th>reward</th><th>epsilon</th>"
                f"<th>Q</th></tr>{rows}</table>")

    # ---- output ----------------------------------------------------------------------
    def figures(self) -> list[go.Figure]:
        return [go.Figure(f) for f in (self.tie_fig, self.history_fig, self.curves_fig, self.memory_fig)]

    def to_html(self) -> str:
        """All four figures as one offline HTML fragment (plotly.js embedded once)."""
        parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(self.figures())]
        return "<div style='display:flex;flex-wrap:wrap'>" + "".join(parts) + "</div>"

    def save_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        title = f"dyntie dashboard: {self.trainer.config.method.name}, step {self.trainer.step}"
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
                        f"<h3>{title}</h3>{self.to_html()}</body></html>", encoding="utf-8")
        return path

    def show(self) -> None:
        """Display the live dashboard; without a live front end, static pictures (kilobytes, not the megabytes
        of plotly.js) and the model-state memory as a table. ``save_html`` keeps the interactive figures."""
        from IPython.display import Image, Markdown, display

        if self.live:
            display(self.ui)
            return
        tie_map = self.trainer.model.tie_map
        display(Image(data=tie_map_png(tie_map)))
        display(Image(data=history_png(self.history_steps, self.history_roots, self.trainer.step)))
        c = self.curve
        if c["step"]:
            display(Image(data=curves_png(c["step"], c["train"], c["val"])))
        if self.trainer.state.last_eval is not None:
            record = self.trainer.state.last_eval
            rows = [("measured", record["memory"]), ("predicted", record.get("memory_predicted"))]
            display(Markdown("| model state | " + " | ".join(MEMORY_PARTS) + " |\n|" + " --- |" * 4 + "".join(
                f"\n| {name} | " + " | ".join(format_bytes(m[p]) for p in MEMORY_PARTS) + " |"
                for name, m in rows if m)))

    def _ipython_display_(self) -> None:
        self.show()
