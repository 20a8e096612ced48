"""Ray plumbing shared by pretraining and fine-tuning: connect, scale, fit, checkpoint."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from ..config import RayConfig
from ..storage import is_remote, writable_dir

log = logging.getLogger(__name__)


def init_ray(cfg: RayConfig) -> None:
    """Connect to `cfg.address` / RAY_ADDRESS, or start a local Ray with enough logical CPUs
    that Ray Data's read tasks are not starved by the training workers. A local Ray is a new
    one (`address="local"`): without it `ray.init` joins whatever cluster `ray start` last
    started on this machine, which the config did not name (and refuses `num_cpus` there)."""
    import ray
    import ray.data

    if ray.is_initialized():
        return
    ray.data.DataContext.get_current().enable_progress_bars = False  # log lines, not redrawn bars
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        from ..allowed_roots import check_ray_address

        check_ray_address(address, "ray.address" if cfg.address else "RAY_ADDRESS")  # the worker's allowlist
        log.info("ray: connecting to %s", address)
        ray.init(address=address, log_to_driver=True)
    else:
        need = cfg.num_workers * cfg.cpus_per_worker + 1
        num_cpus = max(cfg.local_num_cpus, int(need + 0.999))
        log.info("ray: starting a local Ray with %d logical CPUs", num_cpus)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})


def storage_path(run_dir: str, cfg: RayConfig | None = None) -> str:
    """Where Ray Train keeps checkpoints: `ray.storage_path` (local or s3://), else <run>/ray."""
    if cfg is not None and cfg.storage_path:
        return cfg.storage_path if is_remote(cfg.storage_path) else str(Path(cfg.storage_path).resolve())
    return f"{run_dir}/ray" if is_remote(run_dir) else str(Path(run_dir, "ray").resolve())


class LineageError(ValueError):
    """A run's existing checkpoint was trained on other data than this run would give it."""


def latest_checkpoint_meta(run_dir: str, cfg: RayConfig, name: str) -> tuple[str, dict] | None:
    """(path, trainer_meta.json) of the newest checkpoint of the Ray Train run `name` (the one
    a new fit of that name resumes from), or None when it has none."""
    from ..storage import get_fs

    root = f"{storage_path(run_dir, cfg)}/{name}"
    fs, path = get_fs(root)
    if not fs.exists(path):
        return None
    ckpts = sorted(p for p in fs.ls(path, detail=False) if p.rstrip("/").rsplit("/", 1)[-1].startswith("checkpoint_"))
    for ckpt in reversed(ckpts):
        meta = f"{ckpt}/trainer_meta.json"
        if fs.exists(meta):
            with fs.open(meta, "r") as f:
                return (f"{root}/{ckpt.rstrip('/').rsplit('/', 1)[-1]}", json.load(f))
    return None


def check_lineage(run_dir: str, cfg: RayConfig, name: str, lineage: dict, run_name: str) -> None:
    """Refuse to resume (or hand on) a checkpoint of run `name` that was trained on other data
    (corpus manifest, tokenizer, starting model) than `lineage` says this run has."""
    found = latest_checkpoint_meta(run_dir, cfg, name)
    if found is None:
        return
    path, meta = found
    saved = meta.get("lineage")
    if saved is None:
        raise LineageError(
            f"run {run_name!r}: its checkpoint {path} records no lineage (written by an older version), so what it was "
            f"trained on cannot be checked: give this run a new run_name, or delete {storage_path(run_dir, cfg)}/{name} "
            f"to train this run again from scratch")
    differ = {k: (saved.get(k), v) for k, v in lineage.items() if saved.get(k) != v}
    if differ:
        what = "; ".join(f"{k}: checkpoint {a}, this run {b}" for k, (a, b) in differ.items())
        raise LineageError(
            f"run {run_name!r}: its checkpoint {path} was trained on other data ({what}). A run never hands on "
            f"a model trained on other data: give this run a new run_name (deployments add the flow-run id with "
            f"{{flow_run}} in run_name), or delete {storage_path(run_dir, cfg)}/{name} to train this run again "
            f"from scratch")


def scaling_config(cfg: RayConfig):
    from ray.train import ScalingConfig

    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})}
    return ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources)


def fit(train_fn, loop_config: dict, datasets: dict, name: str, run_dir: str, cfg: RayConfig):
    """Train `train_fn` on the cluster. The datasets reach the workers in their order: Ray
    Train's split takes its execution options from the DataContext of the process that calls
    it (Train's controller, not this one), so `preserve_order` set here would be lost and
    blocks dealt out in completion order: another stream per run, a resume that does not skip
    what it trained on, and another model from the same config."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    init_ray(cfg)
    ingest = DataConfig.default_ingest_options()
    ingest.preserve_order = True
    trainer = TorchTrainer(
        train_fn,
        train_loop_config=loop_config,
        scaling_config=scaling_config(cfg),
        run_config=RunConfig(name=name, storage_path=storage_path(run_dir, cfg),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep),
                             failure_config=FailureConfig(max_failures=cfg.max_failures)),
        datasets=datasets,
        dataset_config=DataConfig(execution_options=ingest),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"{name}: training finished without a checkpoint")
    return result


def unwrap(model):
    """The Hugging Face model inside DDP (`.module`), torch.compile (`._orig_mod`) and
    `SelectiveLM` (`.model`) wrappers."""
    from .model import SelectiveLM

    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(model, SelectiveLM):
            model = model.model
        else:
            return model


def worker_setup(cfg_threads: float, seed: int) -> torch.device:
    import ray.train

    ctx = ray.train.get_context()
    logging.getLogger("pipeline").setLevel(logging.INFO)  # Ray's worker handler prints it
    torch.set_num_threads(max(1, int(cfg_threads)))
    torch.manual_seed(seed + ctx.get_world_rank())
    return ray.train.torch.get_device()


def shard_fsdp(model, device: torch.device):
    """FSDP2 (`torch.distributed.fsdp.fully_shard`): each transformer block, then the whole
    model, sharded over all workers: parameters, gradients and optimizer state are split,
    gathered layer by layer for compute. Works with gloo on CPU and NCCL on GPU."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    inner = model.base_model if hasattr(model, "base_model") else model
    blocks = getattr(inner, "layers", None) or getattr(getattr(inner, "encoder", None), "layer", None)
    if blocks is None:
        raise ValueError(f"fsdp: no transformer blocks found in {type(model).__name__}")
    model.to(device)
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_fsdp(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _full():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def optimizer_state(model, optimizer) -> dict:
    """The optimizer state to checkpoint; under FSDP this rank's shard of it (DTensors), which
    `report` writes with torch.distributed.checkpoint (collective: every rank must call it)."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer)
    return optimizer.state_dict()


SHARDED = ".metadata"  # torch.distributed.checkpoint's index: the checkpoint holds sharded state


def is_sharded(ckpt_dir: str) -> bool:
    return Path(ckpt_dir, SHARDED).exists()


def load_sharded(ckpt_dir: str, model, optimizer) -> None:
    """Model and optimizer state from a sharded (DCP) checkpoint, resharded to this run's
    workers, however many wrote it (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    from .safe_load import dcp_planner, dcp_reader, read_dcp_metadata

    index = Path(ckpt_dir, SHARDED)
    read_dcp_metadata(index.read_bytes(), str(index))  # refused here with its name (DCP would mask the error)
    state = {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, storage_reader=dcp_reader(ckpt_dir), planner=dcp_planner())  # nothing unpickled but DCP's types
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


def _full_weights(model) -> dict:
    """The unsharded weights of an FSDP model, on CPU, keyed as the inner HF model's (collective)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    full = get_model_state_dict(model, options=_full())
    inner = unwrap(model)
    if inner is not model:  # keys of the wrapped model: drop the wrapper's prefix ("model.")
        prefix = next((n + "." for n, m in model.named_children() if m is inner), "")
        full = {k.removeprefix(prefix): v for k, v in full.items()}
    return full


def report(metrics: dict, model, tokenizer, state: dict | None) -> None:
    """Report metrics from every rank, with a checkpoint when `state` is given (training
    state: optimizer, scheduler, step, RNG; `final`: the run's last). Every rank must call
    this the same number of times.

    DDP (or one worker): rank 0 writes the whole checkpoint: safetensors weights, tokenizer,
    training state. FSDP: every rank writes its own shard of the weights and optimizer state
    with torch.distributed.checkpoint (`__<rank>_0.distcp`; rank 0 adds the `.metadata`
    index, config, tokenizer and the rest), in parallel and without gathering anything on one
    rank; Ray Train merges the ranks' files into one checkpoint directory in storage
    (`ray.storage_path`: local or s3://). A sharded checkpoint resumes on any number of
    workers. Only the final one also holds the consolidated `model.safetensors` (gathered,
    collective) that the exported model is made of."""
    import ray.train
    from ray.train import Checkpoint

    rank = ray.train.get_context().get_world_rank()
    sharded = state is not None and is_fsdp(model)
    if not sharded and (rank != 0 or state is None):
        ray.train.report(metrics)
        return
    full = _full_weights(model) if sharded and state.get("final") else None
    saved = {k: v for k, v in state.items() if k not in ("meta", "final") and not (sharded and k == "optimizer")}
    with tempfile.TemporaryDirectory() as d:
        if sharded:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            dcp.save({"model": get_model_state_dict(model), "optimizer": state["optimizer"]}, checkpoint_id=d)
        if rank == 0:
            if not sharded:
                unwrap(model).save_pretrained(d, safe_serialization=True)
            elif full is not None:
                unwrap(model).save_pretrained(d, safe_serialization=True, state_dict=full)
            else:
                unwrap(model).config.save_pretrained(d)
            tokenizer.save_pretrained(d)
            torch.save(saved, os.path.join(d, "trainer_state.pt"))
            Path(d, "trainer_meta.json").write_text(json.dumps({**state.get("meta", {}), "sharded": sharded,
                                                                **metrics}, indent=2))
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))


def batches(shard, batch_size: int, skip: int, drop_last: bool = True, repeat_until: int = 0):
    """Batches of this worker's stream, skipping the first `skip` (already trained on before a
    resume); the stream is passed over again until `repeat_until` batches were yielded in all.
    Every worker gets an equal split (Ray Train's `equal=True`), so the ranks make the same
    number of steps and meet at every `report`."""
    n = 0
    while True:
        for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=drop_last,
                                        prefetch_batches=4):
            if n >= skip:
                yield batch
            n += 1
        if n == 0 or n >= repeat_until:
            return


def load_state(checkpoint, lineage: dict | None = None) -> tuple[str, dict] | None:
    """Return (local checkpoint dir, saved training state) from a Ray checkpoint. The state
    holds tensors and plain values only and is read without running code (`safe_load`). With
    `lineage`, the checkpoint Ray restores must record that lineage: the driver checked the
    newest one it found (`check_lineage`), the worker checks the one it resumes."""
    from .safe_load import load_trainer_state

    if checkpoint is None:
        return None
    d = checkpoint.to_directory()
    if lineage is not None:
        meta = Path(d, "trainer_meta.json")
        saved = json.loads(meta.read_text()).get("lineage") if meta.exists() else None
        if saved != lineage:
            raise LineageError(f"checkpoint {checkpoint.path} records lineage {saved}, this run {lineage}: not resumed")
    return d, load_trainer_state(os.path.join(d, "trainer_state.pt"))


def export(checkpoint, out_dir: str, lineage: dict | None = None) -> str:
    """Copy a final checkpoint's model and tokenizer (no optimizer state, no shards) to
    `out_dir` (local or s3://), replacing what was there only once the copy is whole
    (`storage.writable_dir`). `lineage`, when given, must be what the checkpoint records it was
    trained from (`trainer_meta.json`): a checkpoint of other data is never exported."""
    import shutil

    src = Path(checkpoint.to_directory())
    if lineage is not None:
        saved = json.loads(Path(src, "trainer_meta.json").read_text()).get("lineage")
        if saved != lineage:
            raise LineageError(f"{out_dir}: the checkpoint at {checkpoint.path} records lineage {saved}, this run "
                               f"expects {lineage}: not exported")
    with writable_dir(out_dir) as dst:
        for f in src.iterdir():
            if f.name != "trainer_state.pt" and f.name != SHARDED and not f.name.endswith(".distcp"):
                shutil.copy2(f, Path(dst, f.name))
    return out_dir
