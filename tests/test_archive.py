"""`dyntie archive`: finished cells kept in git without their checkpoints, and copied back for the runner."""

import json

import pytest

from dyntie_core import ConfigError, RunDir, Trainer
from dyntie_core.archive import archive_cells
from dyntie_core.cli import main
from dyntie_core.grid import DEFAULT_NOTEBOOK, Cell, Grid, run_grid
from dyntie_core.grid_status import cell_progress
from dyntie_core.report import collect

from .conftest import small_run_config


@pytest.fixture
def results(tmp_path):
    """A results folder with one finished cell and one stopped half-way, as the grid runner leaves them."""
    out = tmp_path / "runs"
    Trainer(small_run_config(steps=20, method="random-fixed", n_unique=2, train={"checkpoint_interval": 10}),
            run_dir=out / "done" / "run").run()
    (out / "done" / "status.json").write_text(json.dumps({"state": "done", "wall_s": 3.0}))
    (out / "done" / "params.yaml").write_text("seed: 7\n")
    (out / "done" / "cell.ipynb").write_text("{}")
    half = Trainer(small_run_config(steps=40, train={"checkpoint_interval": 10}), run_dir=out / "half" / "run")
    half.train(max_steps=25)
    (out / "half" / "status.json").write_text(json.dumps({"state": "running"}))
    return out


def test_archive_keeps_a_finished_cells_results_and_leaves_out_checkpoints_and_unfinished_cells(results, tmp_path,
                                                                                               capsys):
    kept = tmp_path / "kept"
    assert main(["archive", str(results), str(kept)]) == 0
    printed = capsys.readouterr().out
    assert "1 finished cell(s) copied" in printed and "not finished: half" in printed
    assert sorted(p.name for p in kept.iterdir()) == ["done"]
    files = sorted(str(p.relative_to(kept / "done")) for p in (kept / "done").rglob("*") if p.is_file())
    assert files == ["params.yaml", "run/config.json", "run/data.json", "run/metrics.jsonl", "run/summary.json",
                     "run/tie_maps.jsonl", "status.json"]
    for name in files:
        assert (kept / "done" / name).read_bytes() == (results / "done" / name).read_bytes()
    # what the reports read is all there: the same rows from the copy as from the original
    def rows(root):
        return [{k: v for k, v in row.items() if k != "runs"} for row in collect(root)]

    assert rows(kept) == rows(results) and len(rows(kept)) == 1
    assert cell_progress(kept / "done").state == "done"

    again = archive_cells(results, kept)
    assert (again.copied, again.unchanged, again.unfinished) == ([], ["done"], ["half"])


def test_archived_cells_restored_into_a_fresh_folder_are_skipped_by_the_grid_runner(results, tmp_path):
    kept, fresh = tmp_path / "kept", tmp_path / "fresh"
    archive_cells(results, kept)
    restored = archive_cells(kept, fresh)
    assert restored.copied == ["done"]
    assert not (fresh / "done" / "run" / RunDir.CHECKPOINTS).exists()
    ran = run_grid(Grid(DEFAULT_NOTEBOOK, [Cell("done", {})]), fresh)  # nothing to run: the cell is finished
    assert [(r.name, r.state) for r in ran] == [("done", "reused")]
    assert ran[0].summary == RunDir(results / "done" / "run").read_summary()


def test_a_different_result_for_an_archived_cell_is_refused_unless_replaced(results, tmp_path):
    kept = tmp_path / "kept"
    archive_cells(results, kept)
    summary = results / "done" / "run" / RunDir.SUMMARY
    changed = json.loads(summary.read_text()) | {"test_ppl": 1.0}
    summary.write_text(json.dumps(changed))
    with pytest.raises(ConfigError, match=r"already in .* hold a different result: done"):
        archive_cells(results, kept)
    assert json.loads((kept / "done" / "run" / RunDir.SUMMARY).read_text())["test_ppl"] != 1.0  # untouched
    assert archive_cells(results, kept, replace=True).copied == ["done"]
    assert json.loads((kept / "done" / "run" / RunDir.SUMMARY).read_text())["test_ppl"] == 1.0
    assert not list(kept.glob(".*tmp*"))  # no staging folder left behind
    assert archive_cells(results, kept, patterns=["nothing-*"]).copied == []
    with pytest.raises(ConfigError, match="results folder not found"):
        archive_cells(tmp_path / "nowhere", kept)
    with pytest.raises(ConfigError, match="same folder"):
        archive_cells(kept, kept)
