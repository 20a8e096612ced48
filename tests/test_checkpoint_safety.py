"""Checkpoints cannot run code: training state as tensors and plain values, read with
`weights_only=True`; a sharded checkpoint's pickled index read with DCP's types only."""

from __future__ import annotations

import io
import os
import pickle
import random
import socket

import numpy as np
import pytest
import torch

from pipeline.training import pretrain, raytrain
from pipeline.training.safe_load import UnsafeCheckpointError, dcp_planner, load_trainer_state, read_dcp_metadata


class _Planted:
    """What an attacker with write access to the checkpoint storage would put in a pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _draws(gen: torch.Generator) -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)],
            torch.rand(3, generator=gen).tolist(), np.random.randn(), random.gauss(0, 1))


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn(), random.gauss(0, 1)  # cached Gaussians are part of the state
    path = tmp_path / "trainer_state.pt"
    torch.save({"rng": [pretrain._rng_state(gen)], "step": 3}, path)
    expected = _draws(gen)
    _draws(gen)  # move every generator on
    state = load_trainer_state(path)
    pretrain._set_rng_state(state["rng"][0], gen)
    assert _draws(gen) == expected


def test_a_trainer_state_carrying_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "trainer_state.pt"
    torch.save({"step": 5, "scheduler": _Planted(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="trainer_state.pt: refused"):
        load_trainer_state(path)
    assert not marker.exists()


def test_load_state_reads_a_ray_checkpoint_without_pickle(tmp_path):
    from ray.train import Checkpoint

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    torch.save({"optimizer": opt.state_dict(), "step": 4, "rng": [pretrain._rng_state(torch.Generator())]},
               good / "trainer_state.pt")
    d, state = raytrain.load_state(Checkpoint.from_directory(str(good)))
    assert state["step"] == 4 and "param_groups" in state["optimizer"]
    torch.save({"step": 4, "x": _Planted(str(tmp_path / "code-ran"))}, bad / "trainer_state.pt")
    with pytest.raises(UnsafeCheckpointError):
        raytrain.load_state(Checkpoint.from_directory(str(bad)))
    assert not (tmp_path / "code-ran").exists()


@pytest.fixture
def process_group():
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _sharded_model(seed: int):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    model = raytrain.shard_fsdp(BertForMaskedLM(cfg), torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, opt


def test_a_sharded_checkpoint_resumes_and_a_planted_index_is_refused(process_group, tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    model, opt = _sharded_model(0)
    ids = torch.randint(0, 40, (2, 6))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    ckpt = tmp_path / "ckpt"
    dcp.save({"model": get_model_state_dict(model), "optimizer": raytrain.optimizer_state(model, opt)},
             checkpoint_id=str(ckpt))
    saved = {k: v.full_tensor().clone() for k, v in get_model_state_dict(model).items()}

    other, other_opt = _sharded_model(1)  # other weights, no optimizer state yet
    raytrain.load_sharded(str(ckpt), other, other_opt)
    for k, v in get_model_state_dict(other).items():
        assert torch.equal(v.full_tensor(), saved[k]), k
    assert other_opt.state_dict()["state"], "the optimizer state was not restored"

    # the real index holds only DCP's own types; a planted one is refused before it runs anything
    read_dcp_metadata((ckpt / ".metadata").read_bytes())
    marker = tmp_path / "code-ran"
    (ckpt / ".metadata").write_bytes(pickle.dumps(_Planted(str(marker))))
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata: refused"):
        raytrain.load_sharded(str(ckpt), other, other_opt)
    assert not marker.exists()


def test_a_planted_non_tensor_entry_of_a_sharded_checkpoint_is_refused(tmp_path):
    from torch.distributed.checkpoint.metadata import MetadataIndex
    from torch.distributed.checkpoint.planner import LoadItemType, ReadItem

    marker = tmp_path / "code-ran"
    buf = io.BytesIO()
    torch.save({"lr": 0.1, "x": _Planted(str(marker))}, buf)
    buf.seek(0)
    item = ReadItem(type=LoadItemType.BYTE_IO, dest_index=MetadataIndex("optimizer.param_groups"),
                    dest_offsets=torch.Size([0]), storage_index=MetadataIndex("optimizer.param_groups"),
                    storage_offsets=torch.Size([0]), lengths=torch.Size([0]))
    with pytest.raises(UnsafeCheckpointError, match="optimizer.param_groups: refused"):
        dcp_planner().load_bytes(item, buf)
    assert not marker.exists()


def test_no_code_loads_storage_with_pickle():
    """No `weights_only=False`, no plain pickle / cloudpickle load, no `allow_pickle=True`, no
    `trust_remote_code=True` anywhere in the project's code (bench/ included: it loads the
    same checkpoints). The one unpickler, safe_load's, admits DCP's metadata types only."""
    import re
    from pathlib import Path

    from conftest import ROOT

    pattern = re.compile(r"weights_only\s*=\s*False|(?<!\w)(cloud)?pickle\.loads?\(|allow_pickle\s*=\s*True|"
                         r"trust_remote_code\s*=\s*True|pickle\.Unpickler\(")
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
             for d in ("pipeline", "tasks", "flows", "bench") for p in sorted((ROOT / d).rglob("*.py"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert found == [], found
