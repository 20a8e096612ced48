"""Loading a checkpoint without running code from it.

Checkpoints live in `ray.storage_path`, usually object storage: whoever can write there must
not be able to run code on the workers that read them (which hold the storage keys). So no
byte that comes from a checkpoint is unpickled with the full pickle machinery:

- `trainer_state.pt` (optimizer, scheduler, step, RNG states) holds tensors and plain Python
  values only (`pretrain._rng_state` keeps numpy's and Python's RNG states as tensors) and is
  read with `torch.load(weights_only=True)`, torch's restricted unpickler;
- a sharded (torch.distributed.checkpoint) checkpoint's `.metadata` index is a plain pickle:
  `SafeFileSystemReader` reads it with an unpickler that admits only DCP's own metadata
  classes and torch's sizes, dtypes and layouts (Python's "restricting globals" recipe);
- DCP's non-tensor values (the optimizer's param groups) are read with `weights_only=True`
  (`SafeLoadPlanner`; torch's default planner unpickles them unrestricted).

Anything else is refused with `UnsafeCheckpointError`, which names the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint file holds something other than tensors and plain values (a ValueError:
    no retry can fix it)."""


def load_trainer_state(path: str | Path) -> dict:
    """The training state saved beside a checkpoint's weights, read without running code."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain values, and loading them "
            f"could run code from the checkpoint's storage. A checkpoint written by babelforge before its state "
            f"was kept as tensors (or one planted in the storage) cannot be resumed: delete its run folder "
            f"(ray.storage_path/<run>-pretrain or -finetune) to train again ({e})") from e


_DCP_META = "torch.distributed.checkpoint.metadata"
_ALLOWED = {
    (_DCP_META, name) for name in ("Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                                   "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                                   "_MEM_FORMAT_ENCODING")
} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # a look-up in torch's table of layouts
    ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(f"{module}.{name} is not a checkpoint metadata type")


def read_dcp_metadata(data: bytes, path: str = ".metadata"):
    """A torch.distributed.checkpoint `.metadata` pickle, unpickled with only DCP's own types."""
    try:
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: refused: {e}; a sharded checkpoint's index holds nothing else, so "
                                    f"this one was not written by torch.distributed.checkpoint") from e
    for info in (getattr(metadata, "storage_data", None) or {}).values():  # shard files: names inside the folder
        name = str(getattr(info, "relative_path", ""))
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise UnsafeCheckpointError(f"{path}: refused: it names the shard file {name!r}, outside its checkpoint")
    return metadata


def dcp_reader(ckpt_dir: str):
    """A DCP storage reader for the local folder `ckpt_dir` whose metadata is read by
    `read_dcp_metadata`. Only public names of torch's reader are relied on (its private helpers
    differ between the torch versions babelforge allows)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeFileSystemReader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            rank = kwargs.get("rank")  # a rank's own index (written without collectives), else the global one
            path = Path(ckpt_dir, ".metadata" if rank is None else f"__{rank}.metadata")
            metadata = read_dcp_metadata(path.read_bytes(), str(path))
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            if getattr(self, "load_id", None) is not None:
                metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeFileSystemReader(ckpt_dir)


def dcp_planner():
    """DCP's default load planner, except that non-tensor values (the optimizer's param groups)
    are read with `weights_only=True` and placed as the default planner places them (it would
    unpickle them unrestricted)."""
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    class SafeLoadPlanner(DefaultLoadPlanner):
        def load_bytes(self, read_item, value: io.BytesIO) -> None:
            fqn = read_item.dest_index.fqn
            try:
                obj = torch.load(value, weights_only=True)
            except pickle.UnpicklingError as e:
                raise UnsafeCheckpointError(f"sharded checkpoint entry {fqn}: refused: it holds objects other "
                                            f"than tensors and plain values ({e})") from e
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[fqn], obj)
            else:
                self.state_dict[fqn] = obj

    return SafeLoadPlanner()
