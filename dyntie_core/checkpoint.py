"""Checkpoints: one safetensors file per checkpoint, JSON for everything that is not a tensor.

Nothing is ever unpickled. The file carries a SHA-256 of its tensor bytes in its
metadata, so truncation or bit rot is reported as such rather than loaded. Writes go
to a temporary file renamed into place, so a crash never leaves a half-written
checkpoint under the real name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .fileio import atomic_path

FORMAT = "dyntie-checkpoint"
VERSION = 2  # 2: training counters under state['train_state'], optimizer state keyed by parameter name


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the run."""


@dataclass
class Checkpoint:
    state: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under ``prefix/``, with the prefix stripped."""
        p = prefix + "/"
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write atomically: ``state`` as JSON metadata, ``tensors`` as safetensors."""
    path = Path(path)
    clean = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "version": str(VERSION), "state": json.dumps(state), "sha256": _digest(clean)}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint; raise ``CheckpointError`` saying exactly what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a dyntie checkpoint")
    if int(metadata.get("version", "0")) > VERSION:
        raise CheckpointError(f"{path} was written by a newer dyntie (format version {metadata['version']})")
    if _digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt: its tensor data does not match its checksum")
    try:
        state = json.loads(metadata["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} has unreadable state metadata ({exc})") from None
    return Checkpoint(state=state, tensors=tensors)


def checkpoint_step(path: str | Path) -> int | None:
    """The training step a checkpoint holds, read from its metadata only (no tensors); None if unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["state"])
        return int(state["train_state"]["step"])
    except Exception:
        return None
