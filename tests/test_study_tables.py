"""``experiments/study_tables.py``: issue 9's tables are computed from the cells' summaries, never typed in."""

from __future__ import annotations

import json

from dyntie_core.cli import main

from .conftest import TINY_CLI, experiment_module


def _seeds(mean: float, std: float, n: int = 3) -> dict[int, float]:
    """Test perplexities of seeds 1..n with this mean and sample standard deviation."""
    offsets = {1: [0.0], 2: [-std / 2**0.5, std / 2**0.5], 3: [-std, 0.0, std]}[n]
    return {seed: mean + offset for seed, offset in enumerate(offsets, 1)}


def test_study_tables_fill_the_doc_from_finished_cells(tmp_path, capsys):
    results = tmp_path / "results"
    cells = {"vanilla": ["--method", "vanilla"], "cycle-rev-4": ["--method", "cycle-rev", "--n-unique", "2"],
             "dlt": ["--method", "dlt"]}
    for variant, method in cells.items():
        out = results / f"pydoc__{variant}" / "run"
        assert main(["train", *method, "--out", str(out), *TINY_CLI, "--steps", "8"]) == 0
    test = {v: json.loads((results / f"pydoc__{v}" / "run" / "summary.json").read_text())["test_ppl"] for v in cells}
    doc = tmp_path / "STUDY.md"
    doc.write_text("intro\n<!-- screen:start -->\nstale table\n<!-- screen:end -->\nrest\n")
    tables = experiment_module("study_tables")
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
    doc.write_text("<!-- rerun:start -->\n<!-- rerun:end -->\n")  # a partial rerun: only the tables that ran
    assert tables.main([str(results), "--doc", str(doc), "--figures", str(tmp_path / "study"), "--section", "rerun",
                        "--ran-only"]) == 0
    text = doc.read_text()
    assert "**Controls and the paper's agent**" in text and dlt_row in text
    assert "H1 churn" not in text and "| dlt-k16 |" not in text and "**Against the goal**" in text
    assert tables.goal_check({"vanilla": tables.collect(results)["pydoc"]["vanilla"]}) == [
        "(no dynamic variant has finished here)"]
    doc.write_text("<!-- horizon:start -->\n<!-- horizon:end -->\n")  # the confirmation: one table, the goal check
    assert tables.main([str(results), "--doc", str(doc), "--figures", str(tmp_path / "study"), "--section",
                        "horizon"]) == 0
    text = doc.read_text()
    assert "**Controls, the paper's agent, the best fixed baseline and the candidates**" in text
    assert "H1 churn" not in text and "| shrink-4-loss | not finished yet |" in text
    assert "| dlt | 1 |" in text and "random-fixed-4 not run" in text  # the goal check says what is missing
    assert "(study/horizon/curves-pydoc.png)" in text
    assert (tmp_path / "study" / "horizon" / "curves-pydoc.png").read_bytes()[:4] == b"\x89PNG"
    doc.write_text("<!-- horizon-kept:start -->\n<!-- horizon-kept:end -->\n")  # a second folder, same layout
    assert tables.main([str(results), "--doc", str(doc), "--figures", str(tmp_path / "study"), "--section",
                        "horizon-kept"]) == 0
    text = doc.read_text()
    assert "**Controls, the paper's agent, the best fixed baseline and the candidates**" in text
    assert "H1 churn" not in text and "(study/horizon-kept/curves-pydoc.png)" in text
    assert (tmp_path / "study" / "horizon-kept" / "curves-pydoc.png").is_file()
    assert not tables.is_horizon("horizonless") and not tables.is_horizon("screen")
    doc.write_text("<!-- paper-horizon:start -->\n<!-- paper-horizon:end -->\n")  # docs/RESULTS.md: the paper's five
    assert tables.main([str(results), "--doc", str(doc), "--figures", str(tmp_path / "results-figs"), "--section",
                        "paper-horizon"]) == 0
    text = doc.read_text()
    assert "#### pydoc" in text and "**Against the goal**" not in text and "| shrink-4-loss" not in text
    assert f"| dlt | 1 | {test['dlt']:.2f} | {test['dlt']:.2f} | {test['dlt'] / test['vanilla']:.3f}x |" in text
    assert "| random-fixed-4 | not finished yet |" in text and "| all-shared | not finished yet |" in text
    assert (tmp_path / "results-figs" / "paper-horizon" / "curves-pydoc.png").read_bytes()[:4] == b"\x89PNG"
    found = tables.curves(results)["pydoc"]
    assert set(found) == set(cells) and all(seed == 1337 and steps[-1] == 8 for seed, steps, _ in found["dlt"])
    doc.write_text("no markers here\n")
    assert tables.main([str(results), "--doc", str(doc)]) == 2
    assert tables.main([str(tmp_path / "study"), "--doc", str(doc)]) == 2
    assert "no finished cells" in capsys.readouterr().err


def test_goal_check_names_what_each_variant_lacks():
    tables = experiment_module("study_tables")

    def row(test, std, seeds=3, unique=4):
        tests = _seeds(test, std, seeds)
        return {"test": test, "test_std": std, "seeds": seeds, "unique": unique, "tests": tests,
                "uniques": dict.fromkeys(tests, unique)}

    rows = {"vanilla": row(100.0, 1.0), "random-fixed-4": row(105.0, 1.0), "cycle-rev-4": row(104.0, 2.0),
            "sequence-4": row(106.0, 1.0),  # behind the other two: it changes no verdict here
            "shrink-4-loss": row(101.5, 0.5),  # 1.015x, 2.5 ahead of cycle-rev with a spread of 2: meets it
            "soft-4": row(101.0, 3.0),  # ahead of cycle-rev by 3.0, not more than its own spread of 3.0
            "shrink-4": row(103.0, 0.5, unique=5),  # 1.03x, too many blocks
            "grow-4": row(104.5, 0.5),  # between the two controls
            "dlt": row(101.0, 0.5, seeds=2)}  # everything but the seeds
    lines = tables.goal_check(rows)
    by_variant = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert list(by_variant) == ["dlt", "shrink-4", "shrink-4-loss", "grow-4", "soft-4"]  # DYNAMIC's order
    assert by_variant["shrink-4-loss"].endswith("| 1.015x | 4 | +3.50 / 1.00 | +2.50 / 2.00 | +4.50 / 1.00 | "
                                                "**meets the goal** |")
    assert by_variant["soft-4"].endswith("| ahead of cycle-rev-4 by less than the spread |")
    assert by_variant["shrink-4"].endswith("| 1.0300x vanilla; 5 unique blocks; ahead of cycle-rev-4 by less than the "
                                           "spread |")
    assert by_variant["grow-4"].endswith("| +0.50 / 1.00 | -0.50 / 2.00 | +1.50 / 1.00 | 1.0450x vanilla; ahead of "
                                         "random-fixed-4 by less than the spread; behind cycle-rev-4 |")
    assert by_variant["dlt"].endswith("| meets it on 2 seed(s): not yet confirmed |")
    assert "| 1.015x |" in by_variant["dlt"]  # against vanilla's seeds 1 and 2 (99.0, 100.0), not all three
    assert "101.00 ± 0.50" in by_variant["dlt"]
    assert tables.goal_check({"soft-4": row(1.0, 0.0)}) == ["(no vanilla run here: the goal cannot be checked)"]
    assert "share" not in lines[0]  # no share-mode variant: no share-mode controls
    # the contiguous fixed map is a control like the two: a goal check without it says so
    without = {v: r for v, r in rows.items() if v != "sequence-4"}
    line = next(line for line in tables.goal_check(without) if line.startswith("| shrink-4-loss |"))
    assert line.endswith("| +3.50 / 1.00 | +2.50 / 2.00 | not run | sequence-4 not run |")


def test_a_share_mode_variant_must_also_beat_the_share_mode_fixed_maps():
    tables = experiment_module("study_tables")

    def row(test, std=0.5, seeds=3, tie_mode="follow"):
        tests = _seeds(test, std, seeds)
        return {"test": test, "test_std": std, "seeds": seeds, "unique": 4, "tie_mode": tie_mode,
                "tests": tests, "uniques": dict.fromkeys(tests, 4)}

    rows = {"vanilla": row(100.0), "random-fixed-4": row(110.0), "cycle-rev-4": row(112.0), "sequence-4": row(111.0),
            "random-fixed-4-share": row(101.2, tie_mode="share"), "sequence-4-share": row(102.0, tie_mode="share"),
            "random-contiguous-4-share": row(101.0, tie_mode="share"),  # a random draw of the contiguous shape
            "shrink-4-loss-share": row(101.5, tie_mode="share"),  # behind the share control
            "shrink-4-loss-share-early": row(100.9, tie_mode="share"),  # share mode by its config, not its name
            "shrink-4-loss": row(101.9)}  # follow mode: not held to the share-mode controls
    lines = tables.goal_check(rows)
    assert ("| ahead of random-fixed-4-share: margin / spread | ahead of cycle-rev-4-share: margin / spread "
            "| ahead of sequence-4-share: margin / spread | ahead of random-contiguous-4-share: margin / spread |"
            in lines[0])
    by_variant = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert by_variant["shrink-4-loss"].endswith("| +8.10 / 0.50 | +10.10 / 0.50 | +9.10 / 0.50 | "
                                                + "- (more compute) | " * 4 + "**meets the goal** |")
    assert by_variant["shrink-4-loss-share"].endswith(
        "| +8.50 / 0.50 | +10.50 / 0.50 | +9.50 / 0.50 | -0.30 / 0.50 | not run | +0.50 / 0.50 | -0.50 / 0.50 | "
        "behind random-fixed-4-share; cycle-rev-4-share not run; ahead of sequence-4-share by less than the spread; "
        "behind random-contiguous-4-share |")
    assert by_variant["shrink-4-loss-share-early"].endswith(
        "| +9.10 / 0.50 | +11.10 / 0.50 | +10.10 / 0.50 | +0.30 / 0.50 | not run | +1.10 / 0.50 | +0.10 / 0.50 | "
        "ahead of random-fixed-4-share by less than the spread; cycle-rev-4-share not run; ahead of "
        "random-contiguous-4-share by less than the spread |")
    assert "lora8" not in lines[0]  # no relaxed share-mode variant: no relaxed control


def test_a_relaxed_share_mode_variant_must_also_beat_the_fixed_map_with_the_same_relaxation():
    tables = experiment_module("study_tables")

    def row(test, tie_mode="follow", relax="none"):
        tests = _seeds(test, 0.5)
        return {"test": test, "test_std": 0.5, "seeds": 3, "unique": 4, "tie_mode": tie_mode, "relax": relax,
                "tests": tests, "uniques": dict.fromkeys(tests, 4)}

    rows = {"vanilla": row(100.0), "random-fixed-4": row(110.0), "cycle-rev-4": row(112.0), "sequence-4": row(111.0),
            "random-fixed-4-share": row(104.0, "share"), "cycle-rev-4-share": row(105.0, "share"),
            "sequence-4-share": row(104.5, "share"), "random-contiguous-4-share": row(104.2, "share"),
            "random-fixed-4-share-lora8": row(101.0, "share", "lora"),
            "cycle-rev-4-share-lora8": row(103.0, "share", "lora"),
            "sequence-4-share-lora8": row(102.0, "share", "lora"),
            "shrink-4-loss-share-lora8": row(101.5, "share", "lora"),  # beats every plain control, not its own
            "shrink-4-loss-share-fast-lora8": row(100.4, "share", "lora"),  # beats every control by more than 0.5
            "shrink-4-loss-share": row(101.8, "share"),  # has fewer parameters than the relaxed controls
            "shrink-4-loss": row(101.9)}  # follow mode: neither share-mode control applies
    lines = tables.goal_check(rows)
    assert lines[0].count("margin / spread") == 10  # random-contiguous-4-share has no relaxed twin
    assert ("| ahead of random-fixed-4-share-lora8: margin / spread "
            "| ahead of cycle-rev-4-share-lora8: margin / spread "
            "| ahead of sequence-4-share-lora8: margin / spread |" in lines[0])
    by_variant = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert by_variant["shrink-4-loss-share-lora8"].endswith(
        "| +8.50 / 0.50 | +10.50 / 0.50 | +9.50 / 0.50 | +2.50 / 0.50 | +3.50 / 0.50 | +3.00 / 0.50 | +2.70 / 0.50 | "
        "-0.50 / 0.50 | +1.50 / 0.50 | +0.50 / 0.50 | behind random-fixed-4-share-lora8; ahead of "
        "sequence-4-share-lora8 by less than the spread |")
    assert by_variant["shrink-4-loss-share-fast-lora8"].endswith(
        "| +0.60 / 0.50 | +2.60 / 0.50 | +1.60 / 0.50 | **meets the goal** |")
    assert by_variant["shrink-4-loss-share"].endswith("| +2.20 / 0.50 | +3.20 / 0.50 | +2.70 / 0.50 | +2.40 / 0.50 | "
                                                      + "- (more parameters) | " * 3 + "**meets the goal** |")
    assert by_variant["shrink-4-loss"].endswith("| " + "- (more compute) | " * 7 + "**meets the goal** |")


def test_the_goal_check_compares_only_the_seeds_both_sides_finished():
    tables = experiment_module("study_tables")

    def row(tests, tie_mode="follow"):
        return {"test": sum(tests.values()) / len(tests), "test_std": 0.0, "seeds": len(tests), "unique": 4,
                "tie_mode": tie_mode, "tests": tests, "uniques": dict.fromkeys(tests, 4)}

    # vanilla has finished seed 1 only; the variant's lucky seed 2 must not pull its mean under vanilla's seed 1
    rows = {"vanilla": row({1: 100.0}), "random-fixed-4": row({1: 110.0, 2: 110.0, 3: 110.0}),
            "cycle-rev-4": row({2: 80.0}), "sequence-4": row({1: 120.0, 2: 120.0, 3: 120.0}),
            "shrink-4-loss": row({1: 103.0, 2: 95.0, 3: 103.0})}
    lines = tables.goal_check(rows)
    line = next(line for line in lines if line.startswith("| shrink-4-loss |"))
    assert "| 1.030x (seed 1) |" in line  # 103 / 100, not the 3-seed mean 100.33 / 100
    assert "| +9.67 / 4.62 |" in line  # against random-fixed-4 over seeds 1-3, both sides
    assert "| -15.00 / 0.00 (seed 2) |" in line  # cycle-rev-4 has seed 2 only
    assert line.endswith("| 1.0300x vanilla; behind cycle-rev-4 |")
    rows["vanilla"] = row({4: 100.0})
    line = next(line for line in tables.goal_check(rows) if line.startswith("| shrink-4-loss |"))
    assert "| - (no seed in common) |" in line and "no seed in common with vanilla" in line
    rows = {"vanilla": row({1: 100.0, 2: 100.0, 3: 100.0}), "random-fixed-4": row({1: 110.0, 2: 110.0}),
            "cycle-rev-4": row({1: 110.0, 2: 110.0, 3: 110.0}), "sequence-4": row({1: 110.0, 2: 110.0, 3: 110.0}),
            "shrink-4-loss": row({1: 101.0, 2: 101.0, 3: 101.0})}
    line = next(line for line in tables.goal_check(rows) if line.startswith("| shrink-4-loss |"))
    assert line.endswith("| meets it on 2 seed(s): not yet confirmed |")  # one control lacks seed 3


def test_ratio_to_vanilla_pairs_cells_by_seed_and_step():
    tables = experiment_module("study_tables")
    series = {"vanilla": [(1, [0, 10, 20], [50.0, 10.0, 8.0]), (2, [0, 10, 20], [60.0, 12.0, 6.0])],
              "shrink-4-loss": [(1, [0, 10, 20, 30], [50.0, 11.0, 10.0, 9.0]),  # step 30: vanilla not there yet
                                (2, [0, 10], [60.0, 18.0]),
                                (3, [0, 10, 20], [1.0, 1.0, 1.0])],  # no vanilla of seed 3: no ratio
              "cycle-rev-4": [(1, [0, 20], [100.0, 12.0])]}
    ratios = tables.ratio_to_vanilla(series)
    assert set(ratios) == {"shrink-4-loss", "cycle-rev-4"}  # vanilla against itself is not drawn
    assert ratios["shrink-4-loss"] == [(1, [0, 10, 20], [1.0, 1.1, 1.25]), (2, [0, 10], [1.0, 1.5])]
    assert ratios["cycle-rev-4"] == [(1, [0, 20], [2.0, 1.5])]
    assert tables.ratio_to_vanilla({"shrink-4-loss": series["shrink-4-loss"]}) == {}  # no vanilla, no panel
    assert tables._curves_png(series, "t")[:4] == b"\x89PNG"


def test_the_paper_table_shows_every_seed_and_compares_on_shared_seeds():
    tables = experiment_module("study_tables")

    def row(tests, unique):
        mean = sum(tests.values()) / len(tests)
        return {"test": mean, "test_std": 0.0, "val": mean, "val_std": 0.0, "seeds": len(tests), "tests": tests,
                "uniques": dict.fromkeys(tests, unique) | ({3: 1} if unique == 2 and 3 in tests else {}),
                "trainable": 1000.0, "state": 100.0, "predicted": 100.0, "changes": 0}

    rows = {"vanilla": row({1: 100.0, 2: 102.0, 3: 101.0}, 12), "dlt": row({2: 140.0, 3: 130.0}, 2),
            "cycle-rev-4": row({1: 110.0}, 4), "sequence-4-share": row({1: 99.0}, 4)}  # not the paper's: left out
    lines = tables.paper_table(rows)
    assert lines[0].startswith("| method | seeds | test ppl, seed 1 / 2 / 3 |")
    by_method = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert list(by_method) == ["vanilla", "random-fixed-4", "cycle-rev-4", "all-shared", "dlt"]
    assert "| 2 | - / 140.00 / 130.00 |" in by_method["dlt"]
    assert f"| 135.00 ± 0.00 | {270 / 203:.3f}x |" in by_method["dlt"]  # against vanilla's seeds 2 and 3 only
    assert "| 1.50 (2, 1 by seed) |" in by_method["dlt"]
    assert f"| 110.00 | {110 / 100:.3f}x |" in by_method["cycle-rev-4"]
    assert by_method["random-fixed-4"] == "| random-fixed-4 | not finished yet |" + " |" * 8
