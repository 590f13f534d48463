import pytest
import torch

from dyntie_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dyntie_core.rundir import RunDir


def _save(path):
    tensors = {"model/w": torch.arange(12.0).reshape(3, 4), "rng/x": torch.tensor([1, 2, 3], dtype=torch.uint8),
               "optim/w/step": torch.tensor(5.0)}
    return save_checkpoint(path, {"step": 5, "tie_map": [0, 0]}, tensors), tensors


def test_round_trip_and_no_temporary_files(tmp_path):
    path, tensors = _save(tmp_path / "ck" / "last.safetensors")
    ckpt = load_checkpoint(path)
    assert ckpt.state == {"step": 5, "tie_map": [0, 0]}
    for k, v in tensors.items():
        assert torch.equal(ckpt.tensors[k], v)
    assert ckpt.group("optim") == {"w/step": torch.tensor(5.0)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.safetensors"]


def test_corruption_is_detected(tmp_path):
    path, _ = _save(tmp_path / "a.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a dyntie checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_latest_prefers_last_then_highest_step(tmp_path):
    run = RunDir(tmp_path)
    assert run.latest_checkpoint() is None
    _save(tmp_path / "checkpoints" / "step_0000010.safetensors")
    _save(tmp_path / "checkpoints" / "step_0000020.safetensors")
    assert run.latest_checkpoint().name == "step_0000020.safetensors"
    _save(tmp_path / "checkpoints" / "last.safetensors")
    assert run.latest_checkpoint().name == "last.safetensors"
