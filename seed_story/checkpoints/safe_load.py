"""Reading weight files without ever executing pickled code.

``.safetensors`` files are read directly; ``.bin``/``.pt``/``.pth`` pickles go through
``torch.load(weights_only=True)``, whose restricted unpickler refuses any global that is not a tensor
building block. Sharded checkpoints (``*.index.json`` beside the shards) are followed.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

StateDict = dict[str, torch.Tensor]

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt"}


class UnsafeCheckpointError(RuntimeError):
    """A pickle that needs more than tensors to load: it could run code, so it is refused."""


def load_state_dict_file(path: str | Path, *, mmap: bool = True) -> StateDict:
    """Load one weight file (or a sharded checkpoint's ``*.index.json``) as a flat name -> tensor dict.

    Pickles are memory-mapped where torch can, so a multi-GB checkpoint costs no RAM until read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.name.endswith(".index.json"):
        return _load_sharded(path, mmap=mmap)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in PICKLE_SUFFIXES:
        return _load_pickle(path, mmap=mmap)
    raise ValueError(f"unknown checkpoint format {path.suffix!r} for {path}; expected .safetensors or a torch pickle")


def _load_pickle(path: Path, *, mmap: bool) -> StateDict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refusing {path}: it is not a plain tensor checkpoint and loading it could execute code ({err})"
        ) from err
    except RuntimeError as err:
        if mmap and "mmap" in str(err):
            # Old (pre-zipfile) torch pickles cannot be memory-mapped; read them normally.
            return _load_pickle(path, mmap=False)
        raise
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UnsafeCheckpointError(f"{path} does not hold a flat name -> tensor mapping")
    return obj


def _load_sharded(index: Path, *, mmap: bool) -> StateDict:
    weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    out: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        part = load_state_dict_file(index.parent / shard, mmap=mmap)
        out.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
    return out


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a weight file, reading only the header where the format allows."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    return {k: tuple(v.shape) for k, v in load_state_dict_file(path).items()}
