"""``shrink``: vanilla first, then the most similar pair of roots tied at evenly spaced steps."""

from __future__ import annotations

import pytest
import torch

from dyntie_core.config import ConfigError, MethodConfig, ProgressiveConfig
from dyntie_core.loop import Trainer
from dyntie_core.policies import make_policy
from dyntie_core.policies.progressive import candidate_pairs, most_similar_pair, tie_steps
from dyntie_core.rundir import RunDir

from .conftest import small_run_config


class FakeHost:
    """Four blocks: 0 and 1 alike, 2 and 3 nearly identical (a scaled copy), all else far apart."""

    def __init__(self, total_steps: int) -> None:
        g = torch.Generator().manual_seed(0)
        a, w = torch.randn(50, generator=g), torch.randn(50, generator=g)
        self.weights = {0: a, 1: a + 0.1 * torch.randn(50, generator=g), 2: w, 3: 1.5 * w}
        self.total_steps = total_steps
        self.tie_map = (0, 1, 2, 3)

    def root_weights(self) -> dict[int, torch.Tensor]:
        roots = set(self.tie_map)
        return {k: v for k, v in self.weights.items() if k in roots}


def drive(policy, host, steps: int = 100) -> dict[int, tuple[int, ...]]:
    """Call the policy before every step as the loop does; the maps it switched to, by step."""
    maps = {}
    for step in range(steps):
        new = policy.on_step(step, host)
        if new is not None:
            host.tie_map = tuple(new)
            maps[step] = host.tie_map
    return maps


def test_tie_steps_are_evenly_spaced_over_the_window():
    cfg = ProgressiveConfig(start=0.25, end=0.75)
    assert tie_steps(8, 13200, cfg) == [3300, 4243, 5186, 6129, 7071, 8014, 8957, 9900]
    assert tie_steps(1, 100, cfg) == [25] and tie_steps(0, 100, cfg) == []


def test_most_similar_pair_ties_the_later_block_to_the_earlier():
    host = FakeHost(100)
    assert most_similar_pair(host.root_weights()) == (2, 3)  # cosine ignores scale
    with pytest.raises(ValueError, match="two roots"):
        most_similar_pair({0: torch.ones(3)})


def test_shrink_ties_the_expected_pairs_at_the_scheduled_steps():
    policy = make_policy(MethodConfig(name="shrink", n_unique=2), n_layer=4)
    assert policy.initial_tie_map(4) == (0, 1, 2, 3)
    assert drive(policy, FakeHost(100)) == {25: (0, 1, 2, 2), 75: (0, 0, 2, 2)}


def test_shrink_in_training_reaches_its_target_and_resumes_exactly(tmp_path):
    config = small_run_config(steps=40, method="shrink", n_unique=2,
                              progressive=ProgressiveConfig(start=0.25, end=0.5), train={"checkpoint_interval": 15})
    summary = Trainer(config, run_dir=tmp_path / "a").run()
    assert summary["unique_blocks"] == 2
    log = RunDir(tmp_path / "a").read_jsonl(RunDir.TIE_MAPS)
    assert [row["step"] for row in log] == [0, 10, 20]  # changes logged at steps 10 and 20 (before steps 11, 21)
    assert [row["unique_blocks"] for row in log[1:]] == [3, 2]
    best = RunDir(tmp_path / "a").load_model("best")  # test perplexity is measured on a model with the final map
    assert list(best.tie_map) == summary["tie_map"] and summary["best_step"] > 20
    Trainer(config, run_dir=tmp_path / "b").train(max_steps=15)  # killed after the checkpoint at step 15
    resumed = Trainer.resume(tmp_path / "b").run()
    assert resumed["tie_map"] == summary["tie_map"] and resumed["test_ppl"] == summary["test_ppl"]


class FakeLossHost(FakeHost):
    """Tying root ``drop`` into ``keep`` costs ``cost[(keep, drop)]`` (1.0 unless listed)."""

    def __init__(self, total_steps: int, cost: dict[tuple[int, int], float]) -> None:
        super().__init__(total_steps)
        self.cost, self.asked = cost, []

    def tie_losses(self, tie_maps):
        self.asked.append(len(tie_maps))
        out = []
        for m in tie_maps:
            (drop,) = set(self.tie_map) - set(m)
            out.append(self.cost.get((m[drop], drop), 1.0))
        return out


def test_shrink_by_loss_ties_the_pair_whose_tie_costs_least():
    policy = make_policy(MethodConfig(name="shrink", n_unique=2, progressive=ProgressiveConfig(criterion="loss")),
                         n_layer=4)
    host = FakeLossHost(100, {(0, 3): 0.5, (1, 2): 0.7, (2, 3): 0.9})
    assert drive(policy, host) == {25: (0, 1, 2, 0), 75: (0, 1, 1, 0)}  # not cosine's (2, 3)
    assert host.asked == [6, 3]  # every pair of the current roots was tried


def test_adjacent_candidates_are_the_groups_that_meet_at_a_boundary():
    assert candidate_pairs([0, 1, 2, 3], adjacent=True) == [(0, 1), (1, 2), (2, 3)]
    assert candidate_pairs([0, 0, 2, 2, 2, 5], adjacent=True) == [(0, 2), (2, 5)]
    assert candidate_pairs([0, 0, 2, 2, 2, 5]) == [(0, 2), (0, 5), (2, 5)]
    g = torch.Generator().manual_seed(0)
    a, w, v = (torch.randn(20, generator=g) for _ in range(3))
    weights = {0: a, 1: w, 2: 2 * a + 0.01 * v, 3: v}
    assert most_similar_pair(weights) == (0, 2)  # alike but not neighbours
    assert most_similar_pair(weights, candidate_pairs([0, 1, 2, 3], adjacent=True)) != (0, 2)


def test_adjacent_shrink_by_loss_keeps_every_map_contiguous():
    progressive = ProgressiveConfig(criterion="loss", adjacent=True)
    policy = make_policy(MethodConfig(name="shrink", n_unique=2, progressive=progressive), n_layer=4)
    host = FakeLossHost(100, {(0, 3): 0.5, (1, 2): 0.7, (1, 3): 0.8, (2, 3): 0.9})
    assert drive(policy, host) == {25: (0, 1, 1, 3), 75: (0, 1, 1, 1)}  # (0, 3), the cheapest, is not a neighbour
    assert host.asked == [3, 2]  # only neighbouring groups were tried
    with pytest.raises(ValueError, match="shrink only"):
        make_policy(MethodConfig(name="grow", n_unique=2, progressive=progressive), n_layer=4)


def test_adjacent_shrink_in_training_ends_contiguous():
    config = small_run_config(steps=30, method="shrink", n_unique=2,
                              progressive=ProgressiveConfig(start=0.2, end=0.6, criterion="loss", adjacent=True))
    final = Trainer(config).run()["tie_map"]
    assert len(set(final)) == 2 and final == sorted(final) and final[0] == 0  # two runs of consecutive positions


def test_tie_losses_try_maps_on_a_copy_and_leave_the_model_alone():
    trainer = Trainer(small_run_config(steps=5, method="manual", schedule=[[0, [0, 1, 2, 0]]]))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    same, tied = trainer.tie_losses([(0, 1, 2, 0), (0, 1, 1, 0)])
    assert trainer.model.tie_map == (0, 1, 2, 0) and trainer.model.training
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())
    generator = torch.Generator().manual_seed(trainer.config.train.seed + 4 + trainer.step)
    from dyntie_core.data import sample_windows

    x, y = sample_windows(trainer.data.train, trainer.config.train.batch_size, trainer.config.model.block_size,
                          generator)
    trainer.model.eval()
    with torch.no_grad():
        assert same == pytest.approx(float(trainer.model(x, y)[1]), rel=1e-6)  # the current map: the model's loss
        trainer.model.set_tie_map((0, 1, 1, 0))
        assert tied == pytest.approx(float(trainer.model(x, y)[1]), rel=1e-6)


def test_shrink_by_loss_in_training_reaches_its_target():
    config = small_run_config(steps=30, method="shrink", n_unique=2,
                              progressive=ProgressiveConfig(start=0.2, end=0.6, criterion="loss"))
    assert Trainer(config).run()["unique_blocks"] == 2


def test_shrink_needs_a_target_and_a_sane_window():
    with pytest.raises(ValueError, match="needs n_unique"):
        make_policy(MethodConfig(name="shrink"), n_layer=4)
    with pytest.raises(ConfigError, match="start <= end"):
        ProgressiveConfig(start=0.8, end=0.2)


class FakeGrowHost:
    def __init__(self, total_steps: int, norms: dict[int, float]) -> None:
        self.total_steps, self.norms = total_steps, norms
        self.tie_map = (0, 0, 0, 0)

    def untie_gradient_norms(self) -> dict[int, float]:
        return {i: n for i, n in self.norms.items() if self.tie_map[i] != i}


def test_grow_unties_the_positions_with_the_largest_gradients_on_schedule():
    policy = make_policy(MethodConfig(name="grow", n_unique=3), n_layer=4)
    assert policy.initial_tie_map(4) == (0, 0, 0, 0)
    assert drive(policy, FakeGrowHost(100, {1: 0.1, 2: 5.0, 3: 1.0})) == {25: (0, 0, 2, 0), 75: (0, 0, 2, 3)}


def test_untie_gradient_norms_are_the_gradients_an_independent_copy_would_get():
    trainer = Trainer(small_run_config(steps=5, method="manual", schedule=[[0, [0, 0, 2, 0]]]))
    norms = trainer.untie_gradient_norms()
    assert set(norms) == {1, 3} and all(n > 0 for n in norms.values())
    assert all(p.grad is None for p in trainer.model.parameters())  # the probe leaves no gradients behind
    # the same number by hand: untie position 3 (a copy of block 0) and take its weights' gradient on the probe batch
    generator = torch.Generator().manual_seed(trainer.config.train.seed + 3 + trainer.step)
    from dyntie_core.data import sample_windows

    x, y = sample_windows(trainer.data.train, trainer.config.train.batch_size, trainer.config.model.block_size,
                          generator)
    trainer.model.set_tie_map((0, 0, 2, 3))
    trainer.model.eval()
    trainer.model(x, y)[1].backward()
    by_hand = float(torch.stack([p.grad.pow(2).sum() for p in trainer.model.blocks["3"].parameters()]).sum().sqrt())
    assert norms[3] == pytest.approx(by_hand, rel=1e-4)


def test_grow_in_training_reaches_its_target():
    config = small_run_config(steps=30, method="grow", n_unique=3, progressive=ProgressiveConfig(start=0.2, end=0.6))
    trainer = Trainer(config)
    summary = trainer.run()
    assert summary["unique_blocks"] == 3 and summary["steps"] == 30
