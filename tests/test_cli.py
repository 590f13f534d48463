import argparse
import csv
import gc
import json
import weakref

import pytest

import dyntie_core.cli as cli
from dyntie_core.cli import RUN_FLAGS, main, make_parser

TINY = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
        "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char", "--dataset", "pydoc"]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        make_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for f in RUN_FLAGS:
        assert f.flag in text and f.help.split()[0] in text
    for flag in ("--method", "--n-unique", "--schedule", "--resume", "--out", "--config", "--preset"):
        assert flag in text


def test_train_writes_a_run_directory_and_resume_extends_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--method", "cycle-rev", "--n-unique", "2", "--steps", "10",
                 *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tie_map"] == [0, 1, 1, 0] and summary["steps"] == 10
    assert json.loads((out / "config.json").read_text())["model"]["n_layer"] == 4
    assert main(["train", "--out", str(out), "--method", "vanilla", "--steps", "10", *TINY]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--steps", "15", "--n-layer", "6"]) == 2
    assert "only --steps may change" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--steps", "15"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 15


def test_manual_schedule_from_the_command_line(tmp_path):
    out = tmp_path / "manual"
    schedule = json.dumps([[0, [0, 0, 0, 0]], [4, [0, 1, 2, 3]]])
    assert main(["train", "--out", str(out), "--method", "manual", "--schedule", schedule, "--steps", "6",
                 *TINY]) == 0
    lines = (out / "tie_maps.jsonl").read_text().splitlines()
    assert [json.loads(x)["tie_map"] for x in lines] == [[0, 0, 0, 0], [0, 1, 2, 3]]


@pytest.mark.parametrize("argv, message", [
    (["--method", "cycle"], "needs n_unique"),
    (["--method", "manual", "--schedule", "[[0, [1, 0, 0, 0]]]"], "position 0"),
    (["--method", "nope"], "unknown method"),
    (["--dataset", "/no/such/file.txt"], "does not exist"),
    (["--n-head", "3"], "divisible by n_head"),
    (["--lr-schedule", "linear"], "lr_schedule"),
])
def test_bad_input_gives_a_clear_error(tmp_path, capsys, argv, message):
    args = ["train", "--out", str(tmp_path / "x"), "--steps", "2", *TINY, *argv]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_corrupt_checkpoint_on_resume_is_reported(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "3", *TINY]) == 0
    last = out / "checkpoints" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:100])
    (out / "checkpoints" / "best.safetensors").write_bytes(b"not a checkpoint either")
    assert main(["train", "--out", str(out), "--resume", "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "no usable checkpoint" in err and "last.safetensors is unreadable" in err
    assert len(last.read_bytes()) == 100  # the damaged file is kept for inspection


def test_compare_writes_markdown_and_csv(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "vanilla,all-shared,cycle:2", "--seeds", "1,2", "--steps", "6",
                 "--out", str(out), *TINY]) == 0
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["vanilla", "all-shared", "cycle-2"]
    assert [r["unique_blocks"] for r in rows] == ["4", "1", "2"]
    assert all(r["seeds"] == "2" for r in rows)
    assert int(rows[0]["trainable_params"]) > int(rows[2]["trainable_params"]) > int(rows[1]["trainable_params"])
    md = (out / "comparison.md").read_text()
    assert "| vanilla | 2 |" in md and "cycle-2" in md
    assert (out / "cycle-2" / "seed2" / "summary.json").is_file()
    assert (out / "pareto.html").is_file()
    mtime = (out / "vanilla" / "seed1" / "summary.json").stat().st_mtime_ns
    assert main(["compare", "--methods", "vanilla", "--seeds", "1", "--steps", "6", "--out", str(out), *TINY]) == 0
    assert (out / "vanilla" / "seed1" / "summary.json").stat().st_mtime_ns == mtime  # reused, not rerun
    row = next(line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| vanilla |"))
    assert row.startswith("| vanilla | 1 | ") and "±" not in row  # one seed: no spread claimed


def test_compare_refuses_to_reuse_a_run_with_another_config(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "vanilla", "--seeds", "1", "--steps", "4", "--out", str(out), *TINY]) == 0
    assert main(["compare", "--methods", "vanilla", "--seeds", "1", "--steps", "6", "--out", str(out), *TINY]) == 2
    assert "different config (train.steps)" in capsys.readouterr().err


def test_ctrl_c_stops_gracefully_and_the_run_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dyntie_core.cli", "train", "--out", str(out), "--steps", "100000",
                             *TINY], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping after this step" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] and 0 < summary["steps"] < 100000
    assert (out / "checkpoints" / "last.safetensors").is_file()
    assert main(["train", "--out", str(out), "--resume", "--steps", str(summary["steps"] + 3)]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == summary["steps"] + 3


def test_runs_that_differ_in_agent_options_get_their_own_label():
    from dyntie_core import AgentConfig, MethodConfig
    from dyntie_core.compare import run_label

    assert run_label(MethodConfig("dlt")) == "dlt"
    assert run_label(MethodConfig("cycle", n_unique=3)) == "cycle-3"
    assert run_label(MethodConfig("dlt", agent=AgentConfig(reward="loss-improvement", k_steps=2))) == \
        "dlt[k_steps=2,reward=loss-improvement]"


def _config_of(argv):
    from dyntie_core.cli import build_config

    return build_config(make_parser().parse_args(["train", "--out", "unused", *argv]))


def test_precedence_is_flags_then_config_file_then_preset_then_defaults(tmp_path):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"model": {"tie_mode": "share", "dropout": 0.1}, "train": {"lr": 0.002}}))
    cfg = _config_of(["--preset", "nanogpt-shakespeare-cpu", "--config", str(partial)])
    assert cfg.model.n_layer == 4 and cfg.train.steps == 2000  # from the preset
    assert cfg.model.tie_mode == "share" and cfg.model.dropout == 0.1 and cfg.train.lr == 0.002  # file beats preset
    assert cfg.train.weight_decay == 0.01  # neither says: the default
    cfg = _config_of(["--preset", "nanogpt-shakespeare-cpu", "--config", str(partial), "--dropout", "0.2",
                      "--n-layer", "6"])
    assert cfg.model.dropout == 0.2 and cfg.model.n_layer == 6 and cfg.model.tie_mode == "share"  # flags win


def test_a_full_config_file_keeps_its_method_and_agent_under_extra_agent_flags(tmp_path):
    full = tmp_path / "config.json"
    base = _config_of(["--method", "dlt", "--agent", "k_steps=8", "--agent", "reward_split=valid"])
    full.write_text(base.to_json())
    cfg = _config_of(["--config", str(full), "--agent", "k_steps=2"])
    assert cfg.method.name == "dlt" and cfg.method.agent.k_steps == 2 and cfg.method.agent.reward_split == "valid"


def test_every_preset_is_a_valid_recipe_and_help_lists_them(capsys):
    from dyntie_core.presets import PRESETS, preset_config

    for name in PRESETS:
        assert preset_config(name).model.n_layer >= 1
    assert preset_config("paper-gpt2-48").train.lr == 1e-4 and preset_config("paper-gpt2-48").model.n_embd == 1600
    with pytest.raises(SystemExit):
        make_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in PRESETS) and "explicit options, then the --config file" in text


@pytest.mark.parametrize("argv, message", [
    (["--method", "dlt", "--n-unique", "3"], "does not take n_unique"),
    (["--preset", "nope"], "unknown preset"),
    (["--agent", "k_steps"], "KEY=VALUE"),
])
def test_settings_that_would_be_ignored_are_refused(tmp_path, capsys, argv, message):
    assert main(["train", "--out", str(tmp_path / "x"), "--steps", "2", *TINY, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_n_unique_labels_only_the_methods_that_use_it():
    from dyntie_core.compare import parse_methods, run_label

    labels = [run_label(m) for m in parse_methods("vanilla,dlt,random,cycle,random-fixed,mirror", 3)]
    assert labels == ["vanilla", "dlt", "random", "cycle-3", "random-fixed-3", "mirror"]
    with pytest.raises(ValueError, match="does not take n_unique"):
        parse_methods("dlt:3")


def test_every_method_that_requires_a_count_is_refused_without_one_before_it_is_built():
    from dyntie_core.config import MethodConfig
    from dyntie_core.policies import METHODS, check_method

    required = sorted(name for name, spec in METHODS.items() if spec.n_unique == "required")
    assert {"random-fixed", "random-contiguous", "shrink", "grow", "soft", "cycle"} <= set(required)
    for name in required:
        with pytest.raises(ValueError, match=f"method '{name}' needs n_unique"):
            check_method(MethodConfig(name=name))


def test_an_unfinished_run_is_not_replaced_without_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "6", "--checkpoint-interval", "3", *TINY]) == 0
    (out / "summary.json").unlink()  # as if it had been killed
    assert main(["train", "--out", str(out), "--steps", "6", "--seed", "2", *TINY]) == 2
    assert "unfinished run" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.safetensors").is_file()  # nothing lost
    assert main(["train", "--out", str(out), "--steps", "4", "--seed", "2", "--force", *TINY]) == 0
    assert not (out / "checkpoints" / "step_0000006.safetensors").exists()  # the old run's checkpoints are gone
    assert json.loads((out / "summary.json").read_text())["seed"] == 2


def test_out_that_is_a_file_is_one_clear_error(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    assert main(["train", "--out", str(target), "--steps", "2", *TINY]) == 2
    assert "not a directory" in capsys.readouterr().err and target.read_text() == "keep me"


def test_episodes_set_the_step_budget_and_explicit_steps_win():
    assert _config_of(["--preset", "paper-gpt2-48-cpu"]).train.steps == 10 * 11 * 4
    cfg = _config_of(["--preset", "paper-gpt2-48"])
    assert cfg.train.steps == 56_400 and cfg.model.n_layer == 48 and cfg.data.tokenizer == "gpt2"
    assert cfg.method.name == "dlt" and cfg.train.device == "cuda"
    cfg = _config_of(["--n-layer", "4", "--episodes", "2", "--agent", "k_steps=3"])
    assert cfg.train.steps == 2 * 3 * 3
    cfg = _config_of(["--preset", "paper-gpt2-48-cpu", "--steps", "30"])
    assert cfg.train.steps == 30 and cfg.train.episodes is None


def test_compare_gives_every_method_the_steps_of_the_episodes(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "vanilla,dlt", "--episodes", "1", "--agent", "k_steps=2", "--out", str(out),
                 *TINY]) == 0
    steps = [json.loads((out / m / "seed1337" / "summary.json").read_text())["steps"]
             for m in ("vanilla", "dlt[k_steps=2]")]
    assert steps == [1 * 3 * 2, 1 * 3 * 2]


def test_cuda_on_a_machine_without_it_is_one_clear_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--out", str(tmp_path / "x"), "--device", "cuda", "--steps", "2", *TINY]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path, capsys):
    from dyntie_core import RunDir

    out = tmp_path / "run"
    with RunDir(out).lock():  # another process (a separate lock holder) is training here
        assert main(["train", "--out", str(out), "--steps", "2", *TINY]) == 2
        assert "in use by another dyntie process" in capsys.readouterr().err
        assert not (out / "config.json").exists()  # nothing written
    assert main(["train", "--out", str(out), "--steps", "2", *TINY]) == 0  # free again once released


def test_progressive_schedule_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "shrink"
    assert main(["train", "--out", str(out), "--method", "shrink", "--n-unique", "2", "--progressive", "start=0.1",
                 "--progressive", "end=0.3", "--progressive", "adjacent=true", "--steps", "20", *TINY]) == 0
    config = json.loads((out / "config.json").read_text())["method"]
    assert config["progressive"] == {"start": 0.1, "end": 0.3, "criterion": "cosine", "adjacent": True}
    ties = [json.loads(line)["step"] for line in (out / "tie_maps.jsonl").read_text().splitlines()]
    assert ties == [0, 2, 6]  # 2 ties, at 10% and 30% of 20 steps
    assert main(["train", "--out", str(tmp_path / "bad"), "--method", "shrink", "--n-unique", "2", "--progressive",
                 "stop=0.5", *TINY]) == 2
    assert "unknown ProgressiveConfig field(s): stop" in capsys.readouterr().err


def test_an_unexpected_error_frees_what_the_command_held_before_shutdown(monkeypatch):
    """A run that fails with an unexpected error still exits through shutdown(); the Trainer (and a DDP wrapper that
    holds the process group) must be garbage by then, not kept alive by the propagating traceback's frames."""
    class Held:  # stands in for the Trainer and its DDP wrapper
        pass

    refs: list[weakref.ref] = []
    alive_at_shutdown: list[bool] = []

    def failing_command(args: argparse.Namespace) -> int:
        trainer = Held()
        trainer.cycle = trainer  # a reference cycle, as modules have: freed by gc.collect, not by refcounts
        refs.append(weakref.ref(trainer))
        raise RuntimeError("boom in the middle of training")

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser()
        p.set_defaults(func=failing_command)
        return p

    def recording_shutdown() -> None:
        gc.collect()  # what shutdown() does before destroying a live process group
        alive_at_shutdown.append(refs[0]() is not None)

    monkeypatch.setattr(cli, "make_parser", parser)
    monkeypatch.setattr(cli, "shutdown", recording_shutdown)
    with pytest.raises(RuntimeError, match="boom in the middle of training") as info:
        cli.main([])
    assert alive_at_shutdown == [False]
    assert info.traceback[-1].name == "failing_command"  # file and line are kept for the error report
