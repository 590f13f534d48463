"""The grid runner, the experiment notebook under papermill, and reports."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from dyntie_core import ConfigError, RunDir, Trainer
from dyntie_core.cli import main
from dyntie_core.experiment import experiment_config
from dyntie_core.grid import Cell, Grid, load_grid, merge_grids, select_cells
from dyntie_core.memory import format_bytes
from dyntie_core.report import collect, unique_blocks_cell, write_report

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "grids" / "cpu-smoke.yaml"


def test_experiment_parameters_accept_papermill_strings_and_refuse_bad_ones():
    config = experiment_config(preset="debug", method="cycle", n_unique="2", steps="12", seed="3",
                               agent="", overrides="{train: {eval_interval: 6}}", dataset="pydoc")
    assert (config.method.name, config.method.n_unique, config.train.steps, config.train.seed) == ("cycle", 2, 12, 3)
    assert config.train.eval_interval == 6
    dlt = experiment_config(preset="paper-gpt2-12-cpu", agent='{"k_steps": 2}', episodes="3")
    assert dlt.method.name == "dlt" and dlt.train.steps == 3 * 11 * 2
    for kwargs, message in [({"steps": "twelve"}, "must be an integer"), ({"steps": True}, "must be an integer"),
                            ({"agent": "[1, 2]"}, "must be a mapping"), ({"overrides": "{a: [}"}, "not valid YAML"),
                            ({"preset": "nope"}, "unknown preset"), ({"method": "dlt", "n_unique": 3},
                                                                     "does not take n_unique"),
                            ({"dataset": 3}, "must be text")]:
        with pytest.raises((ConfigError, ValueError), match=message):
            experiment_config(**{"preset": "debug", **kwargs})


def test_grid_files_expand_and_bad_ones_are_refused(tmp_path):
    grids = {p.stem: load_grid(p) for p in sorted((ROOT / "grids").glob("*.yaml"))}
    assert set(grids) == {"cpu-smoke", "cpu-table", "cpu-horizon", "study-screen", "study-horizon",
                          "study-horizon-share", "study-horizon-confirm", "study-horizon-fast",
                          "study-horizon-contiguous", "study-horizon-relaxed", "study-horizon-adjacent", "paper-gpt2",
                          "paper-bert"}
    assert [c.name for c in grids["cpu-smoke"].cells] == ["vanilla__seed1", "dlt__seed1", "cycle-rev-2__seed1"]
    dlt = grids["cpu-smoke"].cells[1].params
    assert dlt["agent"] == {"k_steps": 2} and grids["cpu-smoke"].cells[2].params["n_unique"] == 2
    assert len(grids["cpu-table"].cells) == 2 * 5 * 3
    for grid in grids.values():  # every cell of every grid is a valid experiment
        for cell in grid.cells:
            experiment_config(**cell.params)
    horizon = ("cpu-horizon", "study-horizon", "study-horizon-share", "study-horizon-confirm", "study-horizon-fast",
               "study-horizon-contiguous", "study-horizon-relaxed", "study-horizon-adjacent")
    for name in horizon:  # 300 episodes, and names that do not collide in one folder
        assert {experiment_config(**c.params).train.steps for c in grids[name].cells} == {13200}, name
    names = [c.name for name in horizon for c in grids[name].cells]
    assert len(names) == len(set(names)) == 30 + 24 + 16 + 20 + 6 + 6 + 18 + 6
    adjacent = {c.name: experiment_config(**c.params) for c in grids["study-horizon-adjacent"].cells}
    fast = experiment_config(**next(c.params for c in grids["study-horizon-fast"].cells
                                    if c.name == "seed3__wikitext-2-raw__shrink-4-loss-share-fast"))
    adj = adjacent["seed3__wikitext-2-raw__shrink-4-loss-share-fast-adjacent"]
    assert adj.method.progressive.adjacent and not fast.method.progressive.adjacent  # the one factor that differs
    assert adj.replace(method=fast.method) == fast
    share = {c.name: experiment_config(**c.params) for c in grids["study-horizon-share"].cells}
    fixed = share["seed1__tinyshakespeare-input.txt__random-fixed-4-share"]  # the follow control with share mode
    follow = experiment_config(**next(c.params for c in grids["cpu-horizon"].cells
                                      if c.name == "seed1__tinyshakespeare-input.txt__random-fixed-4"))
    assert fixed.model.tie_mode == "share" and fixed.replace(model=follow.model) == follow.replace(
        train=fixed.train)  # only the tie mode and the transition probe differ
    assert fixed.train.probe_transitions and not follow.train.probe_transitions
    shrink = share["seed1__wikitext-2-raw__shrink-4-loss-share"]
    assert (shrink.method.progressive.criterion, shrink.model.tie_mode) == ("loss", "share")
    early = share["seed1__tinyshakespeare-input.txt__shrink-4-loss-share-early"]  # only the tie window differs
    assert (early.method.progressive.start, early.method.progressive.end) == (0.1, 0.5)
    assert early.method.progressive.criterion == "loss" and early.model.tie_mode == "share"
    sandwich = share["seed1__tinyshakespeare-input.txt__sandwich-4-share"]
    assert (sandwich.method.name, sandwich.method.n_unique, sandwich.model.tie_mode) == ("sandwich", 4, "share")
    sequence = share["seed1__wikitext-2-raw__sequence-4-share"]  # the contiguous shape shrink converges to
    assert (sequence.method.name, sequence.method.n_unique, sequence.model.tie_mode) == ("sequence", 4, "share")
    assert fixed.data.tokenizer == "char" != shrink.data.tokenizer  # the dataset rule still applies
    relaxed = share["seed1__tinyshakespeare-input.txt__shrink-4-loss-share-lora8"]  # H3 x H4: only relax differs
    assert (relaxed.model.relax, relaxed.model.relax_rank) == ("lora", 8)
    assert relaxed.replace(model=shrink.model) == share["seed1__tinyshakespeare-input.txt__shrink-4-loss-share"]
    assert share["seed1__tinyshakespeare-input.txt__random-fixed-4-share-lora8"].replace(model=fixed.model) == fixed
    confirm = {c.name: experiment_config(**c.params) for c in grids["study-horizon-confirm"].cells}
    for name, config in confirm.items():  # seeds 2 and 3 of the seed-1 cells, identical but for the seed
        seed1 = share[name.replace(name.split("__")[0], "seed1", 1)]
        assert config.train.seed in (2, 3)
        assert config.replace(train=dataclasses.replace(config.train, seed=1)) == seed1
    fast = {c.name: experiment_config(**c.params) for c in grids["study-horizon-fast"].cells}
    for name, config in fast.items():  # seed 1's early shrink with only the seed and the tie window changed
        assert (config.method.progressive.start, config.method.progressive.end) == (0.02, 0.1)
        seed1 = share[name.replace(name.split("__")[0], "seed1", 1).replace("-fast", "-early")]
        moved = dataclasses.replace(config.method, progressive=seed1.method.progressive)
        assert config.replace(method=moved, train=dataclasses.replace(config.train, seed=1)) == seed1
    plain = {**share, **confirm, **fast}
    relaxed_cells = {c.name: experiment_config(**c.params) for c in grids["study-horizon-relaxed"].cells}
    assert len(relaxed_cells) == 18
    for name, config in relaxed_cells.items():  # a plain share-mode cell of the same seed with rank-8 LoRA ties added
        base = plain[name.removesuffix("-lora8")]
        assert (config.model.relax, config.model.relax_rank) == ("lora", 8) and base.model.relax == "none"
        assert config.replace(model=base.model) == base
    randoms = {c.name: experiment_config(**c.params) for name in ("study-horizon-share", "study-horizon-confirm")
               for c in grids[name].cells if c.name.endswith("__random-fixed-4-share")}
    contiguous = {c.name: experiment_config(**c.params) for c in grids["study-horizon-contiguous"].cells}
    assert len(contiguous) == 6
    for name, config in contiguous.items():  # the random-fixed-4-share cell of the same seed, only the method differs
        paired = randoms[name.replace("random-contiguous", "random-fixed")]
        assert config.method.name == "random-contiguous" and config.replace(method=paired.method) == paired
    assert len(grids["study-horizon"].cells) == 24
    screen = {c.name: experiment_config(**c.params) for c in grids["study-screen"].cells}
    assert len(screen) == 56 and {c.train.steps for c in screen.values()} == {1320}  # equal steps for all
    relaxed = screen["tinyshakespeare-input.txt__dlt-relax"]  # a variant rule and a dataset rule deep-merge
    assert (relaxed.model.relax, relaxed.data.tokenizer, relaxed.method.name) == ("norms", "char", "dlt")
    soft = screen["wikitext-2-raw__soft-4-share"]
    assert (soft.method.name, soft.method.n_unique, soft.model.relax, soft.model.tie_mode) == ("soft", 4, "mix",
                                                                                               "share")
    assert "variant" not in grids["study-screen"].cells[0].params  # variant names cells, it is no parameter
    picked = select_cells(grids["study-screen"], ["tinyshakespeare*__shrink-4*", "*__vanilla"])
    assert [c.name.split("__")[1] for c in picked.cells if c.name.startswith("tiny")][:3] == [
        "vanilla", "shrink-4-loss", "shrink-4-loss-lora"]  # the grid's order, not the patterns'
    assert len(picked.cells) == 2 + 6 and picked.notebook == grids["study-screen"].notebook
    with pytest.raises(ConfigError, match="no cell matches 'nothing'; cells are named like wikitext-2-raw__vanilla"):
        select_cells(grids["study-screen"], ["nothing"])
    # a study's grids as one queue: cells in the order the grids are given, names unique, one notebook
    queue = merge_grids([grids["study-horizon-confirm"], grids["cpu-horizon"]])
    assert [c.name for c in queue.cells] == [c.name for name in ("study-horizon-confirm", "cpu-horizon")
                                             for c in grids[name].cells]
    assert select_cells(queue, ["seed2__tiny*__vanilla", "seed2__tiny*__sequence-4-share"]).cells[0].name == \
        "seed2__tinyshakespeare-input.txt__sequence-4-share"  # the confirmation grid was given first
    with pytest.raises(ConfigError, match="'vanilla__seed1' is in more than one of the grids"):
        merge_grids([grids["cpu-smoke"], grids["cpu-smoke"]])
    with pytest.raises(ConfigError, match="one notebook"):
        merge_grids([grids["cpu-smoke"], Grid(tmp_path / "other.ipynb", [Cell("x", {})])])
    with pytest.raises(ConfigError, match="no grid"):
        merge_grids([])
    for text, message in [("axes: {seed: []}", "non-empty list"), ("axis: {}", "unknown key"),
                          ("cells: [{when: {}}]", "cells\\[0\\]"), ("[1, 2]", "must hold a mapping")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_grid(bad)


def test_smoke_grid_isolates_a_failing_cell_and_resumes_an_interrupted_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = yaml.safe_load(SMOKE.read_text())
    spec["axes"]["method"].append("nope")  # a deliberately failing cell
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    # the dlt cell was killed half-way: its run directory holds a checkpoint at step 6 and no summary
    dlt = next(c for c in load_grid(grid_file).cells if c.name == "dlt__seed1")
    params = {k: v for k, v in dlt.params.items()}
    half = Trainer(experiment_config(**params), run_dir=out / "dlt__seed1" / "run")
    half.train(max_steps=7)
    (out / "dlt__seed1" / "status.json").write_text(json.dumps({"state": "running"}))
    row_at_6 = RunDir(out / "dlt__seed1" / "run").read_jsonl(RunDir.METRICS)[1]
    assert row_at_6["step"] == 6

    # --archive keeps each finished cell at once; an archive that already holds another result for a cell
    # (here dlt's, from an earlier session) is not overwritten
    kept = tmp_path / "kept"
    (kept / "dlt__seed1" / "run").mkdir(parents=True)
    (kept / "dlt__seed1" / "status.json").write_text(json.dumps({"state": "done"}))
    (kept / "dlt__seed1" / "run" / RunDir.SUMMARY).write_text(json.dumps({"steps": 12, "test_ppl": 1.0}))

    assert main(["reproduce", str(grid_file), "--out", str(out), "--jobs", "2", "--archive", str(kept)]) == 1
    printed = capsys.readouterr().out
    assert "not archived (a different result for the same cell is already in" in printed
    assert printed.rstrip().endswith(": dlt__seed1")
    assert sorted(p.name for p in kept.iterdir()) == ["cycle-rev-2__seed1", "dlt__seed1", "vanilla__seed1"]
    assert json.loads((kept / "dlt__seed1" / "run" / RunDir.SUMMARY).read_text())["test_ppl"] == 1.0
    assert "| nope__seed1 | ValueError: unknown method 'nope'" in printed
    assert "4 cells: 3 finished now, 0 finished before, 1 failed" in printed
    status = json.loads((out / "nope__seed1" / "status.json").read_text())
    assert status["state"] == "failed" and "unknown method" in status["error"]
    assert (out / "nope__seed1" / "cell.ipynb").is_file()  # the executed notebook, with the error in it
    for name in ("vanilla__seed1", "dlt__seed1", "cycle-rev-2__seed1"):
        summary = RunDir(out / name / "run").read_summary()
        assert summary["steps"] == 12 and not summary["stopped_early"], name
        assert json.loads((out / name / "status.json").read_text())["state"] == "done"
        nb = (out / name / "cell.ipynb").read_text()
        assert len(nb) < 2_000_000 and "image/png" in nb
    resumed = RunDir(out / "dlt__seed1" / "run").read_jsonl(RunDir.METRICS)
    assert [r["step"] for r in resumed] == [0, 6, 12]
    assert resumed[1] == row_at_6  # resumed from its checkpoint, not started over
    assert RunDir(out / "cycle-rev-2__seed1" / "run").read_summary()["unique_blocks"] == 2
    report = (out / "report.md").read_text()
    assert "| vanilla | 1 |" in report and "| cycle-rev-2 | 1 |" in report and "dlt[k_steps=2]" in report

    mtime = (out / "vanilla__seed1" / "cell.ipynb").stat().st_mtime_ns
    assert main(["reproduce", str(grid_file), "--out", str(out)]) == 1  # finished cells are skipped
    assert "4 cells: 0 finished now, 3 finished before, 1 failed" in capsys.readouterr().out
    assert (out / "vanilla__seed1" / "cell.ipynb").stat().st_mtime_ns == mtime

    # on a fresh machine the archive brings the finished cells back, and nothing trains again
    fresh = tmp_path / "fresh"
    assert main(["reproduce", str(grid_file), "--out", str(fresh), "--archive", str(kept),
                 "--only", "vanilla__seed1", "--only", "cycle-rev-2__seed1"]) == 0
    printed = capsys.readouterr().out
    assert "2 finished cell(s) restored from" in printed and "2 cells: 0 finished now, 2 finished before" in printed
    for name in ("vanilla__seed1", "cycle-rev-2__seed1"):
        assert RunDir(fresh / name / "run").read_summary() == RunDir(out / name / "run").read_summary()
        assert not (fresh / name / "cell.ipynb").exists()


def test_reproduce_refuses_an_archive_that_is_a_file_or_the_results_folder(tmp_path, capsys):
    afile = tmp_path / "kept.txt"
    afile.write_text("")
    for archive, message in ((afile, "--archive must be a folder, not a file"),
                             (tmp_path / "out", "--archive must be another folder than --out")):
        assert main(["reproduce", str(SMOKE), "--out", str(tmp_path / "out"), "--archive", str(archive)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("dyntie: error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_report_names_each_seeds_unique_blocks_when_they_differ():
    assert unique_blocks_cell({2: 4, 1: 4, 3: 4}) == "4"
    assert unique_blocks_cell({3: 1, 1: 2, 2: 2}) == "1.67 (2, 2, 1 by seed)"  # seed order, not arrival order


def test_report_groups_seeds_and_compares_memory_with_vanilla(tmp_path, capsys):
    tiny = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
            "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char", "--steps", "5"]
    assert main(["compare", "--methods", "vanilla,cycle:2", "--seeds", "1,2", "--out", str(tmp_path / "cmp"),
                 *tiny]) == 0
    rows = collect(tmp_path)
    assert [(r["method"], r["seeds"]) for r in rows] == [("vanilla", 2), ("cycle-2", 2)]
    vanilla, cycle = rows
    assert vanilla["memory_vs_vanilla"] == 1.0 and 0.4 < cycle["memory_vs_vanilla"] < 0.7
    assert vanilla["reduction_pct"] == 0.0 and cycle["reduction_pct"] > 30
    assert main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "| cycle-2 | 2 |" in md and "1.000x" in md
    spread = f"{cycle['test_ppl_mean']:.2f} ± {cycle['test_ppl_std']:.2f}"  # mean ± std over the two seeds
    assert cycle["test_ppl_std"] > 0 and spread in md
    predicted = cycle["memory"]["predicted_model_state"]
    assert predicted == pytest.approx(cycle["memory"]["model_state"], rel=0.02)  # measured sits on the floor
    assert format_bytes(round(predicted)) in md and "CUDA memory" not in md  # no CUDA table for CPU runs
    page = (tmp_path / "report.html").read_text()
    assert page.count("<table") == 1 and 'src="https://cdn' not in page
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "results folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no finished runs"):
        write_report(tmp_path / "empty")
    # a part-done grid: vanilla's seed 2 has not finished, so cycle-2 is compared with it on seed 1 only
    seed2 = next(Path(run) for run in vanilla["runs"] if RunDir(run).read_config().train.seed == 2)
    (seed2 / "summary.json").unlink()
    seed1 = {r["method"]: r["test_by_seed"][1] for r in rows}
    vanilla, cycle = collect(tmp_path)
    assert vanilla["seeds"] == 1 and cycle["test_vs_vanilla"] == pytest.approx(seed1["cycle-2"] / seed1["vanilla"])
    assert main(["report", str(tmp_path)]) == 0  # one seed has no spread to show
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| vanilla |"))
    assert row.startswith(f"| vanilla | 1 | {vanilla['val_ppl_mean']:.2f} | {vanilla['test_ppl_mean']:.2f} | 1.000x |")
