"""``experiments/tie_cost.py``: the immediate cost of tying a trained model, with and without relaxations."""

from __future__ import annotations

import pytest
import torch

from dyntie_core.cli import main
from dyntie_core.config import GPTConfig
from dyntie_core.model import TiedGPT
from dyntie_core.tying import count_parameters, resolve_roots

from .conftest import TINY_CLI, experiment_module


def _trained_like(bias: bool) -> TiedGPT:
    """A 4-block model whose blocks differ, as after training (random weights, no two alike)."""
    torch.manual_seed(0)
    model = TiedGPT(GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=16, vocab_size=20, dropout=0.0, bias=bias))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_a_full_rank_relaxation_keeps_the_function_and_plain_ties_do_not():
    tc = experiment_module("tie_cost")
    base = _trained_like(bias=False)  # LoRA adapts the weights; with biases those would still come from the root
    x = torch.randint(0, 20, (3, 16))
    y = torch.randint(0, 20, (3, 16))

    def score(model):
        return float(model(x, y)[1].detach())

    plain = tc.greedy_ties(tc.relaxed_copy(base, "none", 4), 2, (x, y), score)
    full = tc.greedy_ties(tc.relaxed_copy(base, "lora", 32), 2, (x, y), score)  # rank 32 = width: exact
    assert [r["ties"] for r in plain] == [0, 1, 2] and len(set(resolve_roots(plain[-1]["map"]))) == 2
    assert plain[0]["val_loss"] == full[0]["val_loss"] == score(base)
    assert all(abs(r["val_loss"] - score(base)) < 1e-5 for r in full)
    assert abs(plain[-1]["val_loss"] - score(base)) > 1e-3
    block = count_parameters(base)["per_block"]
    assert plain[0]["trainable"] == count_parameters(base)["trainable"]
    assert plain[-1]["trainable"] == plain[0]["trainable"] - 2 * block  # two blocks fewer, nothing added
    lora = 2 * (2 * 32 + 32 * (3 * 32 + 32) + 32 * (32 + 32) + 32 * (4 * 32 + 32) + 32 * (32 + 4 * 32))
    assert full[-1]["trainable"] == plain[-1]["trainable"] + lora  # two tied positions: norms + 4 rank-32 deltas
    single = tc.single_ties(tc.relaxed_copy(base, "none", 4), [(0, 1), (2, 3)], score)
    kept = tc.single_ties(tc.relaxed_copy(base, "lora", 32), [(0, 1), (2, 3)], score)
    assert set(single) == {(0, 1), (2, 3)} and all(abs(v - score(base)) < 1e-5 for v in kept.values())
    assert all(abs(v - score(base)) > 1e-4 for v in single.values())
    trial = tc.relaxed_copy(base, "none", 4)
    trial.set_tie_map([0, 1, 2, 2])
    assert single[(2, 3)] == score(trial.eval())  # the same tie, on a copy: the model given is not changed


def test_each_tie_is_the_cheapest_on_the_probe_batch():
    tc = experiment_module("tie_cost")
    model = tc.relaxed_copy(_trained_like(bias=True), "none", 4)
    x = torch.randint(0, 20, (3, 16))
    y = torch.randint(0, 20, (3, 16))
    rows = tc.greedy_ties(model, 3, (x, y), lambda m: float(m(x, y)[1].detach()))
    first = rows[1]["map"]
    for a in range(4):
        for b in range(a + 1, 4):
            trial = tc.relaxed_copy(_trained_like(bias=True), "none", 4)
            trial.set_tie_map([a if i == b else i for i in range(4)])
            assert float(trial(x, y)[1].detach()) >= rows[1]["val_loss"] - 1e-6, (a, b, first)


def test_tie_cost_runs_on_a_finished_run_and_refuses_tied_ones(tmp_path, capsys):
    tc = experiment_module("tie_cost")
    for name, method in [("vanilla", ["vanilla"]), ("tied", ["cycle-rev", "--n-unique", "2"])]:
        assert main(["train", "--method", *method, "--out", str(tmp_path / name), *TINY_CLI, "--steps", "8"]) == 0
    figure = tmp_path / "cost.png"
    assert tc.main([str(tmp_path / "vanilla"), "--relax", "none,lora:2", "--n-unique", "2", "--plot",
                    str(figure), "--pairs", "0:1,1:3"]) == 0
    out = capsys.readouterr().out
    assert "| none |" in out and "| lora:2 |" in out and figure.read_bytes()[:4] == b"\x89PNG"
    assert "| relaxation | tie 1 to 0 (nats) | tie 3 to 1 (nats) |" in out
    with pytest.raises(SystemExit):  # argparse's usage error: B must come after A
        tc.main([str(tmp_path / "vanilla"), "--pairs", "1:0"])
    assert "A < B" in capsys.readouterr().err
    assert tc.main([str(tmp_path / "tied"), "--n-unique", "2"]) == 2
    assert "independent blocks" in capsys.readouterr().err
    assert tc.main([str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err
