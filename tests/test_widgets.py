"""The dashboard and its background runner, without a browser (see test_browser.py for the real page)."""

import time

import pytest

from dyntie_core.loop import Trainer
from dyntie_core.plots import tie_matrix
from widgets import BackgroundRun, Dashboard

from .conftest import small_run_config


def _wait_for(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_tie_matrix_marks_roots_and_chain_targets():
    assert tie_matrix((0, 0, 1, 3)) == [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0.5, 0, 0], [0, 0, 0, 1]]


def test_pause_holds_steps_and_forced_ties_apply_while_paused(tmp_path, pydoc_chars):
    trainer = Trainer(small_run_config(steps=30, method="dlt"), run_dir=tmp_path, data=pydoc_chars)
    run = BackgroundRun(trainer)
    run.pause()
    run.start()
    time.sleep(0.3)
    assert trainer.step == 0 and run.paused
    run.force_tie(3, 3)
    assert _wait_for(lambda: trainer.model.tie_map == (0, 0, 0, 3))  # applied at once, still at step 0
    assert trainer.step == 0
    with pytest.raises(ValueError, match="not valid"):
        run.force_tie(2, 3)
    with pytest.raises(ValueError, match="block must be"):
        run.force_tie(0, 0)
    run.resume()
    summary = run.wait(timeout=120)
    assert summary is not None and summary["steps"] == 30
    assert (tmp_path / "summary.json").is_file()
    reasons = [line for line in (tmp_path / "tie_maps.jsonl").read_text().splitlines() if '"forced"' in line]
    assert len(reasons) == 1


def test_stop_finishes_the_run_consistently(tmp_path, pydoc_chars):
    trainer = Trainer(small_run_config(steps=100000), run_dir=tmp_path, data=pydoc_chars)
    run = BackgroundRun(trainer)
    run.start()
    assert _wait_for(lambda: trainer.step >= 5)
    run.stop()
    summary = run.wait(timeout=60)
    assert summary["stopped_early"] and summary["steps"] < 100000
    assert (tmp_path / "checkpoints" / "last.safetensors").is_file()
    assert Trainer.resume(tmp_path, data=pydoc_chars).step == summary["steps"]


def test_headless_dashboard_tracks_events_and_writes_offline_html(tmp_path, pydoc_chars):
    trainer = Trainer(small_run_config(steps=24, method="dlt"), run_dir=tmp_path, data=pydoc_chars)
    dash = Dashboard(trainer, live=False)
    changes = []
    trainer.subscribe(lambda e: changes.append(e) if type(e).__name__ == "TieChangeEvent" else None)
    dash.start()
    dash.wait(timeout=120)
    assert len(dash.history_steps) == len(changes) + 1
    z = dash.history_fig.data[0].z
    assert len(z) == 4 and len(z[0]) == len(changes) + 1
    assert list(dash.curves_fig.data[1].x) == [0, 10, 20, 24]
    assert [list(r) for r in dash.tie_fig.data[0].z] == tie_matrix(trainer.model.tie_map)
    assert dash.decisions and dash.decisions[0]["step"] >= dash.decisions[-1]["step"]
    html = dash.save_html(tmp_path / "dash.html").read_text()
    assert html.count("Plotly.newPlot") == 4 and 'src="https://cdn' not in html


def _agent_trainer(tmp_path, pydoc_chars, steps=30):
    return Trainer(small_run_config(steps=steps, method="dlt"), run_dir=tmp_path, data=pydoc_chars)


def test_a_users_epsilon_survives_the_next_decision_event(tmp_path, pydoc_chars):
    from dyntie_core.events import DecisionEvent

    trainer = _agent_trainer(tmp_path, pydoc_chars)
    dash = Dashboard(trainer, live=True)
    agent = trainer.policy
    dash.eps_box.value = 0.25  # the user's edit
    dash.k_box.value = 2
    dash.steps_box.value = 12
    # a decision made before the edit reaches the dashboard and shows its epsilon (1.0) in the box
    dash._on_event(DecisionEvent(4, {"epsilon": 1.0, "block": 1, "action": 0, "reward": -10.0, "q_value": 0.0}))
    assert dash.eps_box.value == 1.0
    dash.run.apply_commands()  # the training thread's next step boundary
    assert agent.epsilon == 0.25 and agent.config.k_steps == 2 and trainer.config.train.steps == 12


def test_a_crash_in_the_training_thread_is_shown_and_reported(tmp_path, pydoc_chars):
    trainer = _agent_trainer(tmp_path, pydoc_chars)
    dash = Dashboard(trainer, live=True)

    def boom():
        raise RuntimeError("boom at step 3")

    trainer.train_step = boom
    failures, done = [], []
    dash.run.when_failed(failures.append)
    dash.run.when_done(done.append)
    dash.start()
    with pytest.raises(RuntimeError, match="boom at step 3"):
        dash.wait(timeout=60)
    assert [str(e) for e in failures] == ["boom at step 3"] and done == []
    assert "training failed" in dash.status.value and "boom at step 3" in dash.status.value
    assert "Traceback" in "".join(o["text"] for o in dash.error_out.outputs)
    late = []
    dash.run.when_failed(late.append)  # registered after the end: called at once
    assert len(late) == 1


def test_when_done_registered_after_the_end_still_fires(tmp_path, pydoc_chars):
    run = BackgroundRun(Trainer(small_run_config(steps=5), run_dir=tmp_path, data=pydoc_chars))
    run.start()
    summary = run.wait(timeout=60)
    got = []
    run.when_done(got.append)
    assert got == [summary] and summary["steps"] == 5
