"""Masked-LM pretraining on the corpus shards with Ray Train (TorchTrainer, DDP, gloo on CPU).

Ray Data reads the manifest's training shards and mixes the languages by temperature
sampling (one stream, `training_stream`); each worker receives its equal split through
`ray.train.get_dataset_shard`, tokenises and masks on the fly, and trains a BERT-style model
built from the config. Checkpoints (safetensors weights, tokenizer, optimizer, scheduler,
step) go through `ray.train.report`; rerunning with the same run name resumes from the latest.
"""

from __future__ import annotations

import logging
import time
import zlib

import numpy as np
import pyarrow as pa
import torch

from . import raytrain
from .config import PipelineConfig
from .model import build_mlm, encode, mask_tokens, warmup_cosine
from .shard import mixing_plan, shard_paths
from .storage import absolute

log = logging.getLogger(__name__)


def train_loop(config: dict) -> None:
    import ray.train
    from transformers import AutoTokenizer, BertForMaskedLM

    from .config import ModelConfig, PretrainConfig

    pcfg = PretrainConfig.model_validate(config["pretrain"])
    mcfg = ModelConfig.model_validate(config["model"])
    device = raytrain.worker_setup(config["threads"], pcfg.seed)
    rank = ray.train.get_context().get_world_rank()

    resumed = raytrain.load_state(ray.train.get_checkpoint())
    if resumed:
        ckpt_dir, state = resumed
        tokenizer = AutoTokenizer.from_pretrained(ckpt_dir, local_files_only=True)
        model = BertForMaskedLM.from_pretrained(ckpt_dir, attn_implementation="sdpa", local_files_only=True)
    else:
        state = None
        tokenizer = AutoTokenizer.from_pretrained(config["tokenizer_dir"], local_files_only=True)
        torch.manual_seed(pcfg.seed)  # identical initial weights on every rank
        model = build_mlm(mcfg, tokenizer)
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=pcfg.learning_rate, weight_decay=pcfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(pcfg.warmup_steps, pcfg.max_steps))
    step = 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        if rank == 0:
            log.info("pretrain: resumed at step %d", step)
    gen = torch.Generator().manual_seed(pcfg.seed * 1000 + rank + step)

    shard = ray.train.get_dataset_shard("train")
    model.train()
    window_loss, window_n, tokens, t0 = 0.0, 0, 0, time.monotonic()
    for batch in raytrain.batches(shard, pcfg.batch_size, skip=step, repeat_until=pcfg.max_steps):
        enc = encode(tokenizer, batch["text"], mcfg.max_length)
        inputs, labels = mask_tokens(enc["input_ids"], tokenizer, pcfg.mask_probability, gen)
        out = model(input_ids=inputs.to(device), attention_mask=enc["attention_mask"].to(device),
                    labels=labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        window_loss += out.loss.item()
        window_n += 1
        tokens += int(enc["attention_mask"].sum())
        if step % pcfg.checkpoint_every == 0 or step == pcfg.max_steps:
            elapsed = time.monotonic() - t0
            metrics = {"step": step, "loss": window_loss / window_n, "lr": scheduler.get_last_lr()[0],
                       "tokens_per_s_per_worker": tokens / max(elapsed, 1e-9)}
            if rank == 0:
                log.info("pretrain step %d/%d loss %.4f lr %.2e %.0f tok/s/worker", step, pcfg.max_steps,
                         metrics["loss"], metrics["lr"], metrics["tokens_per_s_per_worker"])
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                     "meta": {"objective": "masked_lm"}}
            raytrain.report(metrics, model, tokenizer, state)
            window_loss, window_n, tokens, t0 = 0.0, 0, 0, time.monotonic()
        if step >= pcfg.max_steps:
            break


def mix_batch(batch: pa.Table, rates: dict[str, float], seed: int) -> pa.Table:
    """Resample the rows of a batch by their language's rate: rate 2.5 repeats a row 2 or 3
    times (2.5 on average), rate 0.3 keeps it with probability 0.3. Seeded by the batch's
    first id, so the stream is the same on every run."""
    if batch.num_rows == 0:
        return batch
    rng = np.random.default_rng([seed, zlib.crc32(str(batch["id"][0]).encode())])
    rate = np.array([rates.get(lang, 0.0) for lang in batch["lang"].to_pylist()])
    copies = np.floor(rate).astype(np.int64) + (rng.random(batch.num_rows) < rate - np.floor(rate))
    return batch.take(np.repeat(np.arange(batch.num_rows), copies))


def training_stream(manifest: dict, corpus_dir: str, total_rows: int, alpha: float | None, seed: int):
    """One Ray Dataset holding the whole training stream: every language is resampled to its
    rows in the temperature-sampling plan (`mixing_plan`) and the result shuffled. One pass
    over it is the run: no epoch restarts of the Ray Data pipeline."""
    import ray.data

    plan = mixing_plan(manifest, total_rows, alpha)
    rates = {lang: n / manifest["languages"][lang]["train_rows"] for lang, n in plan.items()}
    paths = shard_paths(manifest, corpus_dir, "train")
    if not paths:
        raise ValueError(f"{corpus_dir}: manifest lists no training shards")
    log.info("pretrain: language mix for %d rows: %s", total_rows, plan)
    ds = ray.data.read_parquet(paths, columns=["id", "text", "lang"])
    ds = ds.map_batches(mix_batch, fn_kwargs={"rates": rates, "seed": seed}, batch_format="pyarrow")
    return ds.random_shuffle(seed=seed)


def pretrain(corpus_dir: str, manifest: dict, tokenizer_dir: str, out_dir: str, cfg: PipelineConfig) -> dict:
    """Run the Ray Train job; export the final model (safetensors) to `out_dir`."""
    raytrain.init_ray(cfg.ray)
    pcfg = cfg.pretrain
    # one extra batch per worker so drop_last never leaves a worker short of max_steps
    total = (pcfg.max_steps + 1) * pcfg.batch_size * cfg.ray.num_workers
    ds = training_stream(manifest, corpus_dir, total, pcfg.alpha, pcfg.seed)
    result = raytrain.fit(
        train_loop,
        {"pretrain": cfg.pretrain.model_dump(), "model": cfg.model.model_dump(),
         "tokenizer_dir": absolute(tokenizer_dir), "threads": cfg.ray.cpus_per_worker},
        {"train": ds}, f"{cfg.run_name}-pretrain", cfg.run_dir, cfg.ray,
    )
    raytrain.export(result.checkpoint, out_dir)
    log.info("pretrain: final loss %.4f at step %d -> %s", result.metrics["loss"], result.metrics["step"], out_dir)
    return {"model_dir": out_dir, **result.metrics}
