"""Configuration dataclasses.

Every run is described by plain dataclasses that round-trip through JSON, so a run
directory's ``config.json`` is enough to rebuild the run exactly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TIE_MODES = ("follow", "share")
ACTIVATIONS = ("gelu", "gelu_tanh")
NORM_POSITIONS = ("pre", "post")
LR_SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a dataclass from a dict, rejecting unknown keys (typos must not pass silently)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    return cls(**data)


@dataclass
class GPTConfig:
    """Shape of the transformer and how tied blocks behave.

    ``tie_mode``: "follow" (tied positions run the root's weights as constants: the
    authors' behaviour) or "share" (ALBERT-style: gradients from every position are
    summed into the root).
    """

    n_layer: int = 12
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    vocab_size: int = 4096
    dropout: float = 0.0
    bias: bool = True
    tie_mode: str = "follow"
    activation: str = "gelu"
    norm_position: str = "pre"

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                   f"GPTConfig.{name} must be a positive int, got {value!r}")
        _check(self.n_embd % self.n_head == 0,
               f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        _check(0.0 <= self.dropout < 1.0, f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        _check(self.tie_mode in TIE_MODES, f"GPTConfig.tie_mode must be one of {TIE_MODES}, got {self.tie_mode!r}")
        _check(self.activation in ACTIVATIONS,
               f"GPTConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        _check(self.norm_position in NORM_POSITIONS,
               f"GPTConfig.norm_position must be one of {NORM_POSITIONS}, got {self.norm_position!r}")

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> GPTConfig:
        """Named shapes: the paper's GPT-2 runs, a BERT-base-shaped variant, and small debug sizes."""
        presets: dict[str, dict[str, Any]] = {
            "debug": dict(n_layer=4, n_head=2, n_embd=32, block_size=32, vocab_size=256),
            "small": dict(n_layer=12, n_head=4, n_embd=128, block_size=128, vocab_size=4096),
            "nanogpt-shakespeare-cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64,
                                            vocab_size=65, dropout=0.0),
            "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257,
                         activation="gelu_tanh"),
            "paper-gpt2-48": dict(n_layer=48, n_head=16, n_embd=1600, block_size=256,
                                  vocab_size=50257, dropout=0.2),
            "paper-gpt2-12": dict(n_layer=12, n_head=16, n_embd=1600, block_size=256,
                                  vocab_size=50257, dropout=0.2),
            "bert-base": dict(n_layer=12, n_head=12, n_embd=768, block_size=512, vocab_size=30522,
                              dropout=0.1, norm_position="post"),
        }
        if name not in presets:
            raise ConfigError(f"unknown model preset {name!r}; choose from {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        return _from_dict(cls, data)


@dataclass
class TrainConfig:
    """Optimisation and evaluation settings (defaults follow the paper's constant-LR AdamW)."""

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_tokens: int = 65536
    checkpoint_interval: int = 0
    seed: int = 1337
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_interval", "eval_tokens"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0, f"TrainConfig.{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "checkpoint_interval"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 0, f"TrainConfig.{name} must be an int >= 0, got {value!r}")
        _check(self.lr > 0, f"TrainConfig.lr must be > 0, got {self.lr}")
        _check(0 <= self.min_lr <= self.lr, f"TrainConfig.min_lr must be in [0, lr], got {self.min_lr}")
        _check(self.lr_schedule in LR_SCHEDULES,
               f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        _check(self.grad_clip >= 0, f"TrainConfig.grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "TrainConfig.beta1/beta2 must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)


@dataclass
class DataConfig:
    """Where the text comes from and how it becomes tokens.

    ``dataset``: "pydoc" (bundled with Python, always offline), a local path, or a hub name.
    ``tokenizer``: "char", "bpe" (byte-level BPE trained on the training split) or "gpt2"
    (needs a local ``tokenizer.json``, see ``tokenizer_path``).
    """

    dataset: str = "pydoc"
    tokenizer: str = "bpe"
    bpe_vocab_size: int = 4096
    tokenizer_path: str | None = None
    cache_dir: str = "data/cache"

    def __post_init__(self) -> None:
        _check(self.tokenizer in ("char", "bpe", "gpt2"),
               f"DataConfig.tokenizer must be 'char', 'bpe' or 'gpt2', got {self.tokenizer!r}")
        _check(isinstance(self.bpe_vocab_size, int) and self.bpe_vocab_size >= 260,
               f"DataConfig.bpe_vocab_size must be an int >= 260 (256 bytes + specials), got {self.bpe_vocab_size!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return _from_dict(cls, data)


@dataclass
class MethodConfig:
    """Which tie policy drives the run.

    ``name``: "vanilla", a fixed scheme ("all-shared", "sequence", "cycle", "cycle-rev",
    "mirror") or "manual" (``schedule``: list of [step, tie_map] pairs).
    ``options``: extra settings for policies defined elsewhere (e.g. the DLT agent).
    """

    name: str = "vanilla"
    n_unique: int | None = None
    schedule: list[list[Any]] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodConfig:
        return _from_dict(cls, data)


@dataclass
class RunConfig:
    """Everything a run needs; stored as ``config.json`` in the run directory."""

    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        parts = {"model": GPTConfig, "train": TrainConfig, "data": DataConfig, "method": MethodConfig}
        unknown = sorted(set(data) - set(parts))
        if unknown:
            raise ConfigError(f"unknown RunConfig section(s): {', '.join(unknown)}")
        return cls(**{k: parts[k].from_dict(data.get(k, {})) for k in parts})  # type: ignore[attr-defined]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: str | Path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)
