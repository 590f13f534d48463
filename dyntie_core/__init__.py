"""dyntie_core: the Dynamic Layer Tying engine (model, tie map, memory meter, data, loop, CLI)."""

from .config import ConfigError, DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig
from .model import Block, TieChange, TiedGPT
from .optim import configure_optimizer, optimizer_state_bytes, sync_optimizer
from .tying import count_parameters, identity_map, resolve_roots, unique_blocks, validate_tie_map

__version__ = "0.1.0"

__all__ = [
    "Block",
    "ConfigError",
    "DataConfig",
    "GPTConfig",
    "MethodConfig",
    "RunConfig",
    "TieChange",
    "TiedGPT",
    "TrainConfig",
    "configure_optimizer",
    "count_parameters",
    "identity_map",
    "optimizer_state_bytes",
    "resolve_roots",
    "sync_optimizer",
    "unique_blocks",
    "validate_tie_map",
]
