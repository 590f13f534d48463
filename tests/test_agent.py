import dataclasses
import math

import numpy as np
import pytest
import torch

from dyntie_core import AgentConfig, ConfigError, MethodConfig, RunDir
from dyntie_core.events import DecisionEvent
from dyntie_core.loop import Trainer
from dyntie_core.policies import DLTAgent, QNetwork, make_policy, slice_start
from dyntie_core.schemes import random_tie_map
from dyntie_core.tying import apply_action, unique_blocks

from .conftest import small_run_config


class FakeHost:
    """Drives a policy without a transformer: the reward CE is whatever we say."""

    def __init__(self, n_layer, ce=3.0):
        self.step = 0
        self.tie_map = tuple([0] * n_layer)
        self.ce = ce
        self.events = []

        self.splits = []

    def batch_loss(self, split, generator):
        self.splits.append(split)
        return self.ce

    def emit(self, event):
        self.events.append(event)

    def run(self, policy, steps):
        for _ in range(steps):
            new = policy.on_step(self.step, self)
            if new is not None:
                self.tie_map = tuple(new)
            self.step += 1


def test_random_policy_leaves_harmonic_number_of_independent_blocks():
    n_layer, sweeps = 12, 1500
    policy = make_policy(MethodConfig("random", agent=AgentConfig(k_steps=1)), n_layer, seed=3)
    host = FakeHost(n_layer)
    counts = []
    for _ in range(sweeps):
        host.run(policy, n_layer - 1)  # one full sweep over blocks 1..L-1
        counts.append(unique_blocks(host.tie_map))
    expected = sum(1 / k for k in range(1, n_layer + 1))  # H_12 = 3.10
    assert expected == pytest.approx(3.1032, abs=1e-4)
    # per-sweep std is about 1.2, so the mean of 1500 sweeps has a standard error of about 0.03
    assert np.mean(counts) == pytest.approx(expected, abs=0.12)
    assert policy.epsilon == 1.0 and policy.updates == 0


def test_slice_layout_partitions_the_outputs():
    n_layer = 5
    q = QNetwork(n_layer, 8)
    out = q(torch.randn(n_layer))
    assert out.shape == (15,)
    covered = []
    for block in range(n_layer):
        s = slice_start(block)
        assert s == block * (block + 1) // 2
        assert torch.equal(q.block_q(torch.zeros(n_layer), block), q(torch.zeros(n_layer))[s:s + block + 1])
        covered += list(range(s, s + block + 1))
    assert covered == list(range(15))


def test_actions_are_valid_for_every_block():
    agent = DLTAgent(6, seed=0)
    state = (0,) * 6
    for block in range(1, 6):
        seen = {agent.choose(state, block)[0] for _ in range(300)}
        assert seen == set(range(block + 1))  # epsilon 1: uniform over all block + 1 choices
    assert apply_action((0, 0, 0), 2, 2) == (0, 0, 2)
    assert apply_action((0, 1, 0), 2, 1) == (0, 1, 1)
    with pytest.raises(ValueError, match="not valid for block 2"):
        apply_action((0, 0, 0), 2, 3)


def test_epsilon_decays_per_episode_to_its_floor():
    n_layer = 4
    agent = DLTAgent(n_layer, AgentConfig(k_steps=2), seed=0)
    host = FakeHost(n_layer)
    host.run(agent, 2 * (n_layer - 1))  # first episode: epsilon still 1
    assert agent.episode == 0 and agent.epsilon == 1.0
    host.run(agent, 2)
    assert agent.episode == 1 and agent.epsilon == pytest.approx(0.95)
    host.run(agent, 2 * (n_layer - 1) * 200)
    assert agent.epsilon == pytest.approx(0.01)
    blocks = [e.record["block"] for e in host.events[: 2 * (n_layer - 1)]]
    assert blocks == [1, 2, 3, 1, 2, 3]  # sequential sweeps over 1..L-1


def test_reward_is_clipped_minus_perplexity_and_extensions_shape_it():
    agent = DLTAgent(4, seed=0)
    assert agent.reward(1.0, None, (0, 1, 2, 3)) == pytest.approx(-math.e)
    assert agent.reward(5.0, None, (0, 1, 2, 3)) == -10.0  # perplexity 148 saturates the clip
    assert agent.reward(500.0, None, (0, 0, 0, 0)) == -10.0
    penalised = DLTAgent(4, AgentConfig(param_penalty=2.0), seed=0)
    assert penalised.reward(1.0, None, (0, 1, 1, 3)) == pytest.approx(-math.e - 2.0 * 3 / 4)
    improving = DLTAgent(4, AgentConfig(reward="loss-improvement"), seed=0)
    assert improving.reward(3.0, 3.5, (0, 0, 0, 0)) == pytest.approx(0.5)
    costly = DLTAgent(4, AgentConfig(reward="loss-improvement", switch_cost=0.25), seed=0)
    assert costly.reward(3.0, 3.5, (0, 0, 0, 0), switched=True) == pytest.approx(0.25)
    assert costly.reward(3.0, 3.5, (0, 0, 0, 0), switched=False) == pytest.approx(0.5)


def test_one_q_update_matches_a_hand_computation():
    """3 blocks, fixed weights, known reward: the update equals AdamW's first step on the TD loss."""
    cfg = AgentConfig(hidden=2, lr=0.1, weight_decay=0.01, gamma=0.9)
    agent = DLTAgent(3, cfg, seed=0)
    W1 = np.array([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6]])
    b1 = np.array([0.1, -0.1])
    W2 = np.array([[0.2, -0.3], [0.1, 0.5], [-0.4, 0.2], [0.3, 0.3], [0.6, -0.1], [-0.2, 0.4]])
    b2 = np.array([0.0, 0.1, -0.1, 0.2, 0.05, 0.0])
    with torch.no_grad():
        for p, v in zip(agent.q.parameters(), (W1, b1, W2, b2)):
            p.copy_(torch.tensor(v, dtype=torch.float32))
    state, next_state, block, action, reward = [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], 2, 1, -10.0

    def q(s):
        h_pre = W1 @ np.array(s) + b1
        h = np.maximum(h_pre, 0.0)
        return W2 @ h + b2, h, h_pre

    q_s, h, h_pre = q(state)
    q_next, _, _ = q(next_state)
    target = reward + 0.9 * q_next[3:6].max()  # block 2 owns outputs 3, 4, 5
    pred = q_s[3 + action]
    g_out = np.zeros(6)
    g_out[3 + action] = 2.0 * (pred - target)  # d/dpred of (pred - target)^2
    gW2 = np.outer(g_out, h)
    gb2 = g_out
    g_h = W2.T @ g_out * (h_pre > 0)
    gW1 = np.outer(g_h, np.array(state))
    gb1 = g_h

    def adamw_first_step(p, g):
        eps = 1e-8
        # first step: m_hat = g, v_hat = g^2; decoupled decay applied first
        return p * (1 - 0.1 * 0.01) - 0.1 * g / (np.sqrt(g * g) + eps)

    loss, got_target = agent.learn(state, block, action, reward, next_state)
    assert got_target == pytest.approx(target, abs=1e-6)
    assert loss == pytest.approx((pred - target) ** 2, rel=1e-6)
    for p, v, g in zip(agent.q.parameters(), (W1, b1, W2, b2), (gW1, gb1, gW2, gb2)):
        assert np.allclose(p.detach().numpy(), adamw_first_step(v, g), atol=1e-6)


def test_random_fixed_draws_a_map_with_the_asked_unique_count():
    for seed in range(20):
        tie_map = random_tie_map(12, 4, seed)
        assert unique_blocks(tie_map) == 4
        assert all(tie_map[j] == j for j in tie_map)  # ties point at roots
    assert random_tie_map(12, 4, 1) == random_tie_map(12, 4, 1)  # a seed fixes the map
    assert len({random_tie_map(12, 4, seed) for seed in range(20)}) > 10  # different seeds, different maps
    policy = make_policy(MethodConfig("random-fixed", n_unique=3), 12, seed=5)
    assert unique_blocks(policy.initial_tie_map(12)) == 3
    with pytest.raises(ValueError, match="needs n_unique"):
        make_policy(MethodConfig("random-fixed"), 12)
    with pytest.raises(ConfigError, match="unknown AgentConfig field"):
        MethodConfig.from_dict({"name": "dlt", "agent": {"epsilon": 0.5}})


def test_agent_in_the_loop_logs_decisions_and_resumes_identically(tmp_path, pydoc_chars):
    config = small_run_config(steps=40, method="dlt")
    config = config.replace(train=dataclasses.replace(config.train, checkpoint_interval=12),
                            method=dataclasses.replace(config.method, agent=AgentConfig(k_steps=4)))
    straight = Trainer(config, run_dir=tmp_path / "a", data=pydoc_chars)
    assert straight.model.tie_map == (0, 0, 0, 0)  # the paper's initial map: all tied to block 0
    decisions = []
    straight.subscribe(lambda e: decisions.append(e) if isinstance(e, DecisionEvent) else None)
    straight.run()
    rows_a = RunDir(tmp_path / "a").read_jsonl(RunDir.DECISIONS)
    # a decision every K=4 steps (0, 4, ..., 36); the one at step 36 gets its reward at step 40, after the run
    assert len(rows_a) == 9 and len(decisions) == 9
    assert [r["block"] for r in rows_a[:6]] == [1, 2, 3, 1, 2, 3]
    for r in rows_a:
        assert -10.0 <= r["reward"] < 0 and 0 <= r["action"] <= r["block"]
        assert r["reward_step"] == r["step"] + 4

    first = Trainer(config, run_dir=tmp_path / "b", data=pydoc_chars)
    first.train(max_steps=17)
    del first
    resumed = Trainer.resume(tmp_path / "b", data=pydoc_chars)
    assert resumed.step == 12
    resumed.run()
    rows_b = RunDir(tmp_path / "b").read_jsonl(RunDir.DECISIONS)
    assert rows_b == rows_a  # same decisions, rewards and Q values
    assert RunDir(tmp_path / "b").read_jsonl(RunDir.TIE_MAPS) == RunDir(tmp_path / "a").read_jsonl(RunDir.TIE_MAPS)


@pytest.mark.parametrize("split", ["train", "valid"])
def test_reward_batch_comes_from_the_configured_split(split):
    agent = DLTAgent(4, AgentConfig(k_steps=1, reward_split=split), seed=0)
    host = FakeHost(4)
    host.run(agent, 5)
    assert host.splits == [split] * 4  # one reward batch per finished decision, none from the other split
    improving = DLTAgent(4, AgentConfig(k_steps=1, reward="loss-improvement", reward_split=split), seed=0)
    host = FakeHost(4)
    host.run(improving, 3)
    assert set(host.splits) == {split} and len(host.splits) == 5  # scored before each action and after


def test_the_valid_reward_split_scores_validation_data_in_the_loop(pydoc_chars):
    config = small_run_config(steps=1, method="dlt")
    trainer = Trainer(config, data=pydoc_chars)
    g = torch.Generator().manual_seed(0)
    train_ce, valid_ce = trainer.batch_loss("train", g.manual_seed(0)), trainer.batch_loss("valid", g.manual_seed(0))
    assert train_ce != valid_ce  # same windows positions, different text
    from dyntie_core.evaluation import batch_loss

    expected = batch_loss(trainer.model, pydoc_chars.valid, 32, 4, torch.Generator().manual_seed(0))
    assert valid_ce == expected


def test_replay_learns_from_the_newest_transition_and_bootstraps_from_a_synced_target():
    cfg = AgentConfig(replay_size=3, replay_batch=2, target_sync=2, lr=0.05)
    agent = DLTAgent(3, cfg, seed=0)
    state, nxt = [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    target_before = {k: v.clone() for k, v in agent.target.state_dict().items()}
    agent.learn(state, 2, 1, -1.0, nxt)
    assert len(agent.replay) == 1 and agent.updates == 1
    assert all(torch.equal(v, target_before[k]) for k, v in agent.target.state_dict().items())  # not synced yet
    assert not all(torch.equal(v, target_before[k]) for k, v in agent.q.state_dict().items())  # q moved
    agent.learn(state, 1, 0, -2.0, nxt)
    assert agent.updates == 2  # target_sync=2: the target network now equals the online one
    assert all(torch.equal(v, agent.q.state_dict()[k]) for k, v in agent.target.state_dict().items())
    for k in range(3):
        agent.learn(state, 1, 0, float(k), nxt)
    assert len(agent.replay) == 3 and agent.replay[-1][3] == 2.0  # bounded, newest kept
    assert agent.replay[0][3] == 0.0  # the two oldest transitions were dropped


def test_replay_target_uses_the_target_network_not_the_online_one():
    agent = DLTAgent(3, AgentConfig(replay_size=10, replay_batch=1, target_sync=1000), seed=0)
    nxt = [0.0, 1.0, 0.0]
    with torch.no_grad():  # make the two networks disagree
        for p in agent.q.parameters():
            p.add_(1.0)
    online = agent.td_target(-1.0, nxt, 2, agent.q)
    offline = agent.td_target(-1.0, nxt, 2, agent.target)
    assert online != pytest.approx(offline, abs=1e-3)
    _, target = agent.learn([0.0, 0.0, 0.0], 2, 0, -1.0, nxt)
    assert target == pytest.approx(offline)


def test_commit_phase_never_changes_the_map_after_its_episodes():
    from dyntie_core.config import AgentConfig
    from dyntie_core.events import DecisionEvent, TieChangeEvent
    from dyntie_core.loop import Trainer

    from .conftest import small_run_config

    trainer = Trainer(small_run_config(steps=40, method="dlt", agent=AgentConfig(k_steps=2, commit_after=2)))
    decisions, changes = [], []
    trainer.subscribe(lambda e: decisions.append(e) if isinstance(e, DecisionEvent) else None)
    trainer.subscribe(lambda e: changes.append(e) if isinstance(e, TieChangeEvent) else None)
    trainer.run()
    # 2 sweeps of 3 decisions (4 blocks), K = 2: decisions before steps 0, 2, ..., 10; the last reward at step 12
    assert [d.step for d in decisions] == [0, 2, 4, 6, 8, 10]
    assert changes and all(c.step <= 10 for c in changes)
    assert trainer.policy.committed and trainer.policy.episode == 1


def test_progress_state_feeds_step_over_budget_to_the_q_network():
    agent = DLTAgent(4, AgentConfig(progress_state=True, k_steps=1), seed=0)
    assert agent.q.fc1.in_features == 5 and DLTAgent(4, seed=0).q.fc1.in_features == 4
    host = FakeHost(4)
    host.total_steps = 40
    host.step = 10
    assert agent.features((0, 1, 1, 3), host) == [0.0, 1.0, 1.0, 3.0, 0.25]
    host.run(agent, 12)  # decisions and Q updates run on the 5-feature state
    assert agent.updates == 11 and agent.pending["features"][-1] == pytest.approx(21 / 40)
    state, tensors = agent.state_dict()
    twin = DLTAgent(4, AgentConfig(progress_state=True, k_steps=1), seed=0)
    twin.load_state_dict(state, tensors)
    assert torch.equal(twin.q.fc1.weight, agent.q.fc1.weight)
