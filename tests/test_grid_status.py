"""`dyntie status`: where a long grid stands, read from what the runner and the trainer wrote."""

import json

import pytest

from dyntie_core import ConfigError, RunDir, Trainer, rundir
from dyntie_core.cli import main
from dyntie_core.grid import Cell, Grid
from dyntie_core.grid_status import cell_progress, grid_progress, progress_table

from .conftest import small_run_config


@pytest.mark.parametrize("kernel_table", [True, False], ids=["proc-locks", "flock-probe"])
def test_in_use_tells_a_held_run_directory_from_a_released_one(tmp_path, monkeypatch, kernel_table):
    if not kernel_table:  # a system without /proc/locks: the non-blocking probe answers instead
        monkeypatch.setattr(rundir, "PROC_LOCKS", tmp_path / "no-such-table")
    elif not rundir.PROC_LOCKS.is_file():
        pytest.skip("this system has no /proc/locks")
    run = RunDir(tmp_path / "run")
    assert not run.in_use()  # nothing there yet
    with run.lock():
        (run / "keep").write_text("x")  # so that the directory outlives the lock
        assert run.in_use()
        assert run.in_use()  # asking twice does not take the lock away from its holder
    assert (run / RunDir.LOCK).is_file() and not run.in_use()  # the lock file stays; nobody holds it


def test_status_reads_done_stopped_running_failed_and_pending_cells(tmp_path, capsys):
    out = tmp_path / "out"
    done = Trainer(small_run_config(steps=20, train={"checkpoint_interval": 10}), run_dir=out / "done" / "run")
    done.run()
    (out / "done" / "status.json").write_text(json.dumps({"state": "done"}))
    half = Trainer(small_run_config(steps=40, train={"checkpoint_interval": 10}), run_dir=out / "half" / "run")
    half.train(max_steps=25)  # killed after step 25: evaluated at 20, last periodic checkpoint at 20
    (out / "half" / "status.json").write_text(json.dumps({"state": "running"}))  # the runner died with it
    (out / "broken").mkdir()
    (out / "broken" / "status.json").write_text(json.dumps({"state": "failed", "error": "ValueError: bad"}))
    grid = Grid(out / "lm.ipynb", [Cell(n, {}) for n in ("half", "later", "done")])

    cells = {c.name: c for c in grid_progress(out, [grid])}
    assert [c.name for c in grid_progress(out, [grid])] == ["half", "later", "done", "broken"]  # grid order first
    assert (cells["done"].state, cells["done"].step, cells["done"].total_steps, cells["done"].eta_s) == (
        "done", 20, 20, None)
    half_rows = RunDir(out / "half" / "run").read_jsonl(RunDir.METRICS)
    stopped = cells["half"]
    assert (stopped.state, stopped.step, stopped.total_steps, stopped.resume_step) == ("stopped", 20, 40, 20)
    assert stopped.val_ppl == pytest.approx(half_rows[-1]["val_ppl"])
    assert stopped.eta_s == pytest.approx(20 * half_rows[-1]["train_time_s"] / 20)  # 20 steps left at its rate
    assert (cells["broken"].state, cells["broken"].error) == ("failed", "ValueError: bad")
    assert cells["later"].state == "pending" and cells["later"].step is None

    with RunDir(out / "half" / "run").lock():  # a rerun holds the directory: running, whatever status.json says
        assert cell_progress(out / "half").state == "running"

    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| half | stopped | 20/40 |" in printed and "| 20 |" in printed
    assert "| broken | failed: ValueError: bad |" in printed
    assert "3 cells: 1 done, 0 running, 1 stopped, 1 failed, 0 pending" in printed
    assert "later" not in printed  # without --grid, only cells that wrote something
    assert progress_table([]).endswith("0 cells: 0 done, 0 running, 0 stopped, 0 failed, 0 pending")
    with pytest.raises(ConfigError, match="results folder not found"):
        grid_progress(tmp_path / "nowhere")
