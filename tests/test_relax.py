"""Relaxed ties (``GPTConfig.relax="norms"``): a tied position keeps its own LayerNorms, counted as trainable."""

from __future__ import annotations

import pytest
import torch

from dyntie_core import GPTConfig, TiedGPT, TrainConfig, configure_optimizer, count_parameters, sync_optimizer
from dyntie_core.config import ConfigError
from dyntie_core.loop import Trainer
from dyntie_core.memory import measure_memory, predict_memory
from dyntie_core.rundir import RunDir

from .conftest import small_run_config

CFG = dict(n_layer=4, n_head=2, n_embd=32, block_size=16, vocab_size=64)


def _scramble_norms(model: TiedGPT, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name:
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=g))


def _logits(model: TiedGPT) -> torch.Tensor:
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        return model(idx)[0]


# per tied position: 2 norms x (gain + bias) x width; LoRA adds r x (in + out) for c_attn (c -> 3c), attn.c_proj
# (c -> c), c_fc (c -> 4c) and mlp.c_proj (4c -> c): r x 16c
@pytest.mark.parametrize(("relax", "per_tied"), [("norms", 4 * 32), ("lora", 4 * 32 + 4 * 16 * 32)])
@pytest.mark.parametrize("tie_map", [(0, 0, 2, 2), (0, 0, 0, 0), (0, 1, 2, 3)])
def test_a_relaxed_tie_adds_exactly_the_parameters_it_claims(tie_map, relax, per_tied):
    plain, relaxed = TiedGPT(GPTConfig(**CFG), tie_map), TiedGPT(GPTConfig(**CFG, relax=relax), tie_map)
    tied = sum(1 for i, r in enumerate(relaxed.roots) if r != i)
    a, b = count_parameters(plain), count_parameters(relaxed)
    assert b["trainable"] - a["trainable"] == b["relaxation"] == tied * per_tied
    assert b["vanilla_equivalent"] == a["vanilla_equivalent"] and b["unique_blocks"] == a["unique_blocks"]


@pytest.mark.parametrize("relax", ["norms", "lora"])
@pytest.mark.parametrize("mode", ["follow", "share"])
def test_memory_floor_holds_with_relaxed_ties_across_changes(mode, relax):
    cfg = GPTConfig(**CFG, relax=relax, tie_mode=mode)
    model = TiedGPT(cfg)
    opt = configure_optimizer(model, TrainConfig())
    for tie_map in [(0, 0, 0, 0), (0, 1, 0, 1), (0, 1, 2, 3), (0, 0, 2, 0)]:
        model.set_tie_map(tie_map)
        sync_optimizer(opt, model)
        idx = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        model(idx, idx)[1].backward()
        opt.step()
        measured, predicted = measure_memory(model, opt), predict_memory(cfg, tie_map)
        assert measured.model_state == pytest.approx(predicted.model_state, rel=0.02), tie_map
        assert {int(k) for k in model.relax} == {i for i, r in enumerate(model.roots) if r != i}


@pytest.mark.parametrize("relax", ["norms", "lora"])
def test_untie_preserves_the_function_and_tie_keeps_the_norms(relax):
    model = TiedGPT(GPTConfig(**CFG, relax=relax), (0, 0, 0, 0))
    _scramble_norms(model)
    with torch.no_grad():
        for name, p in model.relax.named_parameters():
            if "lora" in name:
                p.normal_(0.0, 0.05)  # tied positions now differ from their root through their own norms
    before = _logits(model)
    model.set_tie_map((0, 1, 0, 3))  # untie 1 and 3: root's weights + their own norms = the same function
    assert torch.allclose(_logits(model), before, atol=1e-6)
    _scramble_norms(model, seed=2)
    norms_of_1 = {k: v.clone() for k, v in model.blocks["1"].state_dict().items() if k.startswith("ln_")}
    model.set_tie_map((0, 0, 0, 3))  # tie 1 again: it keeps the norms it was running
    assert all(torch.equal(model.relax["1"].state_dict()[k], v) for k, v in norms_of_1.items())


def test_lora_tie_keeps_a_low_rank_difference_exactly():
    model = TiedGPT(GPTConfig(**CFG, relax="lora", relax_rank=4), (0, 1, 2, 3))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # block 1 := block 0 + a rank-2 difference on every adapted weight
        for name, p in model.blocks["1"].named_parameters():
            p.copy_(model.blocks["0"].get_parameter(name))
            if name in ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"):
                p += torch.randn(p.shape[0], 2, generator=g) @ torch.randn(2, p.shape[1], generator=g) * 0.05
    before = _logits(model)
    model.set_tie_map((0, 0, 2, 3))  # the truncated SVD of the difference is exact at rank 4 >= 2
    assert torch.allclose(_logits(model), before, atol=1e-5)


@pytest.mark.parametrize("relax", ["norms", "lora"])
def test_relaxed_tensors_train_while_the_root_stays_constant_at_tied_positions(relax):
    model = TiedGPT(GPTConfig(**CFG, relax=relax), (0, 0, 2, 2))
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    model(idx, idx)[1].backward()
    grads = {name: p.grad for name, p in model.relax.named_parameters()}
    assert all(g is not None for g in grads.values())
    # norms and LoRA's B learn from the first step; A starts learning once B is nonzero (LoRA's init: B = 0)
    assert all(g.abs().sum() > 0 for name, g in grads.items() if "lora_a" not in name)
    assert all(g.abs().sum() == 0 for name, g in grads.items() if "lora_a" in name)


def test_relaxed_run_checkpoints_and_reloads(tmp_path):
    config = small_run_config(steps=10, method="cycle", n_unique=2)
    config = config.replace(model=GPTConfig(**{**config.model.to_dict(), "relax": "norms"}))
    trainer = Trainer(config, run_dir=tmp_path)
    summary = trainer.run()
    assert summary["trainable_params"] == count_parameters(trainer.model)["trainable"]
    assert summary["memory_predicted"]["model_state"] == pytest.approx(summary["memory"]["model_state"], rel=0.02)
    reloaded = RunDir(tmp_path).load_model("last")
    assert torch.equal(_logits(reloaded), _logits(trainer.model))


def test_unknown_relaxation_is_refused():
    with pytest.raises(ConfigError, match="relax must be one of"):
        GPTConfig(relax="bitfit")
    with pytest.raises(ConfigError, match="relax_rank"):
        GPTConfig(relax="lora", relax_rank=0)


def test_transition_probe_logs_what_each_tie_change_costs(tmp_path):
    schedule = [[0, [0, 1, 2, 3]], [10, [0, 0, 2, 2]], [20, [0, 1, 2, 3]]]
    for relax in ("none", "norms"):
        config = small_run_config(steps=25, method="manual", schedule=schedule, train={"probe_transitions": True})
        config = config.replace(model=GPTConfig(**{**config.model.to_dict(), "relax": relax}))
        Trainer(config, run_dir=tmp_path / relax).run()
    rows = {relax: RunDir(tmp_path / relax).read_jsonl(RunDir.TIE_MAPS)[1:] for relax in ("none", "norms")}
    for relax, (tie, untie) in rows.items():
        assert tie["loss_after"] != tie["loss_before"]  # tying replaces blocks 1 and 3: the function changes
        # untying starts each block from the weights it was running (plus, relaxed, its own norms): no jump
        assert untie["loss_after"] == pytest.approx(untie["loss_before"], abs=1e-5), relax
        summary = RunDir(tmp_path / relax).read_summary()["transitions"]
        jumps = [tie["loss_after"] - tie["loss_before"], untie["loss_after"] - untie["loss_before"]]
        assert summary == {"count": 2, "mean_jump": pytest.approx(sum(jumps) / 2), "max_jump": max(jumps)}


@pytest.mark.parametrize("moments", ["fresh", "carry"])
def test_untied_blocks_start_with_fresh_or_carried_adam_moments(moments):
    schedule = [[0, [0, 0, 0, 0]], [6, [0, 1, 0, 3]]]
    trainer = Trainer(small_run_config(steps=6, method="manual", schedule=schedule, train={"untie_moments": moments}))
    trainer.train()
    root = dict(trainer.model.blocks["0"].named_parameters())
    saved = {n: {k: v.clone() for k, v in trainer.optimizer.state[p].items()} for n, p in root.items()}
    trainer.apply_tie_map((0, 1, 0, 3), reason="test")
    for key in ("1", "3"):
        for name, p in trainer.model.blocks[key].named_parameters():
            state = trainer.optimizer.state.get(p, {})
            if moments == "fresh":
                assert not state
            else:
                assert torch.equal(state["exp_avg"], saved[name]["exp_avg"])
                assert state["exp_avg"].data_ptr() != trainer.optimizer.state[root[name]]["exp_avg"].data_ptr()
                assert float(state["step"]) == float(saved[name]["step"]) == 6


def test_gradient_probe_sees_what_a_relaxed_position_runs():
    from dyntie_core.probes import untie_gradient_norms

    model = TiedGPT(GPTConfig(**CFG, relax="lora"), (0, 0, 2, 2))
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    norms = untie_gradient_norms(model, idx, idx)
    assert set(norms) == {1, 3} and all(n > 0 for n in norms.values())
    assert all(p.grad is None for p in model.parameters()) and model.training
