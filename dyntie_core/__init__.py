"""dyntie_core: the Dynamic Layer Tying engine (model, tie map, policies, memory meter, data, loop, CLI).

The subpackages a user reaches for are attributes after ``import dyntie_core``:
``schemes``, ``policies``, ``presets``, ``memory``, ``data``, ``loop``, ``events``,
``rundir``, ``compare``, ``plots``. See docs/ARCHITECTURE.md for the layers.
"""

from . import compare, data, events, loop, memory, plots, policies, presets, rundir, schemes, tying
from ._version import __version__ as __version__  # re-exported: the one source of the version
from .config import AgentConfig, ConfigError, DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig
from .loop import Trainer
from .model import Block, TiedGPT
from .optim import configure_optimizer, optimizer_state_bytes, sync_optimizer
from .presets import preset_config
from .rundir import RunDir
from .tie_stack import TieChange
from .tying import apply_action, count_parameters, identity_map, resolve_roots, unique_blocks, validate_tie_map

__all__ = [
    "AgentConfig",
    "Block",
    "ConfigError",
    "DataConfig",
    "GPTConfig",
    "MethodConfig",
    "RunConfig",
    "RunDir",
    "TieChange",
    "TiedGPT",
    "TrainConfig",
    "Trainer",
    "apply_action",
    "compare",
    "configure_optimizer",
    "count_parameters",
    "data",
    "events",
    "identity_map",
    "loop",
    "memory",
    "optimizer_state_bytes",
    "plots",
    "policies",
    "preset_config",
    "presets",
    "resolve_roots",
    "rundir",
    "schemes",
    "sync_optimizer",
    "tying",
    "unique_blocks",
    "validate_tie_map",
]
