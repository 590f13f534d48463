"""Configuration dataclasses.

Every run is described by plain dataclasses that round-trip through JSON, so a run
directory's ``config.json`` is enough to rebuild the run exactly. Each field carries a
``help`` text in its metadata: the CLI builds its flags and ``--help`` from it, so an
option is described once, here. Named recipes (the paper's, nanoGPT's CPU one, the demo)
live in ``presets.py``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="Serializable")

TIE_MODES = ("follow", "share")
ACTIVATIONS = ("gelu", "gelu_tanh")
NORM_POSITIONS = ("pre", "post")
RELAXATIONS = ("none", "norms", "lora", "mix")
LR_SCHEDULES = ("constant", "cosine")
DIVERGENCE = ("stop", "skip")
TOKENIZERS = ("char", "bpe", "gpt2")
REWARDS = ("clipped-ppl", "loss-improvement")
REWARD_SPLITS = ("train", "valid")
DTYPES = ("float32", "bfloat16")
UNTIE_MOMENTS = ("fresh", "carry")
PROGRESSIVE_CRITERIA = ("cosine", "loss")


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def option(default: Any = dataclasses.MISSING, help: str = "", flag: str | None = None,
           **kwargs: Any) -> Any:
    """A dataclass field with a help text (and optionally its own CLI flag name)."""
    metadata = {"help": help} | ({"flag": flag} if flag else {})
    return field(default=default, metadata=metadata, **kwargs)


class Serializable:
    """``to_dict``/``from_dict`` for config dataclasses: nested sections, unknown keys rejected
    (a typo in a config file must not pass silently)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook for reading configs written by older versions."""
        return data

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
        data = cls._upgrade(dict(data))
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            kind = hints[key]
            if isinstance(kind, type) and issubclass(kind, Serializable):
                value = kind.from_dict(value)
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None


@dataclass
class GPTConfig(Serializable):
    """Shape of the transformer and how tied blocks behave.

    ``tie_mode``: "follow" (tied positions run the root's weights as constants: the
    authors' behaviour) or "share" (ALBERT-style: gradients from every position are
    summed into the root).
    """

    n_layer: int = option(12, "number of transformer blocks L")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(128, "model width")
    block_size: int = option(128, "context length in tokens")
    vocab_size: int = 4096  # set from the tokenizer by the loop, so not a flag
    dropout: float = option(0.0, "dropout probability")
    bias: bool = option(True, "biases in linear layers and LayerNorms")
    tie_mode: str = option("follow", "follow: tied positions run the root's weights as constants (the paper's "
                           "code); share: gradients from all positions are summed into the root (ALBERT-style)")
    activation: str = option("gelu", "MLP activation: gelu or gelu_tanh (GPT-2's approximation)")
    norm_position: str = option("pre", "pre (GPT-2) or post (BERT-shaped) LayerNorm")
    relax: str = option("none", "relaxed ties: none; norms (each tied position keeps its own LayerNorm gains and "
                        "biases, 4 x width trainable parameters, while attention and MLP come from its root); lora "
                        "(its norms plus rank-r deltas on the root's four weight matrices); mix (soft sharing: a "
                        "learned softmax mixture of the roots before it, L logits; the soft method hardens it)")
    relax_rank: int = option(4, "rank r of the LoRA deltas of relax=lora")

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            value = getattr(self, name)
            _check(_is_int(value) and value > 0, f"GPTConfig.{name} must be a positive int, got {value!r}")
        _check(self.n_embd % self.n_head == 0,
               f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        _check(0.0 <= self.dropout < 1.0, f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        _check(self.tie_mode in TIE_MODES, f"GPTConfig.tie_mode must be one of {TIE_MODES}, got {self.tie_mode!r}")
        _check(self.activation in ACTIVATIONS,
               f"GPTConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        _check(self.relax in RELAXATIONS, f"GPTConfig.relax must be one of {RELAXATIONS}, got {self.relax!r}")
        _check(_is_int(self.relax_rank) and 1 <= self.relax_rank <= self.n_embd,
               f"GPTConfig.relax_rank must be an int in [1, n_embd], got {self.relax_rank!r}")
        _check(self.norm_position in NORM_POSITIONS,
               f"GPTConfig.norm_position must be one of {NORM_POSITIONS}, got {self.norm_position!r}")


@dataclass
class TrainConfig(Serializable):
    """Optimisation and evaluation settings.

    The defaults are a CPU-scale recipe (lr 1e-3), not the paper's: the paper trained with
    AdamW lr 1e-4, constant; its recipes are in ``presets.py`` (``--preset paper-gpt2-48``).
    """

    steps: int = option(1000, "optimizer steps")
    episodes: int | None = option(None, "agent episodes instead of --steps: steps = episodes x (L - 1) x K (the same "
                                  "step count for every method of a comparison)")
    batch_size: int = option(16, "sequences per step")
    lr: float = option(1e-3, "peak AdamW learning rate")
    min_lr: float = option(1e-4, "final learning rate of the cosine schedule")
    lr_schedule: str = option("constant", "constant or cosine")
    warmup_steps: int = option(0, "linear warmup steps")
    weight_decay: float = option(0.01, "AdamW weight decay (matrices only)")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    grad_clip: float = option(1.0, "gradient-norm clip (0 disables)")
    eval_interval: int = option(100, "steps between validation evaluations")
    eval_tokens: int = option(65536, "validation tokens per evaluation (contiguous windows)")
    checkpoint_interval: int = option(0, "steps between periodic checkpoints (0: only best and last)")
    keep_checkpoints: int = option(3, "periodic checkpoints kept, the newest (0 keeps all); best and last are "
                                   "always kept")
    on_divergence: str = option("stop", "a non-finite loss or gradient norm: stop (keep the last good checkpoint "
                                "and metrics, mark the run diverged) or skip (drop that step's update)")
    untie_moments: str = option("fresh", "AdamW state of a block that becomes independent: fresh (the paper) or "
                                "carry (a copy of its root's moments, like its weights)")
    mix_lr_scale: float = option(30.0, "learning-rate multiplier of soft sharing's mixture logits (relax=mix): "
                                 "a few scalars per position that must move by about 1 within the run")
    probe_transitions: bool = option(False, "log the loss of a fixed validation batch just before and after every "
                                     "tie change (what each transition costs; two extra forward passes)")
    seed: int = option(1337, "random seed (model init, batches, dropout, policies)")
    device: str = option("cpu", "torch device, e.g. cpu or cuda (under torchrun, cuda means cuda:LOCAL_RANK)")
    dtype: str = option("float32", "float32, or bfloat16: bf16 autocast for the forward and backward, with fp32 "
                        "master weights, gradients and AdamW state (docs/SCALING.md)")
    dist_timeout_s: int = option(600, "under torchrun: seconds a collective may wait before the job fails "
                                 "(covers rank 0's evaluations)")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_interval", "eval_tokens"):
            value = getattr(self, name)
            _check(_is_int(value) and value > 0, f"TrainConfig.{name} must be a positive int, got {value!r}")
        _check(self.episodes is None or (_is_int(self.episodes) and self.episodes > 0),
               f"TrainConfig.episodes must be a positive int or None, got {self.episodes!r}")
        _check(self.untie_moments in UNTIE_MOMENTS,
               f"TrainConfig.untie_moments must be one of {UNTIE_MOMENTS}, got {self.untie_moments!r}")
        _check(self.dtype in DTYPES, f"TrainConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        _check(_is_int(self.dist_timeout_s) and self.dist_timeout_s > 0,
               f"TrainConfig.dist_timeout_s must be a positive int, got {self.dist_timeout_s!r}")
        _check(self.on_divergence in DIVERGENCE,
               f"TrainConfig.on_divergence must be one of {DIVERGENCE}, got {self.on_divergence!r}")
        for name in ("warmup_steps", "checkpoint_interval", "keep_checkpoints"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 0, f"TrainConfig.{name} must be an int >= 0, got {value!r}")
        _check(self.lr > 0, f"TrainConfig.lr must be > 0, got {self.lr}")
        _check(0 <= self.min_lr <= self.lr, f"TrainConfig.min_lr must be in [0, lr], got {self.min_lr}")
        _check(self.lr_schedule in LR_SCHEDULES,
               f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        _check(self.mix_lr_scale > 0, f"TrainConfig.mix_lr_scale must be > 0, got {self.mix_lr_scale}")
        _check(self.grad_clip >= 0, f"TrainConfig.grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "TrainConfig.beta1/beta2 must be in [0, 1)")


@dataclass
class DataConfig(Serializable):
    """Where the text comes from and how it becomes tokens.

    ``dataset``: "pydoc" (bundled with Python, always offline), a local path, or a hub name.
    ``tokenizer``: "char", "bpe" (byte-level BPE trained on the training split) or "gpt2"
    (needs a local ``tokenizer.json``, see ``tokenizer_path``).
    """

    dataset: str = option("pydoc", "pydoc (offline default), a .txt file, a directory with train/valid/test "
                          "files, or a hub name (wikitext-2, wikitext-103, lambada, lm1b, tiny-shakespeare)")
    tokenizer: str = option("bpe", "char, bpe (byte-level BPE trained on the training split) or gpt2")
    bpe_vocab_size: int = option(4096, "BPE vocabulary size", flag="--vocab-size")
    tokenizer_path: str | None = option(None, "for --tokenizer gpt2: a directory with GPT-2's encoder.json + "
                                        "vocab.bpe (or vocab.json + merges.txt), or a tokenizer.json")
    cache_dir: str = option("data/cache", "where trained tokenizers are cached")

    def __post_init__(self) -> None:
        _check(self.tokenizer in TOKENIZERS,
               f"DataConfig.tokenizer must be 'char', 'bpe' or 'gpt2', got {self.tokenizer!r}")
        _check(_is_int(self.bpe_vocab_size) and self.bpe_vocab_size >= 260,
               f"DataConfig.bpe_vocab_size must be an int >= 260 (256 bytes + specials), got {self.bpe_vocab_size!r}")


@dataclass
class AgentConfig(Serializable):
    """The DLT agent's settings (METHOD.md section 4); the defaults are the paper preset.

    Extensions (off by default):
    - ``reward_split="valid"``: score the reward on a validation batch instead of a training batch.
    - ``reward="loss-improvement"``: reward = drop in cross-entropy on one batch across the K steps
      (scored before the action and after), instead of the saturating clipped perplexity.
    - ``param_penalty=lambda``: subtract ``lambda * unique_blocks / L`` from the reward (rewards tying).
    - ``replay_size>0``: a replay buffer (``replay_batch`` samples per update) with a target network
      synced every ``target_sync`` updates.
    - ``commit_after=N``: after N full sweeps the map is frozen (no more decisions) for the rest of the run.
    - ``switch_cost=c``: an action that changes the map is rewarded ``c`` less (a price on churn).
    - ``progress_state=True``: the Q network also sees step / total steps (so it can act differently late).
    """

    k_steps: int = option(4, "training steps between two decisions (K)")
    hidden: int = option(128, "Q-network hidden width")
    gamma: float = option(0.99, "discount factor")
    lr: float = option(1e-3, "Q-network AdamW learning rate")
    weight_decay: float = option(0.01, "Q-network AdamW weight decay")
    epsilon_start: float = option(1.0, "initial exploration rate")
    epsilon_decay: float = option(0.95, "epsilon multiplier after every episode")
    epsilon_min: float = option(0.01, "epsilon floor")
    reward: str = option("clipped-ppl", "clipped-ppl (the paper's -exp(CE) clipped) or loss-improvement")
    reward_clip: float = option(10.0, "clip of the clipped-ppl reward")
    reward_split: str = option("train", "split the reward batch comes from: train (paper) or valid")
    param_penalty: float = option(0.0, "lambda: subtract lambda * unique_blocks / L from the reward")
    switch_cost: float = option(0.0, "subtract this from the reward of an action that changed the map (against "
                                "churn)")
    replay_size: int = option(0, "replay buffer size (0: online updates, as the paper)")
    replay_batch: int = option(32, "transitions per update when replaying")
    target_sync: int = option(50, "updates between target-network syncs when replaying")
    learn: bool = option(True, "update the Q network (False for the random control)")
    progress_state: bool = option(False, "append training progress (step / total steps) to the agent's state")
    commit_after: int = option(0, "episodes after which the map is frozen for the rest of the run (0: never; "
                               "a commit phase against churn)")

    def __post_init__(self) -> None:
        _check(_is_int(self.k_steps) and self.k_steps >= 1, f"AgentConfig.k_steps must be >= 1, got {self.k_steps}")
        _check(0.0 <= self.epsilon_min <= self.epsilon_start <= 1.0,
               "AgentConfig needs 0 <= epsilon_min <= epsilon_start <= 1")
        _check(0.0 < self.epsilon_decay <= 1.0,
               f"AgentConfig.epsilon_decay must be in (0, 1], got {self.epsilon_decay}")
        _check(self.reward in REWARDS, f"AgentConfig.reward must be one of {REWARDS}, got {self.reward!r}")
        _check(self.reward_split in REWARD_SPLITS,
               f"AgentConfig.reward_split must be 'train' or 'valid', got {self.reward_split!r}")
        _check(_is_int(self.commit_after) and self.commit_after >= 0,
               f"AgentConfig.commit_after must be an int >= 0, got {self.commit_after!r}")
        _check(self.replay_size >= 0 and self.replay_batch >= 1 and self.target_sync >= 1,
               "AgentConfig.replay_size must be >= 0, replay_batch and target_sync >= 1")

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the paper preset (used in run labels)."""
        default = AgentConfig()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


@dataclass
class ProgressiveConfig(Serializable):
    """When a progressive method (``shrink``, ``grow``, ``soft``) changes the map, as fractions of the step budget.

    ``shrink`` starts with every block independent and ties one pair at a time, evenly spaced
    from ``start`` to ``end`` of the run, until ``n_unique`` blocks remain; ``grow`` starts with
    every block tied to block 0 and unties one at a time until ``n_unique`` exist. ``soft`` anneals its
    mixtures from ``start`` and is hard from ``end``. The rest of the run trains the final map.
    """

    start: float = option(0.25, "fraction of the steps before the first tie")
    end: float = option(0.75, "fraction of the steps by which the target unique-block count is reached")
    criterion: str = option("cosine", "shrink: which pair of roots to tie: cosine (the most similar weights) or "
                            "loss (the tie that raises a training probe batch's loss least)")
    adjacent: bool = option(False, "shrink: only tie neighbouring groups (the roots of consecutive positions), so "
                            "every map stays contiguous, the shape that trains best in share mode (docs/STUDY.md)")

    def __post_init__(self) -> None:
        _check(0.0 <= self.start <= self.end <= 1.0,
               f"ProgressiveConfig needs 0 <= start <= end <= 1, got start={self.start}, end={self.end}")
        _check(self.criterion in PROGRESSIVE_CRITERIA,
               f"ProgressiveConfig.criterion must be one of {PROGRESSIVE_CRITERIA}, got {self.criterion!r}")

    def changed(self) -> dict[str, Any]:
        default = ProgressiveConfig()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


@dataclass
class MethodConfig(Serializable):
    """Which tie policy drives the run (see ``dyntie_core.policies`` for the names).

    ``n_unique``: unique blocks, for the schemes that take it. ``schedule``: for "manual",
    a list of [step, tie_map] pairs. ``agent``: the DLT agent's settings (dlt and random).
    ``progressive``: when ``shrink``, ``grow`` and ``soft`` change the map.
    """

    name: str = "vanilla"
    n_unique: int | None = None
    schedule: list[list[Any]] | None = None
    agent: AgentConfig = field(default_factory=AgentConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        if "options" in data:  # before 0.2 the agent's settings were an untyped "options" dict
            data.setdefault("agent", data.pop("options") or {})
        return data


@dataclass
class RunConfig(Serializable):
    """Everything a run needs; stored as ``config.json`` in the run directory."""

    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(read_json_object(path, "config file"))

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)

    def with_episodes(self) -> RunConfig:
        """Resolve ``train.episodes`` into ``train.steps``: episodes x (L - 1) decisions x K steps each.

        Resolved once, from this config's agent K, so every method compared against it trains the
        same number of steps."""
        episodes = self.train.episodes
        if episodes is None:
            return self
        steps = episodes * max(1, self.model.n_layer - 1) * self.method.agent.k_steps
        return self.replace(train=dataclasses.replace(self.train, steps=steps))


SECTIONS: dict[str, type[Serializable]] = {"model": GPTConfig, "train": TrainConfig, "data": DataConfig,
                                           "method": MethodConfig}


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, with clear errors for a missing file or bad JSON."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


def resolve_layers(*layers: dict[str, Any]) -> RunConfig:
    """A ``RunConfig`` from partial config dicts, later layers winning key by key.

    A layer that sets ``train.steps`` without ``train.episodes`` overrides an earlier layer's
    episodes (an explicit step budget wins); episodes are then resolved into steps."""
    merged = merge_config_dicts(*layers)
    episodes = None
    for layer in layers:
        train = layer.get("train", {})
        if "episodes" in train:
            episodes = train["episodes"]
        elif "steps" in train:
            episodes = None
    merged.setdefault("train", {})["episodes"] = episodes
    return RunConfig.from_dict(merged).with_episodes()


def merge_config_dicts(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge partial config dicts; later layers win key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge_config_dicts(merged[key], value)
            else:
                merged[key] = value
    return merged
