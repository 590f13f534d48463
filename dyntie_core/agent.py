"""The DLT agent (METHOD.md section 4) and its controls, as tie policies.

Online one-step Q-learning. The state is the tie map as floats; the Q network maps it
to L(L+1)/2 outputs, block i owning the i+1 outputs from i(i+1)/2 (output j < i: "tie
to j", output i: "independent"). An episode sweeps blocks 1..L-1; each decision is
followed by K training steps, then a reward and one Q update. Every default below is
the paper preset; each extension is off until asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import _from_dict
from .events import DecisionEvent
from .tying import TieMap, unique_blocks, validate_tie_map

REWARDS = ("clipped-ppl", "loss-improvement")


@dataclass
class AgentConfig:
    """The agent's settings; defaults are the paper preset.

    Extensions (off by default):
    - ``reward_split="valid"``: score the reward on a validation batch instead of a training batch.
    - ``reward="loss-improvement"``: reward = drop in cross-entropy on one batch across the K steps
      (scored before the action and after), instead of the saturating clipped perplexity.
    - ``param_penalty=lambda``: subtract ``lambda * unique_blocks / L`` from the reward (rewards tying).
    - ``replay_size>0``: a replay buffer (``replay_batch`` samples per update) with a target network
      synced every ``target_sync`` updates.
    """

    k_steps: int = 4
    hidden: int = 128
    gamma: float = 0.99
    lr: float = 1e-3
    weight_decay: float = 0.01
    epsilon_start: float = 1.0
    epsilon_decay: float = 0.95
    epsilon_min: float = 0.01
    reward: str = "clipped-ppl"
    reward_clip: float = 10.0
    reward_split: str = "train"
    param_penalty: float = 0.0
    replay_size: int = 0
    replay_batch: int = 32
    target_sync: int = 50
    learn: bool = True

    def __post_init__(self) -> None:
        if self.k_steps < 1:
            raise ValueError(f"AgentConfig.k_steps must be >= 1, got {self.k_steps}")
        if not 0.0 <= self.epsilon_min <= self.epsilon_start <= 1.0:
            raise ValueError("AgentConfig needs 0 <= epsilon_min <= epsilon_start <= 1")
        if not 0.0 < self.epsilon_decay <= 1.0:
            raise ValueError(f"AgentConfig.epsilon_decay must be in (0, 1], got {self.epsilon_decay}")
        if self.reward not in REWARDS:
            raise ValueError(f"AgentConfig.reward must be one of {REWARDS}, got {self.reward!r}")
        if self.reward_split not in ("train", "valid"):
            raise ValueError(f"AgentConfig.reward_split must be 'train' or 'valid', got {self.reward_split!r}")
        if self.replay_size < 0 or self.replay_batch < 1 or self.target_sync < 1:
            raise ValueError("AgentConfig.replay_size must be >= 0, replay_batch and target_sync >= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        return _from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slice_start(block: int) -> int:
    """First Q output of ``block``'s slice (it owns ``block + 1`` outputs)."""
    return block * (block + 1) // 2


class QNetwork(nn.Module):
    """Linear(L, hidden) - ReLU - Linear(hidden, L(L+1)/2)."""

    def __init__(self, n_layer: int, hidden: int) -> None:
        super().__init__()
        self.n_layer = n_layer
        self.fc1 = nn.Linear(n_layer, hidden)
        self.fc2 = nn.Linear(hidden, n_layer * (n_layer + 1) // 2)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(state)))

    def block_q(self, state: torch.Tensor, block: int) -> torch.Tensor:
        """The ``block + 1`` Q values of one block's actions (last dim)."""
        s = slice_start(block)
        return self(state)[..., s:s + block + 1]


class AgentHost(Protocol):
    """What the agent needs from the training loop (a ``Trainer`` provides it; tests fake it)."""

    step: int

    @property
    def tie_map(self) -> TieMap: ...

    def batch_loss(self, split: str, generator: torch.Generator) -> float: ...

    def emit(self, event: DecisionEvent) -> None: ...


def apply_action(tie_map: Sequence[int], block: int, action: int) -> TieMap:
    """Action j < block ties ``block`` to j; action == block makes it independent."""
    if not 0 <= action <= block:
        raise ValueError(f"action {action} is not valid for block {block} (0..{block})")
    new = list(tie_map)
    new[block] = action
    return tuple(new)


class DLTAgent:
    """Q-learning tie policy. ``random`` is the same agent with epsilon fixed at 1 and no learning."""

    def __init__(self, n_layer: int, config: AgentConfig | None = None, seed: int = 0, name: str = "dlt") -> None:
        if n_layer < 2:
            raise ValueError("the DLT agent needs at least 2 blocks")
        self.name = name
        self.n_layer = n_layer
        self.config = config or AgentConfig()
        self.generator = torch.Generator().manual_seed(seed + 7919)
        with torch.random.fork_rng():
            torch.manual_seed(seed + 104729)
            self.q = QNetwork(n_layer, self.config.hidden)
        self.target = QNetwork(n_layer, self.config.hidden)
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

    def on_step(self, step: int, trainer: AgentHost) -> Sequence[int] | None:
        if step % self.config.k_steps:
            return None
        if self.pending is not None:
            self._finish_transition(trainer)
        return self._decide(trainer)

    # ---- decisions -------------------------------------------------------------------
    def _next_block(self) -> int:
        if self.block >= self.n_layer - 1:
            self.block = 0
            self.episode += 1
            self.epsilon = max(self.config.epsilon_min, self.epsilon * self.config.epsilon_decay)
        self.block += 1
        return self.block

    def choose(self, state: TieMap, block: int) -> tuple[int, bool]:
        """Epsilon-greedy: a uniform action over the block's ``block + 1`` choices, else argmax Q."""
        explore = bool(torch.rand((), generator=self.generator) < self.epsilon)
        if explore:
            return int(torch.randint(0, block + 1, (), generator=self.generator)), True
        with torch.no_grad():
            q = self.q.block_q(torch.tensor(state, dtype=torch.float32), block)
        return int(torch.argmax(q)), False

    def _decide(self, host: AgentHost) -> TieMap:
        state = tuple(host.tie_map)
        block = self._next_block()
        action, explore = self.choose(state, block)
        new_map = apply_action(state, block, action)
        with torch.no_grad():
            q_value = float(self.q.block_q(torch.tensor(state, dtype=torch.float32), block)[action])
        before = None
        if self.config.reward == "loss-improvement":
            gen_state = self.generator.get_state()
            before = host.batch_loss(self.config.reward_split, self.generator)
            self.generator.set_state(gen_state)  # score the same batch again after the K steps
        self.pending = {"state": list(state), "block": block, "action": action, "explore": explore,
                        "q_value": q_value, "epsilon": self.epsilon, "episode": self.episode,
                        "step": host.step, "before": before, "tie_map": list(new_map)}
        return new_map

    def reward(self, ce: float, ce_before: float | None, tie_map: Sequence[int]) -> float:
        """Paper: clip(-exp(CE), -clip, clip). Extensions: loss improvement, parameter penalty."""
        if self.config.reward == "loss-improvement":
            assert ce_before is not None
            r = ce_before - ce
        else:
            r = -math.exp(min(ce, 50.0))
            r = max(-self.config.reward_clip, min(self.config.reward_clip, r))
        if self.config.param_penalty:
            r -= self.config.param_penalty * unique_blocks(tie_map) / self.n_layer
        return r

    def _finish_transition(self, host: AgentHost) -> None:
        p = self.pending
        assert p is not None
        ce = host.batch_loss(self.config.reward_split, self.generator)
        next_state = list(host.tie_map)
        r = self.reward(ce, p["before"], next_state)
        loss, target = (math.nan, math.nan)
        if self.config.learn:
            loss, target = self.learn(p["state"], p["block"], p["action"], r, next_state)
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
        for i, p in enumerate(self.q.parameters()):
            for key, value in self.optimizer.state.get(p, {}).items():
                tensors[f"qopt/{i}/{key}"] = value
        tensors["rng"] = self.generator.get_state()
        state = {"config": self.config.to_dict(), "epsilon": self.epsilon, "episode": self.episode,
                 "block": self.block, "updates": self.updates, "pending": self.pending, "replay": self.replay}
        return state, tensors

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.q.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("q/")})
        self.target.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("target/")})
        params = list(self.q.parameters())
        self.optimizer.state.clear()
        for key, value in tensors.items():
            if key.startswith("qopt/"):
                _, i, name = key.split("/")
                self.optimizer.state[params[int(i)]][name] = value.clone()
        self.generator.set_state(tensors["rng"])
        self.epsilon = float(state["epsilon"])
        self.episode = int(state["episode"])
        self.block = int(state["block"])
        self.updates = int(state["updates"])
        self.pending = state["pending"]
        self.replay = [tuple(t) for t in state["replay"]]  # type: ignore[misc]


def random_tie_map(n_layer: int, n_unique: int, seed: int) -> TieMap:
    """A random map with exactly ``n_unique`` roots: block 0 plus ``n_unique - 1`` random blocks;
    every other block ties to a uniformly chosen earlier root."""
    if not 1 <= n_unique <= n_layer:
        raise ValueError(f"n_unique must be in [1, {n_layer}], got {n_unique}")
    g = torch.Generator().manual_seed(seed)
    others = (torch.randperm(n_layer - 1, generator=g)[: n_unique - 1] + 1).tolist()
    roots = sorted([0, *others])
    tie = []
    for i in range(n_layer):
        if i in roots:
            tie.append(i)
        else:
            earlier = [r for r in roots if r < i]
            tie.append(earlier[int(torch.randint(0, len(earlier), (), generator=g))])
    return validate_tie_map(tie, n_layer)
