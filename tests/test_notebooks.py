"""Notebooks: stored as jupytext pairs with the outputs of a small deterministic run (which ``make test``
checks with nbval), and run headless through papermill with results read back and checked."""

import ast
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb")
                   if not {"runs", ".ipynb_checkpoints"} & set(p.parts))


def test_make_test_checks_every_notebook_with_nbval():
    makefile = (ROOT / "Makefile").read_text()
    listed = makefile.split("NOTEBOOKS :=")[1].splitlines()[0].split()
    assert sorted(ROOT / p for p in listed) == NOTEBOOKS and len(NOTEBOOKS) == 3
    assert "$(NOTEBOOKS) $(NBVAL)" in makefile and "--nbval " in makefile


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stored_small_with_the_outputs_of_a_clean_run(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert path.stat().st_size < 2_000_000
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # run top to bottom, once
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert "plotly.js" not in path.read_text() and "application/vnd.jupyter.widget-state+json" not in nb.metadata
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_walkthrough_runs_headless_and_compares_with_vanilla(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "walkthrough.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "01_walkthrough.ipynb"), str(out), kernel_name="python3",
                               parameters={"interactive": False, "out_dir": str(tmp_path / "runs")},
                               cwd=str(ROOT), progress_bar=False)
    rows = json.loads((tmp_path / "runs" / "walkthrough_results.json").read_text())
    assert [r["method"] for r in rows] == ["dlt", "vanilla"]
    assert rows[0]["trainable_params"] < rows[1]["trainable_params"]
    assert rows[1]["unique_blocks"] == 6 and rows[0]["val_ppl_mean"] < 40
    assert rows[1]["val_ppl_mean"] < rows[0]["val_ppl_mean"]  # what the table shows: the agent loses to vanilla
    assert (tmp_path / "runs" / "dlt" / "dashboard.html").is_file()
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 4  # the example map, then the dashboard's map, history and curves as static pictures
    assert out.stat().st_size < 2_000_000
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)


SOURCES = sorted(p for p in (ROOT / "notebooks").rglob("*.py") if not {"runs", "data"} & set(p.parts))


def test_every_notebook_has_a_paired_source():
    assert [p.with_suffix(".ipynb") for p in SOURCES] == NOTEBOOKS and SOURCES


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebook_pairs_are_in_sync(source):
    """The .py (jupytext percent) is the source; its .ipynb must hold the same cells (``make notebooks``)."""
    jupytext = pytest.importorskip("jupytext")
    expected = jupytext.read(source)
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in stored.cells] == \
        [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in expected.cells]
    assert stored.metadata["jupytext"]["formats"] == "ipynb,py:percent"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill skips a parameter line it cannot parse (an `=` in its comment) and then warns that the parameter
    is unknown when a user passes it; every name the parameters cell assigns must be one papermill reads."""
    papermill = pytest.importorskip("papermill")
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [n.targets[0].id for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)]
    assert assigned and list(papermill.inspect_notebook(str(path))) == assigned
