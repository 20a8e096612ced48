"""GPU check of issue 31's checkpoint loading: a sharded FSDP2 checkpoint written on CUDA with
NCCL (torch.distributed.checkpoint) is resumed through `safe_load` (the index unpickled with
DCP's own types only, non-tensor entries read with weights_only=True): the same weights and
optimizer state, the same next loss; a planted index is refused. Imports only torch and
transformers (the device image has no pydantic), so the FSDP wrapping is written out here as
`raytrain.shard_fsdp` does it. Run: python bench/gpu_checkpoint_check.py (one GPU)."""

import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.training.safe_load import (  # noqa: E402
    UnsafeCheckpointError,
    dcp_planner,
    dcp_reader,
    load_trainer_state,
)


class Planted:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/code-ran",))


def build(seed: int):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=8000, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                     intermediate_size=2048)
    model = BertForMaskedLM(cfg).cuda()
    mesh = init_device_mesh("cuda", (1,))
    for block in model.bert.encoder.layer:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def step(model, opt, ids) -> float:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def main() -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29561")
    dist.init_process_group("nccl", rank=0, world_size=1)
    torch.cuda.set_device(0)
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    gen = torch.Generator(device="cuda").manual_seed(0)
    batches = [torch.randint(0, 8000, (16, 128), device="cuda", generator=gen) for _ in range(4)]
    model, opt = build(0)
    for ids in batches[:3]:
        step(model, opt, ids)
    d = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    dcp.save({"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, opt)},
             checkpoint_id=str(d))
    out["save_s"] = round(time.perf_counter() - t, 3)
    saved = {k: v.full_tensor().clone() for k, v in get_model_state_dict(model).items()}
    torch.manual_seed(123)  # the same dropout masks for the step after the checkpoint, in both
    expected = step(model, opt, batches[3])

    try:  # the genuine index, through the reader's own entry point (DCP would hide the error)
        dcp_reader(str(d)).read_metadata()
    except Exception as e:
        print(json.dumps(out, indent=1), f"\nthe genuine index was refused: {type(e).__name__}: {e}")
        sys.exit(1)
    other, other_opt = build(1)
    state = {"model": get_model_state_dict(other), "optimizer": get_optimizer_state_dict(other, other_opt)}
    t = time.perf_counter()
    dcp.load(state, storage_reader=dcp_reader(str(d)), planner=dcp_planner())
    out["safe_load_s"] = round(time.perf_counter() - t, 3)
    set_model_state_dict(other, state["model"])
    set_optimizer_state_dict(other, other_opt, state["optimizer"])
    out["weights_equal"] = all(torch.equal(v.full_tensor(), saved[k]) for k, v in get_model_state_dict(other).items())
    out["optimizer_entries"] = len(other_opt.state_dict()["state"])
    torch.manual_seed(123)
    resumed = step(other, other_opt, batches[3])
    out.update(next_loss=expected, resumed_next_loss=resumed, same_next_loss=abs(expected - resumed) < 1e-6)

    (d / ".metadata").write_bytes(pickle.dumps(Planted()))
    try:
        dcp.load(state, storage_reader=dcp_reader(str(d)), planner=dcp_planner())
        out["planted_index"] = "LOADED (bad)"
    except BaseException as e:  # DCP wraps the reader's error (CheckpointException); what matters: nothing ran
        out["planted_index"] = f"refused: {type(e).__name__}"
    out["planted_code_ran"] = Path("/tmp/code-ran").exists()

    ts = d / "trainer_state.pt"
    torch.save({"optimizer": torch.optim.AdamW(torch.nn.Linear(4, 4).cuda().parameters()).state_dict(),
                "rng": torch.cuda.get_rng_state()}, ts)
    out["trainer_state_weights_only"] = sorted(load_trainer_state(ts))
    torch.save({"x": Planted()}, ts)
    try:
        load_trainer_state(ts)
        out["planted_trainer_state"] = "LOADED (bad)"
    except UnsafeCheckpointError:
        out["planted_trainer_state"] = "refused"
    out["planted_code_ran"] = out["planted_code_ran"] or Path("/tmp/code-ran").exists()
    print(json.dumps(out, indent=1))
    dist.destroy_process_group()
    ok = out["same_next_loss"] and out["weights_equal"] and not out["planted_code_ran"] and out["planted_trainer_state"] == "refused" \
        and out["planted_index"].startswith("refused")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
