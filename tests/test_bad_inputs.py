"""Bad input, as one table: every row must give one clear message (exit status 2 from the CLI, or the named
exception from the Python API) and leave no partial output behind. Add a row for every new way to be wrong."""

import json
from pathlib import Path

import pytest
import torch

from dyntie_core import ConfigError, RunDir
from dyntie_core.cli import main
from dyntie_core.experiment import experiment_config
from dyntie_core.report import write_report
from dyntie_core.tying import validate_tie_map

TINY = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
        "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char", "--dataset", "pydoc"]


def _files(tmp: Path) -> dict[str, str]:
    """Bad files for the rows that need them, made per test."""
    tmp.mkdir(parents=True)
    made = {"EMPTY": tmp / "empty.txt", "BINARY": tmp / "binary.txt", "SHORT": tmp / "short.txt",
            "EMPTYDIR": tmp / "emptydir", "BADJSON": tmp / "bad.json", "LIST": tmp / "list.json",
            "SECTION": tmp / "section.json", "KEY": tmp / "key.json", "TYPE": tmp / "type.json"}
    made["EMPTY"].write_text("  \n")
    made["BINARY"].write_bytes(b"\xff\xfe\x00bad" * 100)
    made["SHORT"].write_text("tiny text\n")
    made["EMPTYDIR"].mkdir()
    made["BADJSON"].write_text("{not json")
    made["LIST"].write_text("[1, 2]")
    made["SECTION"].write_text(json.dumps({"optimizer": {}}))
    made["KEY"].write_text(json.dumps({"model": {"layers": 4}}))
    made["TYPE"].write_text(json.dumps({"train": {"warmup_steps": "ten"}}))
    return {k: str(v) for k, v in made.items()}


CLI_ROWS = [
    # model shape
    (["--n-layer", "0"], "n_layer must be a positive int"),
    (["--n-head", "3"], "divisible by n_head"),
    (["--n-embd", "-32"], "n_embd must be a positive int"),
    (["--block-size", "0"], "block_size must be a positive int"),
    (["--dropout", "1.5"], "dropout must be in [0, 1)"),
    (["--tie-mode", "both"], "tie_mode must be one of"),
    (["--activation", "relu"], "activation must be one of"),
    (["--norm-position", "middle"], "norm_position must be one of"),
    # training
    (["--steps", "0"], "steps must be a positive int"),
    (["--batch-size", "-1"], "batch_size must be a positive int"),
    (["--lr", "0"], "lr must be > 0"),
    (["--lr", "nan"], "lr must be > 0"),
    (["--min-lr", "1"], "min_lr must be in [0, lr]"),
    (["--lr-schedule", "linear"], "lr_schedule must be one of"),
    (["--warmup-steps", "-1"], "warmup_steps must be an int >= 0"),
    (["--grad-clip", "-1"], "grad_clip must be >= 0"),
    (["--beta2", "1.0"], "beta1/beta2 must be in [0, 1)"),
    (["--eval-interval", "0"], "eval_interval must be a positive int"),
    (["--eval-tokens", "0"], "eval_tokens must be a positive int"),
    (["--checkpoint-interval", "-5"], "checkpoint_interval must be an int >= 0"),
    (["--keep-checkpoints", "-1"], "keep_checkpoints must be an int >= 0"),
    (["--on-divergence", "ignore"], "on_divergence must be one of"),
    (["--episodes", "0"], "episodes must be a positive int"),
    # data
    (["--tokenizer", "wordpiece"], "tokenizer must be 'char', 'bpe' or 'gpt2'"),
    (["--tokenizer", "bpe", "--vocab-size", "100"], "bpe_vocab_size must be an int >= 260"),
    (["--dataset", "/no/such/file.txt"], "does not exist"),
    (["--dataset", "EMPTY"], "is empty"),
    (["--dataset", "BINARY"], "is not UTF-8 text"),
    (["--dataset", "SHORT"], "fewer than one block"),
    (["--dataset", "EMPTYDIR"], "no split files"),
    (["--dataset", "wikitext-2"], "lives on the Hugging Face hub"),
    (["--dataset", "not-a-dataset"], "unknown dataset"),
    (["--tokenizer", "gpt2", "--tokenizer-path", "/no/such/tokenizer.json"], "GPT-2 tokenizer file not found"),
    # methods and tie maps
    (["--method", "nope"], "unknown method"),
    (["--method", "cycle"], "needs n_unique"),
    (["--method", "cycle", "--n-unique", "9"], "n_unique must be an int in [1, 4]"),
    (["--method", "sequence", "--n-unique", "3"], "divisible by n_unique"),
    (["--method", "vanilla", "--n-unique", "2"], "has 4 unique blocks"),
    (["--method", "dlt", "--n-unique", "2"], "does not take n_unique"),
    (["--method", "random-fixed"], "needs n_unique"),
    (["--method", "random-fixed", "--n-unique", "0"], "n_unique must be in [1, 4]"),
    (["--method", "soft", "--n-unique", "2"], "method 'soft' needs relax='mix' (--relax mix)"),
    (["--method", "soft", "--n-unique", "4", "--relax", "mix"], "soft needs n_unique in [1, 3]"),
    (["--relax", "soft"], "GPTConfig.relax must be one of ('none', 'norms', 'lora', 'mix')"),
    (["--method", "manual"], "schedule is empty"),
    (["--method", "manual", "--schedule", "[[0, [1, 0, 0, 0]]]"], "position 0: block 0 is always independent"),
    (["--method", "manual", "--schedule", "[[0, [0, 0, 3, 0]]]"], "position 2: target 3 is not an earlier block"),
    (["--method", "manual", "--schedule", "[[0, [0, 0, 0]]]"], "length 3 but the model has 4 blocks"),
    (["--method", "manual", "--schedule", "[[0, [0, -1, 0, 0]]]"], "negative target"),
    (["--method", "manual", "--schedule", "[[0, [0, 0.5, 0, 0]]]"], "expected an int"),
    (["--method", "manual", "--schedule", "[[0, [0, true, 0, 0]]]"], "expected an int"),
    (["--method", "manual", "--schedule", '[[0, "0000"]]'], "got a string"),
    (["--method", "manual", "--schedule", "[[5, [0,0,0,0]], [3, [0,1,2,3]]]"], "strictly increasing"),
    (["--method", "manual", "--schedule", "[[-1, [0,0,0,0]]]"], "expected (step >= 0, tie map)"),
    (["--method", "manual", "--schedule", '{"a": 1}'], "must be a JSON list"),
    (["--method", "manual", "--schedule", "[[0"], "neither a JSON file nor JSON text"),
    # agent
    (["--method", "dlt", "--agent", "epsilon=0.5"], "unknown AgentConfig field"),
    (["--method", "dlt", "--agent", "k_steps=0"], "k_steps must be >= 1"),
    (["--method", "dlt", "--agent", "reward=perplexity"], "reward must be one of"),
    (["--method", "dlt", "--agent", "reward_split=test"], "reward_split must be 'train' or 'valid'"),
    (["--method", "dlt", "--agent", "epsilon_decay=0"], "epsilon_decay must be in (0, 1]"),
    (["--method", "dlt", "--agent", "epsilon_start=0.1", "--agent", "epsilon_min=0.5"],
     "epsilon_min <= epsilon_start"),
    (["--method", "dlt", "--agent", "replay_batch=0"], "replay_batch and target_sync >= 1"),
    (["--method", "dlt", "--agent", "nokey"], "--agent expects KEY=VALUE"),
    # presets and config files
    (["--preset", "nope"], "unknown preset"),
    (["--config", "/no/such.json"], "config file not found"),
    (["--config", "BADJSON"], "is not valid JSON"),
    (["--config", "LIST"], "must hold a JSON object"),
    (["--config", "SECTION"], "unknown RunConfig field(s): optimizer"),
    (["--config", "KEY"], "unknown GPTConfig field(s): layers"),
    (["--config", "TYPE"], "warmup_steps must be an int >= 0, got 'ten'"),
]


@pytest.mark.parametrize("argv, message", CLI_ROWS, ids=[" ".join(a)[:60] for a, _ in CLI_ROWS])
def test_bad_cli_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys, argv, message):
    files = _files(tmp_path / "inputs")
    argv = [files.get(a, a) for a in argv]
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "2", *TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("dyntie: error: ") and "Traceback" not in err
    assert not out.exists()  # no partial run directory


def test_cuda_without_cuda_writes_nothing(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "cuda", "--steps", "2", *TINY]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "run").exists()


API_ROWS = [
    (lambda: validate_tie_map("0000", 4), ValueError, "got a string"),
    (lambda: validate_tie_map(None, 4), ValueError, "sequence of ints, got NoneType"),
    (lambda: validate_tie_map([0, 1, 2], 4), ValueError, "length 3"),
    (lambda: validate_tie_map([0, 1, 5, 0], 4), ValueError, "position 2: target 5"),
    (lambda: experiment_config(preset="debug", steps="ten"), ConfigError, "must be an integer"),
    (lambda: experiment_config(preset="debug", agent="[1]"), ConfigError, "must be a mapping"),
    (lambda: experiment_config(preset="debug", overrides="{a: [}"), ConfigError, "not valid YAML"),
    (lambda: experiment_config(preset="debug", seed=1.5), ConfigError, "must be an integer"),
    (lambda: experiment_config(preset=3), ConfigError, "must be text"),
]


@pytest.mark.parametrize("call, exc, message", API_ROWS, ids=[m for _, _, m in API_ROWS])
def test_bad_python_api_input_raises_the_named_exception(call, exc, message):
    with pytest.raises(exc, match=message.replace("(", "\\(").replace("[", "\\[")):
        call()


def test_a_checkpoint_from_another_config_and_a_results_folder_without_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "3", *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    config["model"]["n_embd"] = 64
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(out), "--resume", "--steps", "5"]) == 2
    assert "another config" in capsys.readouterr().err
    assert RunDir(out).read_summary()["steps"] == 3  # the finished run is untouched
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.json").write_text("{}")  # a summary without its config: not a run
    with pytest.raises(ConfigError, match="no finished runs"):
        write_report(tmp_path / "results")
    assert not (tmp_path / "results" / "report.md").exists()
