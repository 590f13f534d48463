"""Faults a long run must survive: SIGKILL at any moment (resume gives the same numbers, bit for bit on
CPU), a failing disk write (the previous checkpoint and the metrics stay intact)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dyntie_core import RunDir
from dyntie_core.cli import main

TINY = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
        "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char", "--dataset", "pydoc",
        "--method", "dlt", "--agent", "k_steps=2", "--dropout", "0.1", "--checkpoint-interval", "3",
        "--keep-checkpoints", "0"]
STEPS = 40


def _outcome(out: Path) -> tuple:
    run = RunDir(out)
    summary = run.read_summary()
    metrics = [{k: v for k, v in r.items() if k not in ("tokens_per_s", "train_time_s", "memory")}
               for r in run.read_jsonl(RunDir.METRICS)]
    decisions = run.read_jsonl(RunDir.DECISIONS)
    keys = ("steps", "best_val_ppl", "test_ppl", "final_test_ppl", "tie_map", "unique_blocks", "trainable_params")
    return {k: summary[k] for k in keys}, metrics, run.read_jsonl(RunDir.TIE_MAPS), decisions


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "--out", str(out), "--steps", str(STEPS), *TINY]) == 0
    return _outcome(out)


@pytest.mark.parametrize("kill_after_checkpoints", [1, 4, 9])
def test_sigkill_then_resume_gives_the_same_run(tmp_path, uninterrupted, kill_after_checkpoints):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dyntie_core.cli", "train", "--out", str(out), "--steps",
                             str(STEPS), *TINY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = out / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpts.is_dir() and len(list(ckpts.glob("step_*.safetensors"))) >= kill_after_checkpoints:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # wherever it is: mid-step, mid-decision, mid-write
    proc.wait(timeout=30)
    assert RunDir(out).read_summary() is None or proc.returncode == 0
    assert main(["train", "--out", str(out), "--resume", "--steps", str(STEPS)]) == 0
    assert _outcome(out) == uninterrupted
    assert not list(ckpts.glob(".*.tmp*"))  # no half-written checkpoint left under any name


def test_a_failing_checkpoint_write_keeps_the_previous_checkpoint_and_metrics(tmp_path, monkeypatch, capsys):
    import dyntie_core.checkpoint as checkpoint

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "6", *TINY]) == 0
    last = out / "checkpoints" / "last.safetensors"
    before, rows = last.read_bytes(), RunDir(out).read_jsonl(RunDir.METRICS)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    assert main(["train", "--out", str(out), "--resume", "--steps", "9"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert last.read_bytes() == before  # the previous checkpoint is intact
    assert RunDir(out).read_jsonl(RunDir.METRICS)[: len(rows)] == rows
    assert not list((out / "checkpoints").glob(".*.tmp*"))
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume", "--steps", "9"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 9
