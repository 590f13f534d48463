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


def _save_at(path, step):
    return save_checkpoint(path, {"train_state": {"step": step}}, {"model/w": torch.zeros(2)})


def test_resume_candidates_are_ordered_by_the_step_they_hold(tmp_path):
    run = RunDir(tmp_path)
    assert run.resume_candidates() == []
    _save_at(tmp_path / "checkpoints" / "step_0000010.safetensors", 10)
    _save_at(tmp_path / "checkpoints" / "step_0000020.safetensors", 20)
    _save_at(tmp_path / "checkpoints" / "best.safetensors", 15)
    assert [(p.name, s) for p, s in run.resume_candidates()] == [
        ("step_0000020.safetensors", 20), ("best.safetensors", 15), ("step_0000010.safetensors", 10)]
    _save_at(tmp_path / "checkpoints" / "last.safetensors", 20)
    (tmp_path / "checkpoints" / "step_0000010.safetensors").write_bytes(b"garbage")
    assert [(p.name, s) for p, s in run.resume_candidates()] == [
        ("last.safetensors", 20), ("step_0000020.safetensors", 20), ("best.safetensors", 15),
        ("step_0000010.safetensors", None)]


class _Boom:
    """Unpickling this would create a file: proof that a checkpoint was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_disguised_as_a_checkpoint_is_refused_and_never_unpickled(tmp_path):
    import pickle
    from pathlib import Path

    marker = tmp_path / "was-unpickled"
    path = tmp_path / "checkpoints" / "last.safetensors"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()
    root = Path(__file__).resolve().parents[1]
    for source in [*(root / "dyntie_core").rglob("*.py"), *(root / "widgets").rglob("*.py")]:
        text = source.read_text()
        assert "torch.load(" not in text and "import pickle" not in text and "pickle.load" not in text, source
