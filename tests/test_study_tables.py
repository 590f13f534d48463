"""``experiments/study_tables.py``: issue 9's tables are computed from the cells' summaries, never typed in."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from dyntie_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
        "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char", "--steps", "8"]


def _study_tables():
    spec = importlib.util.spec_from_file_location("study_tables", ROOT / "experiments" / "study_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_tables_fill_the_doc_from_finished_cells(tmp_path, capsys):
    results = tmp_path / "results"
    cells = {"vanilla": ["--method", "vanilla"], "cycle-rev-4": ["--method", "cycle-rev", "--n-unique", "2"],
             "dlt": ["--method", "dlt"]}
    for variant, method in cells.items():
        assert main(["train", *method, "--out", str(results / f"pydoc__{variant}" / "run"), *TINY]) == 0
    test = {v: json.loads((results / f"pydoc__{v}" / "run" / "summary.json").read_text())["test_ppl"] for v in cells}
    doc = tmp_path / "STUDY.md"
    doc.write_text("intro\n<!-- screen:start -->\nstale table\n<!-- screen:end -->\nrest\n")
    tables = _study_tables()
    assert tables.main([str(results), "--doc", str(doc), "--figures", str(tmp_path / "study")]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n<!-- screen:start -->\n") and text.endswith("<!-- screen:end -->\nrest\n")
    assert "stale table" not in text
    dlt_row = next(line for line in text.splitlines() if line.startswith("| dlt | `dlt` |"))
    assert f"| {test['dlt'] / test['vanilla']:.3f}x | {test['dlt'] / test['cycle-rev-4']:.3f}x |" in dlt_row
    assert "| dlt-k16 | not finished yet |" in text  # a cell that has not run is named, not dropped
    assert (tmp_path / "study" / "screen" / "pareto-pydoc.png").read_bytes()[:4] == b"\x89PNG"
    assert "(study/screen/history-pydoc-dlt.png)" in text
    assert (tmp_path / "study" / "screen" / "history-pydoc-dlt.png").is_file()
    doc.write_text("no markers here\n")
    assert tables.main([str(results), "--doc", str(doc)]) == 2
    assert tables.main([str(tmp_path / "study"), "--doc", str(doc)]) == 2
    assert "no finished cells" in capsys.readouterr().err
