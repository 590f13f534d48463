import torch

from dyntie_core import TiedGPT, TrainConfig, configure_optimizer, optimizer_state_bytes, sync_optimizer


def _step(model, opt, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 64, (4, 16), generator=g)
    opt.zero_grad(set_to_none=True)
    _, loss = model(idx, idx)
    loss.backward()
    opt.step()


def _opt_params(opt):
    return {id(p) for g in opt.param_groups for p in g["params"]}


def test_optimizer_state_falls_after_tying(tiny_config):
    model = TiedGPT(tiny_config)
    opt = configure_optimizer(model, TrainConfig())
    _step(model, opt)
    before = optimizer_state_bytes(opt)
    model.set_tie_map([0, 0, 0, 0])
    added, removed = sync_optimizer(opt, model)
    assert added == 0 and removed == 3 * len(list(model.blocks["0"].parameters()))
    after = optimizer_state_bytes(opt)
    block_bytes = sum(p.numel() for p in model.blocks["0"].parameters()) * 4 * 2  # two Adam moments
    assert before - after >= 3 * block_bytes
    assert _opt_params(opt) == {id(p) for p in model.parameters()}
    _step(model, opt, seed=1)  # still trains after the change
    assert optimizer_state_bytes(opt) == after


def test_an_untied_block_is_really_optimized(tiny_config):
    model = TiedGPT(tiny_config, [0, 0, 0, 0])
    opt = configure_optimizer(model, TrainConfig(lr=1e-2))
    _step(model, opt)
    model.set_tie_map([0, 0, 2, 0])
    sync_optimizer(opt, model)
    new_params = list(model.blocks["2"].parameters())
    assert all(id(p) in _opt_params(opt) for p in new_params)
    assert all(p not in opt.state for p in new_params)  # fresh state, not inherited moments
    start = [p.detach().clone() for p in new_params]
    root_before = [p.detach().clone() for p in model.blocks["0"].parameters()]
    _step(model, opt, seed=2)
    moved = [not torch.equal(a, p) for a, p in zip(start, new_params)]
    assert all(moved)
    assert all(opt.state[p]["step"].item() == 1 for p in new_params)
    # the new block and its former root now follow separate paths
    assert not all(torch.equal(a, b) for a, b in zip(new_params, model.blocks["0"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(root_before, model.blocks["0"].parameters()))


def test_sync_is_idempotent_and_keeps_decay_groups(tiny_config):
    model = TiedGPT(tiny_config, [0, 0, 0, 0])
    opt = configure_optimizer(model, TrainConfig(weight_decay=0.1))
    model.set_tie_map([0, 1, 2, 3])
    assert sync_optimizer(opt, model)[0] == 3 * len(list(model.blocks["0"].parameters()))
    assert sync_optimizer(opt, model) == (0, 0)
    decay, no_decay, mix = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert mix["params"] == [] and decay["lr_scale"] == no_decay["lr_scale"] == 1.0
