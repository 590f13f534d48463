import dataclasses
import json
import math

import pytest
import torch

import dyntie_core
from dyntie_core.checkpoint import CheckpointError, load_checkpoint
from dyntie_core.events import CheckpointEvent, EndEvent, EvalEvent, StepEvent, TieChangeEvent
from dyntie_core.loop import Trainer, lr_at
from dyntie_core.rundir import RunDir

from .conftest import small_run_config

SCHEDULE = [[0, [0, 0, 0, 0]], [5, [0, 1, 1, 3]], [10, [0, 1, 1, 1]], [15, [0, 1, 0, 1]]]


def test_training_lowers_validation_loss_and_logs_a_run_directory(tmp_path, pydoc_chars):
    config = small_run_config(steps=40, method="cycle", n_unique=2)
    trainer = Trainer(config, run_dir=tmp_path, data=pydoc_chars)
    events = []
    trainer.subscribe(events.append)
    summary = trainer.run()
    metrics = RunDir(tmp_path).read_jsonl("metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 10, 20, 30, 40]
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] - 0.5
    assert metrics[0]["val_loss"] == pytest.approx(math.log(pydoc_chars.vocab_size), rel=0.1)
    for key in ("train_loss", "val_ppl", "tie_map", "unique_blocks", "trainable_params", "memory"):
        assert key in metrics[-1]
    assert metrics[-1]["unique_blocks"] == 2 and metrics[-1]["tie_map"] == [0, 1, 0, 1]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    for key in ("best_val_ppl", "test_ppl", "trainable_params", "unique_blocks", "tie_map", "memory",
                "tokens_per_s", "train_time_s"):
        assert summary[key] is not None, key
    assert summary["test_ppl"] == pytest.approx(math.exp(trainer.evaluate("test")), rel=1e-6)
    assert json.loads((tmp_path / "config.json").read_text())["method"]["name"] == "cycle"
    assert (tmp_path / "checkpoints" / "last.safetensors").is_file()
    assert isinstance(events[0], EvalEvent) and isinstance(events[-1], EndEvent)
    assert sum(isinstance(e, StepEvent) for e in events) == 40
    assert any(isinstance(e, CheckpointEvent) and e.kind == "best" for e in events)


def test_manual_schedule_changes_maps_and_records_history(tmp_path, pydoc_chars):
    config = small_run_config(steps=20, method="manual", schedule=SCHEDULE)
    trainer = Trainer(config, run_dir=tmp_path, data=pydoc_chars)
    changes = []
    trainer.subscribe(lambda e: changes.append(e) if isinstance(e, TieChangeEvent) else None)
    trainer.run()
    assert [(c.step, c.new) for c in changes] == [(5, (0, 1, 1, 3)), (10, (0, 1, 1, 1)), (15, (0, 1, 0, 1))]
    history = RunDir(tmp_path).read_jsonl("tie_maps.jsonl")
    assert [h["tie_map"] for h in history] == [[0, 0, 0, 0], [0, 1, 1, 3], [0, 1, 1, 1], [0, 1, 0, 1]]
    per_block = trainer.model.block_numel
    assert changes[0].trainable_params - changes[1].trainable_params == per_block


def _record_losses(trainer, out):
    trainer.subscribe(lambda e: out.__setitem__(e.step, e.loss) if isinstance(e, StepEvent) else None)
    return out


def test_resume_reproduces_an_uninterrupted_run(tmp_path, pydoc_chars):
    config = small_run_config(steps=20, method="manual", schedule=SCHEDULE)
    config = config.replace(model=dataclasses.replace(config.model, dropout=0.1),
                            train=dataclasses.replace(config.train, checkpoint_interval=10))
    straight = Trainer(config, run_dir=tmp_path / "a", data=pydoc_chars)
    expected = _record_losses(straight, {})
    summary_a = straight.run()

    first = Trainer(config, run_dir=tmp_path / "b", data=pydoc_chars)
    got = _record_losses(first, {})
    first.train(max_steps=13)  # "crash" after step 13; the last checkpoint is at step 10
    del first
    resumed = Trainer.resume(tmp_path / "b", data=pydoc_chars)
    assert resumed.step == 10
    _record_losses(resumed, got)
    summary_b = resumed.run()
    assert got == expected  # exactly the same losses, step for step
    assert summary_b["test_ppl"] == summary_a["test_ppl"]
    assert summary_b["tie_map"] == summary_a["tie_map"]
    rows_a = RunDir(tmp_path / "a").read_jsonl("metrics.jsonl")
    rows_b = RunDir(tmp_path / "b").read_jsonl("metrics.jsonl")
    assert [(r["step"], r["val_loss"]) for r in rows_b] == [(r["step"], r["val_loss"]) for r in rows_a]
    assert [r["tie_map"] for r in RunDir(tmp_path / "b").read_jsonl("tie_maps.jsonl")] == \
           [r["tie_map"] for r in RunDir(tmp_path / "a").read_jsonl("tie_maps.jsonl")]


def test_runs_record_where_they_ran_and_a_resume_elsewhere_says_so(tmp_path, pydoc_chars):
    config = small_run_config(steps=12)
    config = config.replace(train=dataclasses.replace(config.train, checkpoint_interval=6))
    threads = torch.get_num_threads()
    first = Trainer(config, run_dir=tmp_path / "a", data=pydoc_chars)
    first.train(max_steps=8)  # the last checkpoint is at step 6
    del first
    env = load_checkpoint(RunDir(tmp_path / "a").resume_candidates()[0][0]).state["environment"]
    assert env["torch"] == torch.__version__ and env["torch_threads"] == threads and env["device"] == "cpu"
    assert env["processor"] and env["python"].count(".") == 2 and env["dyntie"] == dyntie_core.__version__
    if env["source"] is not None:  # a git checkout: the commit that ran
        assert len(env["source"]["commit"]) == 40 and isinstance(env["source"]["dirty"], bool)

    same = Trainer.resume(tmp_path / "a", data=pydoc_chars)
    assert not any("another environment" in n for n in same.notices)
    del same
    try:
        torch.set_num_threads(threads + 1)
        moved = Trainer.resume(tmp_path / "a", data=pydoc_chars)
        summary = moved.run()
    finally:
        torch.set_num_threads(threads)
    notice = next(n for n in summary["notices"] if "another environment" in n)
    assert f"torch_threads: {threads} -> {threads + 1}" in notice and "step 6" in notice
    assert summary["environment"]["torch_threads"] == threads + 1  # the process that finished the run
    saved = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert saved["environment"] == summary["environment"] and notice in saved["notices"]


def test_stop_request_leaves_a_consistent_run_directory(tmp_path, pydoc_chars):
    trainer = Trainer(small_run_config(steps=50), run_dir=tmp_path, data=pydoc_chars)
    trainer.subscribe(lambda e: trainer.request_stop() if isinstance(e, StepEvent) and e.step == 7 else None)
    summary = trainer.run()
    assert summary["steps"] == 7 and summary["stopped_early"]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 7
    resumed = Trainer.resume(tmp_path, data=pydoc_chars)
    assert resumed.step == 7


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer.resume(tmp_path)


def test_cosine_schedule_with_warmup():
    cfg = small_run_config().train
    cfg = dataclasses.replace(cfg, steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10, lr_schedule="cosine")
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 11)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx(5.5e-4)
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    const = dataclasses.replace(cfg, lr_schedule="constant", warmup_steps=0)
    assert lr_at(77, const) == 1e-3


def test_vocab_size_follows_the_tokenizer(tmp_path, pydoc_chars):
    config = small_run_config(steps=1)
    assert config.model.vocab_size != pydoc_chars.vocab_size  # 64 asked, the char vocabulary decides
    trainer = Trainer(config, run_dir=tmp_path, data=pydoc_chars)
    assert trainer.config.model.vocab_size == pydoc_chars.vocab_size
    assert trainer.model.wte.weight.shape == (pydoc_chars.vocab_size, config.model.n_embd)
    assert RunDir(tmp_path).read_config().model.vocab_size == pydoc_chars.vocab_size


def test_a_run_directory_reloads_its_model_and_char_tokenizer(tmp_path, pydoc_chars):
    trainer = Trainer(small_run_config(steps=10), run_dir=tmp_path, data=pydoc_chars)
    trainer.run()
    run = RunDir(tmp_path)
    tok = run.load_tokenizer()
    assert tok.name == "char" and tok.vocab_size == pydoc_chars.vocab_size
    text = "def f(x):\n    return x + 1"
    assert tok.encode(text) == pydoc_chars.tokenizer.encode(text) and tok.decode(tok.encode(text)) == text
    model = run.load_model("last")
    idx = torch.tensor([tok.encode(text)])
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(model(idx)[0], trainer.model(idx)[0])


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, pydoc_chars):
    config = small_run_config(steps=10)
    Trainer(config, run_dir=tmp_path, data=pydoc_chars).run()
    other = config.replace(train=dataclasses.replace(config.train, seed=8))
    RunDir(tmp_path).write_config(other)  # e.g. a second run's config.json beside the first run's checkpoints
    with pytest.raises(CheckpointError, match="another config"):
        Trainer.resume(tmp_path, data=pydoc_chars)


def test_a_fresh_run_clears_what_an_earlier_run_left(tmp_path, pydoc_chars):
    config = small_run_config(steps=10, train=dict(checkpoint_interval=5))
    Trainer(config, run_dir=tmp_path, data=pydoc_chars).run()
    run = RunDir(tmp_path)
    assert run.resume_candidates() and (tmp_path / RunDir.TOKENIZER).is_file()
    (tmp_path / "notes.txt").write_text("mine")
    Trainer(config.replace(train=dataclasses.replace(config.train, seed=9)), run_dir=tmp_path, data=pydoc_chars)
    assert not run.resume_candidates() and not run.periodic_checkpoints()  # the old run's are gone
    assert run.read_summary() is None and (tmp_path / RunDir.TOKENIZER).is_file()  # rewritten for the new run
    assert (tmp_path / "notes.txt").read_text() == "mine"  # files dyntie did not write are left alone
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer.resume(tmp_path, data=pydoc_chars)


def test_resume_falls_back_past_a_damaged_last_checkpoint_and_keeps_it(tmp_path, pydoc_chars):
    config = small_run_config(steps=20, train=dict(checkpoint_interval=10))
    Trainer(config, run_dir=tmp_path, data=pydoc_chars).run()
    last = tmp_path / "checkpoints" / "last.safetensors"
    damaged = last.read_bytes()[:-40]
    last.write_bytes(damaged)
    resumed = Trainer.resume(tmp_path, data=pydoc_chars, steps=25)
    assert resumed.step == 20  # the periodic checkpoint at step 20 holds the same state
    assert any("resumed from step_0000020.safetensors" in n and "last.safetensors" in n for n in resumed.notices)
    assert last.read_bytes() == damaged  # never deleted or rewritten by the failed attempt
    resumed.run()
    assert RunDir(tmp_path).read_summary()["steps"] == 25


def test_a_run_killed_before_its_first_periodic_checkpoint_resumes_from_best(tmp_path, pydoc_chars):
    config = small_run_config(steps=30, train=dict(checkpoint_interval=100))
    first = Trainer(config, run_dir=tmp_path, data=pydoc_chars)
    first.train(max_steps=13)  # evaluations at 0 and 10 wrote "best"; no periodic checkpoint yet
    del first
    assert [(p.name, s) for p, s in RunDir(tmp_path).resume_candidates()] == [("best.safetensors", 10)]
    resumed = Trainer.resume(tmp_path, data=pydoc_chars)
    assert resumed.step == 10
    assert resumed.run()["steps"] == 30


def test_divergence_stops_at_once_and_keeps_the_last_good_state(tmp_path, pydoc_chars, capsys):
    from dyntie_core.cli import main

    out = tmp_path / "run"
    tiny = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
            "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char"]
    assert main(["train", "--out", str(out), "--lr", "1e6", "--steps", "30", *tiny]) == 1
    assert "training diverged at step" in capsys.readouterr().err
    run = RunDir(out)
    summary = run.read_summary()
    assert summary["diverged"]["what"] in ("loss", "gradient norm") and summary["stopped_early"]
    assert summary["steps"] < 30 and summary["steps"] == summary["diverged"]["step"] - 1
    rows = run.read_jsonl(RunDir.METRICS)
    assert rows and all(math.isfinite(r["val_loss"]) for r in rows)  # no NaN row was logged
    assert math.isfinite(summary["test_ppl"]) and summary["test_selection"].startswith("best validation")
    assert not (out / "checkpoints" / "last.safetensors").exists()  # the diverged state is not saved as "last"
    assert run.checkpoint_path("best").is_file()

    skipped = Trainer(small_run_config(steps=12, train=dict(lr=1e6, on_divergence="skip")), data=pydoc_chars)
    result = skipped.run()
    assert result["steps"] == 12 and result["skipped_steps"] > 0 and result["diverged"] is None


def test_only_the_newest_periodic_checkpoints_are_kept(tmp_path, pydoc_chars):
    config = small_run_config(steps=20, train=dict(checkpoint_interval=4, keep_checkpoints=2))
    Trainer(config, run_dir=tmp_path, data=pydoc_chars).run()
    run = RunDir(tmp_path)
    assert [p.name for p in run.periodic_checkpoints()] == ["step_0000016.safetensors", "step_0000020.safetensors"]
    assert run.checkpoint_path("best").is_file() and run.checkpoint_path("last").is_file()


def test_the_best_evaluation_is_kept_per_tie_map():
    """A change of map starts a new best: the model tested at the end runs the map the run ends with."""
    from dyntie_core.metrics import TrainState

    state = TrainState()
    seen = [(10, [0, 1, 2], 2.0), (20, [0, 1, 2], 1.8), (30, [0, 0, 2], 1.9), (40, [0, 0, 2], 2.0),
            (50, [0, 0, 2], 1.85)]
    improved = [state.observe_eval({"step": step, "tie_map": m, "val_loss": loss}) for step, m, loss in seen]
    assert improved == [True, True, True, False, True]  # step 30 is worse than step 20 but runs the new map
    assert (state.best_step, state.best_val, state.best_map) == (50, 1.85, [0, 0, 2])
    legacy = TrainState.from_dict({**TrainState(best_val=1.0, best_step=5).to_dict(), "best_map": None})
    assert not legacy.observe_eval({"step": 10, "tie_map": [0, 1], "val_loss": 1.5})  # an old checkpoint's best
    assert legacy.best_map == [0, 1] and legacy.best_step == 5  # is taken to have run the map it resumes with
