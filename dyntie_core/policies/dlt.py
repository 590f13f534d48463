"""The DLT agent (METHOD.md section 4) and its controls, as tie policies.

Online one-step Q-learning. The state is the tie map as floats; the Q network maps it
to L(L+1)/2 outputs, block i owning the i+1 outputs from i(i+1)/2 (output j < i: "tie
to j", output i: "independent"). An episode sweeps blocks 1..L-1; each decision is
followed by K training steps, then a reward and one Q update. Its settings are
``AgentConfig`` (defaults: the paper preset; each extension off until asked for).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import AgentConfig, MethodConfig
from ..events import DecisionEvent
from ..optim import load_optimizer_state, optimizer_state_tensors
from ..tying import TieMap, apply_action, unique_blocks, validate_tie_map
from .base import MethodSpec, PolicyHost


def slice_start(block: int) -> int:
    """First Q output of ``block``'s slice (it owns ``block + 1`` outputs)."""
    return block * (block + 1) // 2


class QNetwork(nn.Module):
    """Linear(L, hidden) - ReLU - Linear(hidden, L(L+1)/2); ``n_inputs`` > L when the state has extra features."""

    def __init__(self, n_layer: int, hidden: int, n_inputs: int | None = None) -> None:
        super().__init__()
        self.n_layer = n_layer
        self.fc1 = nn.Linear(n_inputs or n_layer, hidden)
        self.fc2 = nn.Linear(hidden, n_layer * (n_layer + 1) // 2)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(state)))

    def block_q(self, state: torch.Tensor, block: int) -> torch.Tensor:
        """The ``block + 1`` Q values of one block's actions (last dim)."""
        s = slice_start(block)
        return self(state)[..., s:s + block + 1]


class DLTAgent:
    """Q-learning tie policy. ``random`` is the same agent with epsilon fixed at 1 and no learning."""

    def __init__(self, n_layer: int, config: AgentConfig | None = None, seed: int = 0, name: str = "dlt") -> None:
        if n_layer < 2:
            raise ValueError("the DLT agent needs at least 2 blocks")
        self.name = name
        self.n_layer = n_layer
        self.config = config or AgentConfig()
        self.n_inputs = n_layer + (1 if self.config.progress_state else 0)
        self.generator = torch.Generator().manual_seed(seed + 7919)
        with torch.random.fork_rng():
            torch.manual_seed(seed + 104729)
            self.q = QNetwork(n_layer, self.config.hidden, self.n_inputs)
        self.target = QNetwork(n_layer, self.config.hidden, self.n_inputs)
        self.target.load_state_dict(self.q.state_dict())
        self.optimizer = torch.optim.AdamW(self.q.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)
        self.epsilon = self.config.epsilon_start
        self.episode = 0
        self.block = 0  # the block decided last; 0 means "no decision yet in this episode"
        self.updates = 0
        self.pending: dict[str, Any] | None = None
        self.replay: list[tuple[list[float], int, int, float, list[float]]] = []

    # ---- policy protocol -------------------------------------------------------------
    def initial_tie_map(self, n_layer: int) -> TieMap:
        return validate_tie_map([0] * n_layer, n_layer)

    def on_step(self, step: int, host: PolicyHost) -> Sequence[int] | None:
        if step % self.config.k_steps:
            return None
        if self.pending is not None:
            self._finish_transition(host)
        if self.committed:
            return None
        return self._decide(host)

    @property
    def committed(self) -> bool:
        """True once ``commit_after`` sweeps are complete: the map is then held for the rest of the run."""
        done = self.episode + (1 if self.block >= self.n_layer - 1 else 0)
        return bool(self.config.commit_after) and done >= self.config.commit_after

    def configure(self, k_steps: int | None = None, epsilon: float | None = None) -> None:
        """Change K or the current epsilon mid-run (the dashboard's controls); validated like the config."""
        if k_steps is not None:
            self.config = dataclasses.replace(self.config, k_steps=int(k_steps))
        if epsilon is not None:
            if not 0.0 <= float(epsilon) <= 1.0:
                raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
            self.epsilon = float(epsilon)

    # ---- decisions -------------------------------------------------------------------
    def _next_block(self) -> int:
        if self.block >= self.n_layer - 1:
            self.block = 0
            self.episode += 1
            self.epsilon = max(self.config.epsilon_min, self.epsilon * self.config.epsilon_decay)
        self.block += 1
        return self.block

    def choose(self, state: Sequence[float], block: int) -> tuple[int, bool]:
        """Epsilon-greedy: a uniform action over the block's ``block + 1`` choices, else argmax Q."""
        explore = bool(torch.rand((), generator=self.generator) < self.epsilon)
        if explore:
            return int(torch.randint(0, block + 1, (), generator=self.generator)), True
        with torch.no_grad():
            q = self.q.block_q(torch.tensor(state, dtype=torch.float32), block)
        return int(torch.argmax(q)), False

    def features(self, tie_map: Sequence[int], host: PolicyHost) -> list[float]:
        """The Q network's input: the tie map as floats, plus step / total steps with ``progress_state``."""
        out = [float(v) for v in tie_map]
        if self.config.progress_state:
            out.append(host.step / max(1, host.total_steps))
        return out

    def _decide(self, host: PolicyHost) -> TieMap:
        state = tuple(host.tie_map)
        feats = self.features(state, host)
        block = self._next_block()
        action, explore = self.choose(feats, block)
        new_map = apply_action(state, block, action)
        with torch.no_grad():
            q_value = float(self.q.block_q(torch.tensor(feats, dtype=torch.float32), block)[action])
        before = None
        if self.config.reward == "loss-improvement":
            gen_state = self.generator.get_state()
            before = host.batch_loss(self.config.reward_split, self.generator)
            self.generator.set_state(gen_state)  # score the same batch again after the K steps
        self.pending = {"state": list(state), "features": feats, "block": block, "action": action, "explore": explore,
                        "q_value": q_value, "epsilon": self.epsilon, "episode": self.episode,
                        "step": host.step, "before": before, "tie_map": list(new_map)}
        return new_map

    def reward(self, ce: float, ce_before: float | None, tie_map: Sequence[int], switched: bool = False) -> float:
        """Paper: clip(-exp(CE), -clip, clip). Extensions: loss improvement, parameter penalty, switch cost."""
        if self.config.reward == "loss-improvement":
            assert ce_before is not None
            r = ce_before - ce
        else:
            r = -math.exp(min(ce, 50.0))
            r = max(-self.config.reward_clip, min(self.config.reward_clip, r))
        if self.config.param_penalty:
            r -= self.config.param_penalty * unique_blocks(tie_map) / self.n_layer
        if switched:
            r -= self.config.switch_cost
        return r

    def _finish_transition(self, host: PolicyHost) -> None:
        p = self.pending
        assert p is not None
        ce = host.batch_loss(self.config.reward_split, self.generator)
        next_state = list(host.tie_map)
        r = self.reward(ce, p["before"], next_state, switched=list(p["tie_map"]) != list(p["state"]))
        loss, target = (math.nan, math.nan)
        if self.config.learn:
            loss, target = self.learn(p.get("features", p["state"]), p["block"], p["action"], r,
                                      self.features(next_state, host))
        self.pending = None
        host.emit(DecisionEvent(p["step"], {
            "episode": p["episode"], "block": p["block"], "action": p["action"], "explore": p["explore"],
            "epsilon": p["epsilon"], "q_value": p["q_value"], "reward": r, "reward_ce": ce,
            "td_target": target, "td_loss": loss, "tie_map": p["tie_map"],
            "unique_blocks": unique_blocks(p["tie_map"]), "reward_step": host.step}))

    # ---- learning --------------------------------------------------------------------
    def td_target(self, reward: float, next_state: Sequence[float], block: int, net: QNetwork | None = None) -> float:
        with torch.no_grad():
            q_next = (net or self.q).block_q(torch.tensor(next_state, dtype=torch.float32), block)
        return reward + self.config.gamma * float(q_next.max())

    def learn(self, state: Sequence[float], block: int, action: int, reward: float,
              next_state: Sequence[float]) -> tuple[float, float]:
        """One Q update (MSE to r + gamma * max over the block's slice at the next state). Returns (loss, target)."""
        if self.config.replay_size:
            self.replay.append((list(map(float, state)), block, action, reward, list(map(float, next_state))))
            del self.replay[:-self.config.replay_size]
            n = min(len(self.replay), self.config.replay_batch)
            idx = torch.randint(0, len(self.replay), (n - 1,), generator=self.generator).tolist()
            batch = [self.replay[-1]] + [self.replay[i] for i in idx]  # the newest transition always learns
            net = self.target
        else:
            batch = [(list(map(float, state)), block, action, reward, list(map(float, next_state)))]
            net = self.q
        preds, targets = [], []
        for s, b, a, r, s2 in batch:
            preds.append(self.q.block_q(torch.tensor(s, dtype=torch.float32), b)[a])
            targets.append(self.td_target(r, s2, b, net))
        pred = torch.stack(preds)
        target = torch.tensor(targets, dtype=torch.float32)
        loss = F.mse_loss(pred, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        if self.config.replay_size and self.updates % self.config.target_sync == 0:
            self.target.load_state_dict(self.q.state_dict())
        return float(loss.detach()), float(targets[0])

    # ---- checkpoints -----------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors = {f"q/{k}": v for k, v in self.q.state_dict().items()}
        tensors.update({f"target/{k}": v for k, v in self.target.state_dict().items()})
        tensors.update({f"qopt/{k}": v for k, v in optimizer_state_tensors(self.optimizer,
                                                                           self.q.named_parameters()).items()})
        tensors["rng"] = self.generator.get_state()
        state = {"config": self.config.to_dict(), "epsilon": self.epsilon, "episode": self.episode,
                 "block": self.block, "updates": self.updates, "pending": self.pending, "replay": self.replay}
        return state, tensors

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.q.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("q/")})
        self.target.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("target/")})
        load_optimizer_state(self.optimizer, self.q.named_parameters(),
                             {k[5:]: v for k, v in tensors.items() if k.startswith("qopt/")})
        self.generator.set_state(tensors["rng"])
        self.epsilon = float(state["epsilon"])
        self.episode = int(state["episode"])
        self.block = int(state["block"])
        self.updates = int(state["updates"])
        self.pending = state["pending"]
        self.replay = [tuple(t) for t in state["replay"]]  # type: ignore[misc]


def _dlt(method: MethodConfig, n_layer: int, seed: int) -> DLTAgent:
    return DLTAgent(n_layer, method.agent, seed=seed, name="dlt")


def _random(method: MethodConfig, n_layer: int, seed: int) -> DLTAgent:
    """The control: the same actions and schedule, epsilon 1 forever, no learning."""
    config = dataclasses.replace(method.agent, epsilon_start=1.0, epsilon_decay=1.0, epsilon_min=1.0, learn=False)
    return DLTAgent(n_layer, config, seed=seed, name="random")


SPECS = (
    MethodSpec("dlt", _dlt, "the paper's Q-learning agent (settings: MethodConfig.agent)", agent=True),
    MethodSpec("random", _random, "the agent's control: the same sweep with uniformly random actions", agent=True),
)
