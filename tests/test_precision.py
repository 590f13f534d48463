"""Precision and throughput: bf16 autocast with fp32 master state, FLOPs per token, MFU, CUDA memory figures."""

from __future__ import annotations

import pytest
import torch

from dyntie_core import GPTConfig
from dyntie_core.config import ConfigError, TrainConfig
from dyntie_core.loop import Trainer
from dyntie_core.memory import MemoryBreakdown, add_cuda_figures, block_param_count, predict_memory
from dyntie_core.metrics import flops_per_token, peak_flops

from .conftest import small_run_config


def test_flops_per_token_is_nanogpts_estimate_less_the_weight_gradients_follow_mode_skips():
    cfg = GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=16, vocab_size=64)
    per_block = block_param_count(cfg)
    n = 64 * 32 + 4 * per_block
    attention = 12 * 4 * 32 * 16
    assert flops_per_token(cfg, (0, 1, 2, 3)) == 6 * n + attention
    assert flops_per_token(cfg, (0, 0, 2, 2)) == 6 * n + attention - 2 * 2 * per_block
    share = GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=16, vocab_size=64, tie_mode="share")
    assert flops_per_token(share, (0, 0, 2, 2)) == 6 * n + attention  # share mode computes every gradient


def test_peak_flops_is_known_for_listed_gpus_only(monkeypatch):
    assert peak_flops(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert peak_flops(torch.device("cuda", 0)) == 989e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Future GPU")
    assert peak_flops(torch.device("cuda", 0)) is None


def test_cuda_figures_make_activations_the_peak_above_model_state():
    b = add_cuda_figures(MemoryBreakdown(params=100, grads=100, optimizer=200), allocated=450, peak=1400,
                         reserved=2048)
    assert (b.cuda_allocated, b.cuda_peak, b.cuda_reserved, b.activations) == (450, 1400, 2048, 1000)
    assert b.to_dict()["model_state"] == 400


def test_summary_reports_model_flops_and_no_mfu_on_cpu():
    trainer = Trainer(small_run_config(steps=10, method="cycle", n_unique=2))
    summary = trainer.run()
    per_token = flops_per_token(trainer.config.model, trainer.model.tie_map)  # cycle: one map for the whole run
    assert summary["model_flops_per_s"] == pytest.approx(per_token * summary["tokens_per_s"], rel=1e-9)
    assert summary["mfu"] is None and summary["dtype"] == "float32" and summary["world_size"] == 1
    assert summary["memory_predicted"]["model_state"] == pytest.approx(summary["memory"]["model_state"], rel=0.02)


def test_bf16_autocast_trains_with_fp32_weights_gradients_and_adam_state():
    fp32 = Trainer(small_run_config(steps=30, method="cycle", n_unique=2))
    bf16 = Trainer(small_run_config(steps=30, method="cycle", n_unique=2, train={"dtype": "bfloat16"}))
    x, _ = bf16.sampler.sample()
    with bf16.autocast():
        logits, _ = bf16.model(x)
    assert logits.dtype == torch.bfloat16  # the matmuls really ran in bf16
    s32, s16 = fp32.run(), bf16.run()
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in bf16.model.parameters())
    moments = [v for st in bf16.optimizer.state.values() for k, v in st.items() if k.startswith("exp_avg")]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    assert s16["memory"]["model_state"] == s32["memory"]["model_state"]  # master state is unchanged by autocast
    assert s16["memory_predicted"]["activations"] * 2 == s32["memory_predicted"]["activations"]
    assert s16["best_val_ppl"] == pytest.approx(s32["best_val_ppl"], rel=0.03)
    assert s16["best_val_ppl"] != s32["best_val_ppl"]


def test_bf16_activation_prediction_halves_float32():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)
    full, half = predict_memory(cfg, (0, 1), 4), predict_memory(cfg, (0, 1), 4, activation_bytes=2)
    assert half.activations * 2 == full.activations and half.model_state == full.model_state


@pytest.mark.parametrize(("field", "value", "message"), [("dtype", "float16", "dtype must be one of"),
                                                         ("dist_timeout_s", 0, "dist_timeout_s must be a positive")])
def test_bad_precision_and_timeout_settings_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_cuda_rng_state_is_saved_and_restored_on_cuda_only(monkeypatch):
    from dyntie_core.loop import restore_rng, rng_tensors

    state = torch.arange(16, dtype=torch.uint8)
    restored = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda t, device=None: restored.update(t=t, device=device))
    cuda = torch.device("cuda", 0)
    saved = rng_tensors(cuda)
    assert torch.equal(saved["rng/cuda"], state) and torch.equal(saved["rng/torch"], torch.get_rng_state())
    restore_rng(saved, cuda)
    assert torch.equal(restored["t"], state) and restored["device"] == cuda
    restored.clear()
    restore_rng(saved, torch.device("cpu"))  # a GPU checkpoint resumed on the CPU: the CUDA state is not used
    assert "rng/cuda" not in rng_tensors(torch.device("cpu")) and not restored


def test_global_batch_must_divide_across_processes():
    from dyntie_core.distributed import DistContext

    with pytest.raises(ConfigError, match="must be divisible by the 3 processes"):
        Trainer(small_run_config(steps=2), dist=DistContext(rank=0, world_size=3))
