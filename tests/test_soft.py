"""Soft sharing (``relax=mix`` and the ``soft`` method): learned mixtures of template blocks, hardened late."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dyntie_core import GPTConfig, TiedGPT, TrainConfig, configure_optimizer, count_parameters
from dyntie_core.config import ConfigError, ProgressiveConfig
from dyntie_core.loop import Trainer
from dyntie_core.memory import measure_memory, predict_memory
from dyntie_core.optim import sync_optimizer
from dyntie_core.policies.soft import FINAL_SOFT, SoftPolicy
from dyntie_core.relax import MIX_PEAK
from dyntie_core.rundir import RunDir

from .conftest import small_run_config

CFG = dict(n_layer=4, n_head=2, n_embd=32, block_size=16, vocab_size=64)


def _idx(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(seed))


def _logits(model: TiedGPT) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(_idx())[0]


def _soft_config(steps: int = 40, tie_mode: str = "follow", **train):
    config = small_run_config(steps, method="soft", n_unique=2, train=train,
                              progressive=ProgressiveConfig(start=0.25, end=0.5))
    return config.replace(model=dataclasses.replace(config.model, relax="mix", tie_mode=tie_mode))


@pytest.mark.parametrize("tie_map", [(0, 0, 0, 0), (0, 1, 0, 1), (0, 1, 2, 3)])
def test_a_mixing_position_adds_one_logit_per_position_and_sits_on_the_memory_floor(tie_map):
    cfg = GPTConfig(**CFG, relax="mix")
    plain, mixed = TiedGPT(GPTConfig(**CFG), tie_map), TiedGPT(cfg, tie_map)
    tied = sum(1 for i, r in enumerate(mixed.roots) if r != i)
    a, b = count_parameters(plain), count_parameters(mixed)
    assert b["trainable"] - a["trainable"] == b["relaxation"] == tied * 4
    opt = configure_optimizer(mixed, TrainConfig())
    mixed(_idx(), _idx())[1].backward()
    opt.step()
    assert measure_memory(mixed, opt).model_state == predict_memory(cfg, tie_map).model_state


def test_a_fresh_mixture_weighs_its_own_root_most_and_temperature_zero_runs_the_root_exactly():
    cfg = GPTConfig(**CFG, relax="mix")
    mixed, plain = TiedGPT(cfg, (0, 1, 0, 1)), TiedGPT(GPTConfig(**CFG), (0, 1, 0, 1))
    plain.load_state_dict({k: v for k, v in mixed.state_dict().items() if k in plain.state_dict()})
    w = mixed.relax["2"].weights([0, 1], 1.0).detach()
    assert w[0] == pytest.approx(torch.sigmoid(torch.tensor(MIX_PEAK)).item()) and w.sum().item() == pytest.approx(1.0)
    assert not torch.allclose(_logits(mixed), _logits(plain), atol=1e-4)  # soft: a blend of both roots
    mixed.set_mix_temperature(0.0)
    assert torch.equal(_logits(mixed), _logits(plain))  # hard: bit for bit the plain tie
    with pytest.raises(ValueError, match=">= 0"):
        mixed.set_mix_temperature(-1.0)
    with pytest.raises(ValueError, match="relax='mix'"):
        plain.set_mix_temperature(0.5)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_in_follow_mode_only_the_logits_learn_at_a_mixing_position(temperature):
    model = TiedGPT(GPTConfig(**CFG, relax="mix"), (0, 1, 0, 1))
    model.set_mix_temperature(temperature)
    model(_idx(), _idx())[1].backward()
    grad = model.relax["2"].logits.grad
    assert grad is not None and grad[[0, 1]].abs().sum() > 0  # the logits of roots learn, even when hard
    assert grad[[2, 3]].abs().sum() == 0  # positions that are not roots take no part
    # with a single root the mixture is that root: follow mode then gives the root the gradient of a plain follow
    # tie (its own position only), share mode the sum over all positions
    for mode, same in (("follow", True), ("share", False)):
        mixed = TiedGPT(GPTConfig(**CFG, relax="mix", tie_mode=mode), (0, 0, 0, 0))
        plain = TiedGPT(GPTConfig(**CFG), (0, 0, 0, 0))
        plain.load_state_dict({k: v for k, v in mixed.state_dict().items() if k in plain.state_dict()})
        for m in (mixed, plain):
            m(_idx(), _idx())[1].backward()
        g_mixed, g_plain = mixed.blocks["0"].mlp.c_fc.weight.grad, plain.blocks["0"].mlp.c_fc.weight.grad
        assert torch.allclose(g_mixed, g_plain, atol=1e-7) == same, mode


def test_a_root_change_keeps_a_mixture_that_already_prefers_the_new_root():
    model = TiedGPT(GPTConfig(**CFG, relax="mix"), (0, 1, 0, 1))
    with torch.no_grad():
        model.relax["2"].logits[1] = 5.0  # position 2 now prefers root 1
    before = _logits(model)
    kept = model.relax["2"]
    assert model.mixture_dominants() == {2: 1, 3: 1}
    model.set_tie_map((0, 1, 1, 1))
    assert model.relax["2"] is kept and torch.equal(_logits(model), before)  # a pure renaming: same function
    model.set_tie_map((0, 1, 0, 1))  # against its preference: a fresh mixture peaked at root 0
    assert model.relax["2"] is not kept and model.mixture_dominants()[2] == 0


def test_untying_a_mixing_position_keeps_exactly_what_it_ran():
    model = TiedGPT(GPTConfig(**CFG, relax="mix"), (0, 1, 0, 1))
    model.set_mix_temperature(0.7)
    with torch.no_grad():
        model.relax["3"].logits.copy_(torch.tensor([0.3, -0.2, 0.0, 0.0]))
    before = _logits(model)
    model.set_tie_map((0, 1, 0, 3))
    assert "3" not in model.relax
    assert torch.allclose(_logits(model), before, atol=1e-6)


def test_mixture_logits_train_in_their_own_group_at_a_scaled_learning_rate(tmp_path):
    model = TiedGPT(GPTConfig(**CFG, relax="mix"), (0, 1, 0, 1))
    opt = configure_optimizer(model, TrainConfig(weight_decay=0.1, mix_lr_scale=30.0))
    mix = next(g for g in opt.param_groups if g["kind"] == "mix")
    assert mix["params"] == [model.relax["2"].logits, model.relax["3"].logits]
    assert (mix["weight_decay"], mix["lr_scale"]) == (0.0, 30.0)
    model.set_tie_map((0, 1, 2, 1))  # position 3 gets a fresh mixture; position 2 becomes a root
    sync_optimizer(opt, model)
    assert mix["params"] == [model.relax["3"].logits]
    trainer = Trainer(_soft_config(3, mix_lr_scale=30.0))
    trainer.train_step()
    lrs = {g["kind"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs["mix"] == pytest.approx(30.0 * lrs["decay"]) and lrs["decay"] == lrs["no_decay"]


def test_the_temperature_schedule_anneals_to_hard_at_the_end_of_the_window():
    policy = SoftPolicy(12, 4, ProgressiveConfig(start=0.25, end=0.75))
    assert policy.initial_tie_map(12) == (0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3)
    t = [policy.mix_temperature(s, 100) for s in range(100)]
    assert t[0] == t[25] == 1.0 and t[74] == pytest.approx(FINAL_SOFT ** (49 / 50)) and t[75] == t[99] == 0.0
    assert all(a >= b for a, b in zip(t, t[1:], strict=False))
    with pytest.raises(ValueError, match="n_unique"):
        SoftPolicy(4, 4, ProgressiveConfig())


def test_soft_needs_the_mix_relaxation():
    config = small_run_config(10, method="soft", n_unique=2)
    with pytest.raises(ConfigError, match="relax='mix'"):
        Trainer(config)


def test_soft_training_hardens_keeps_its_templates_and_resumes_exactly(tmp_path):
    config = _soft_config(40, checkpoint_interval=15)  # soft until step 10, annealed until 20, hard from 20
    full = Trainer(config, run_dir=tmp_path / "full")
    summary = full.run()
    rows = RunDir(tmp_path / "full").read_jsonl(RunDir.TIE_MAPS)
    assert all(r["tie_map"][:2] == [0, 1] and set(r["tie_map"]) <= {0, 1} for r in rows)  # 2 templates throughout
    assert all(r["step"] <= 20 for r in rows)  # the map is final from the first hard step
    assert float(full.model.mix_temperature) == 0.0 and summary["unique_blocks"] == 2
    hard = TiedGPT(full.model.config, full.model.tie_map)  # hard: the model is a plain follow tie, bit for bit
    plain = TiedGPT(dataclasses.replace(full.model.config, relax="none"), full.model.tie_map)
    hard.load_state_dict(full.model.state_dict())
    plain.load_state_dict({k: v for k, v in full.model.state_dict().items() if k in plain.state_dict()})
    with torch.no_grad():  # even where a mixture has come to prefer another template since
        hard.relax["3"].logits.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]) + 5.0 * (torch.arange(4) == 1 - hard.roots[3]))
    assert hard.mixture_dominants()[3] != hard.roots[3]
    idx = torch.randint(0, full.model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    assert torch.equal(hard.eval()(idx)[0], plain.eval()(idx)[0])
    # resumed from the checkpoint at step 15 (annealing): the same final weights, bit for bit
    half = Trainer(config, run_dir=tmp_path / "half")
    half.train(max_steps=15)
    half.save_checkpoint("last")
    resumed = Trainer.resume(tmp_path / "half")
    resumed.run()
    for (name, p), q in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert resumed.model.tie_map == full.model.tie_map
