"""Config dataclasses: one serialisation for every section, nested sections, clear refusals."""

import dataclasses
import json

import pytest

from dyntie_core import AgentConfig, ConfigError, MethodConfig, RunConfig, preset_config
from dyntie_core.config import merge_config_dicts


def test_a_run_config_round_trips_through_json_with_its_nested_agent():
    config = preset_config("demo").replace(
        method=MethodConfig("dlt", agent=AgentConfig(k_steps=8, reward="loss-improvement")))
    again = RunConfig.from_dict(json.loads(config.to_json()))
    assert again == config and isinstance(again.method.agent, AgentConfig)
    assert again.method.agent.changed() == {"k_steps": 8, "reward": "loss-improvement"}


def test_missing_keys_take_defaults_and_unknown_keys_are_refused():
    assert RunConfig.from_dict({"train": {"steps": 5}}).train == dataclasses.replace(RunConfig().train, steps=5)
    with pytest.raises(ConfigError, match="unknown TrainConfig field.*stpes"):
        RunConfig.from_dict({"train": {"stpes": 5}})
    with pytest.raises(ConfigError, match="unknown RunConfig field.*optim"):
        RunConfig.from_dict({"optim": {}})
    with pytest.raises(ConfigError, match="GPTConfig must be a JSON object"):
        RunConfig.from_dict({"model": [1, 2]})


def test_configs_written_before_the_typed_agent_still_load():
    old = {"name": "dlt", "n_unique": None, "schedule": None, "options": {"k_steps": 2}}
    assert MethodConfig.from_dict(old) == MethodConfig("dlt", agent=AgentConfig(k_steps=2))


def test_merge_is_deep_and_later_layers_win():
    merged = merge_config_dicts({"model": {"n_layer": 4, "n_head": 2}}, {"model": {"n_layer": 6}, "train": {}})
    assert merged == {"model": {"n_layer": 6, "n_head": 2}, "train": {}}


def test_preset_overrides_are_partial_sections():
    config = preset_config("nanogpt-shakespeare-cpu", train={"steps": 10})
    assert config.train.steps == 10 and config.train.warmup_steps == 100 and config.model.block_size == 64
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose from debug"):
        preset_config("nope")
