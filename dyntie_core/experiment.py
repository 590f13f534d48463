"""One experiment, from loose parameters to a finished run directory.

The experiment notebook (``notebooks/experiments/lm.py``), the grid runner and ``compare``
all go through here, so a run is configured, reused, resumed or started the same way
everywhere. Parameters may arrive as strings (papermill's ``-p``/``-r``): mappings are
accepted as YAML/JSON text, numbers as numeric text, and empty values mean "not set".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, RunConfig, resolve_layers
from .data import TokenData
from .distributed import DistContext, init_from_env
from .loop import Trainer
from .policies import check_method
from .presets import get_preset
from .rundir import RunDir


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def as_mapping(value: Any, name: str) -> dict[str, Any]:
    """A dict, or YAML/JSON text of one (papermill passes dicts given with ``-p`` as strings)."""
    if _unset(value):
        return {}
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"parameter {name!r} is not valid YAML/JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"parameter {name!r} must be a mapping (e.g. {{k_steps: 4}}), got {type(value).__name__}")
    return value


def as_int(value: Any, name: str) -> int | None:
    """An int, numeric text, or unset; booleans and fractions are refused."""
    if _unset(value):
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(f"parameter {name!r} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"parameter {name!r} must be an integer, got {value!r}")
    return value


def as_text(value: Any, name: str) -> str | None:
    if _unset(value):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"parameter {name!r} must be text, got {value!r} ({type(value).__name__})")
    return value.strip()


def experiment_config(preset: Any = None, dataset: Any = None, method: Any = None, n_unique: Any = None,
                      agent: Any = None, steps: Any = None, episodes: Any = None, seed: Any = None,
                      device: Any = None, overrides: Any = None) -> RunConfig:
    """A ``RunConfig`` from experiment parameters: the preset, then ``overrides`` (partial sections), then
    the named parameters, each later one winning."""
    preset_name = as_text(preset, "preset")
    layers: list[dict[str, Any]] = [get_preset(preset_name).sections if preset_name else {},
                                    as_mapping(overrides, "overrides")]
    named: dict[str, dict[str, Any]] = {"train": {}, "data": {}, "method": {}}
    for section, key, value in (("data", "dataset", as_text(dataset, "dataset")),
                                ("method", "name", as_text(method, "method")),
                                ("method", "n_unique", as_int(n_unique, "n_unique")),
                                ("train", "steps", as_int(steps, "steps")),
                                ("train", "episodes", as_int(episodes, "episodes")),
                                ("train", "seed", as_int(seed, "seed")),
                                ("train", "device", as_text(device, "device"))):
        if value is not None:
            named[section][key] = value
    agent_settings = as_mapping(agent, "agent")
    if agent_settings:
        named["method"]["agent"] = agent_settings
    config = resolve_layers(*layers, named)
    check_method(config.method)
    return config


def check_same_config(run: RunDir, wanted: RunConfig) -> None:
    """A run directory is reused only for the very same config (the vocabulary comes from the data)."""
    stored = run.read_config().to_dict()  # parsed, so fields added since it was written take their defaults
    expected = wanted.to_dict()
    expected["model"]["vocab_size"] = stored.get("model", {}).get("vocab_size")
    if stored != expected:
        diff = sorted(f"{sec}.{key}" for sec in expected for key in expected[sec]
                      if stored.get(sec, {}).get(key) != expected[sec][key])
        raise ConfigError(f"{run.path} holds a run with a different config ({', '.join(diff)}); "
                          "use another output directory or delete that one")


def run_or_resume(config: RunConfig, run_dir: str | Path, data: TokenData | None = None,
                  on_trainer: Callable[[Trainer], None] | None = None) -> dict[str, Any]:
    """Train ``config`` into ``run_dir``: a finished run there is reused, an interrupted one (same config)
    resumed from its latest checkpoint, anything else started fresh. Returns the summary.

    Under torchrun, rank 0 holds the lock and decides; every rank follows its decision."""
    run = RunDir(run_dir)
    dist = init_from_env(config.train.device, config.train.dist_timeout_s)
    with run.lock() if dist.is_main else contextlib.nullcontext():
        return _run_or_resume(run, config, data, on_trainer, dist)


def _decide(run: RunDir, config: RunConfig) -> tuple[str, Any]:
    """("reuse", summary), ("resume", None), ("fresh", None) or ("error", message) for this run directory."""
    try:
        summary = run.read_summary()
        has_checkpoint = bool(run.resume_candidates())
        if summary is not None or has_checkpoint:
            check_same_config(run, config)
    except ConfigError as exc:
        return "error", str(exc)
    if summary is not None and not summary.get("stopped_early"):
        return "reuse", summary
    return ("resume" if has_checkpoint else "fresh"), None


def _run_or_resume(run: RunDir, config: RunConfig, data: TokenData | None,
                   on_trainer: Callable[[Trainer], None] | None, dist: DistContext) -> dict[str, Any]:
    action, detail = dist.broadcast_object(_decide(run, config) if dist.is_main else None)
    if action == "error":
        raise ConfigError(detail)
    if action == "reuse":
        return detail
    if action == "resume":
        trainer = Trainer.resume(run.path, data=data, dist=dist)
    else:
        trainer = Trainer(config, run_dir=run.path, data=data, dist=dist)
    if on_trainer is not None:
        on_trainer(trainer)
    return trainer.run()
