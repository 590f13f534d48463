import pytest
import torch

from dyntie_core import GPTConfig, TiedGPT, TrainConfig, configure_optimizer, sync_optimizer
from dyntie_core.memory import block_param_count, measure_activations, measure_memory, predict_memory


def _train_steps(model, opt, n=2, batch=4):
    for s in range(n):
        idx = torch.randint(0, model.config.vocab_size, (batch, model.config.block_size),
                            generator=torch.Generator().manual_seed(s))
        opt.zero_grad(set_to_none=True)
        _, loss = model(idx, idx)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("mode", ["follow", "share"])
@pytest.mark.parametrize("tie_map", [(0, 1, 2, 3), (0, 0, 0, 0), (0, 1, 0, 1), (0, 0, 1, 2)])
def test_prediction_matches_measurement(tiny_config, tie_map, mode):
    cfg = GPTConfig(**{**tiny_config.to_dict(), "tie_mode": mode})
    model = TiedGPT(cfg, tie_map)
    opt = configure_optimizer(model, TrainConfig())
    _train_steps(model, opt)
    measured, predicted = measure_memory(model, opt), predict_memory(cfg, tie_map)
    for part in ("params", "grads", "optimizer"):
        assert getattr(measured, part) == pytest.approx(getattr(predicted, part), rel=0.05), part
    assert measured.model_state == pytest.approx(predicted.model_state, rel=0.02)


def test_nothing_leaks_across_tie_changes(tiny_config):
    model = TiedGPT(tiny_config)
    opt = configure_optimizer(model, TrainConfig())
    for tie_map in [(0, 1, 2, 3), (0, 0, 0, 0), (0, 1, 2, 0), (0, 0, 0, 3), (0, 0, 0, 0)]:
        model.set_tie_map(tie_map)
        sync_optimizer(opt, model)
        _train_steps(model, opt)
        measured, floor = measure_memory(model, opt), predict_memory(tiny_config, tie_map)
        assert measured.model_state == pytest.approx(floor.model_state, rel=0.02), tie_map


def test_block_param_count_is_exact(tiny_config):
    model = TiedGPT(tiny_config)
    assert block_param_count(tiny_config) == sum(p.numel() for p in model.blocks["0"].parameters())
    nobias = GPTConfig(**{**tiny_config.to_dict(), "bias": False})
    assert block_param_count(nobias) == sum(p.numel() for p in TiedGPT(nobias).blocks["0"].parameters())


def test_activation_estimate_is_close_to_saved_tensors():
    cfg = GPTConfig(n_layer=4, n_head=4, n_embd=64, block_size=32, vocab_size=100)
    model = TiedGPT(cfg)
    idx = torch.randint(0, 100, (8, 32))
    measured = measure_activations(model, idx, idx)
    predicted = predict_memory(cfg, model.tie_map, batch_size=8).activations
    assert measured == pytest.approx(predicted, rel=0.15)
    # follow mode saves less at tied positions (no inputs kept for weight gradients)
    tied = TiedGPT(cfg, [0, 0, 0, 0])
    assert measure_activations(tied, idx, idx) < measured


def test_tied_model_state_is_a_fraction_of_vanilla():
    cfg = GPTConfig(n_layer=12, n_head=4, n_embd=128, block_size=64, vocab_size=256)
    vanilla = predict_memory(cfg, tuple(range(12)))
    tied = predict_memory(cfg, (0, 1, 2) * 4)
    assert tied.model_state < 0.3 * vanilla.model_state
