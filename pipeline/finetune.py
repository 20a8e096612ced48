"""Fine-tuning: sequence classification from the pretrained checkpoint, on Ray Train.

Labelled data is a TSV with columns `lang`, `label`, `text` (local path or URI). Training
languages are chosen by config (all by default); evaluation covers every language of the
test file, so zero-shot transfer to languages not trained on shows up per language.
"""

from __future__ import annotations

import csv
import io
import logging
import time

import pyarrow as pa
import pyarrow.compute as pc
import torch

from . import raytrain
from .config import PipelineConfig
from .labels import matches, normalize
from .model import encode, warmup_cosine
from .storage import absolute, get_fs

log = logging.getLogger(__name__)
COLUMNS = ("lang", "label", "text")


def read_labelled(uri: str) -> pa.Table:
    """Read a labelled TSV; a row with a missing field is an error naming the file and line."""
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        reader = csv.reader(io.StringIO(f.read().decode("utf-8")), delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != list(COLUMNS):
            raise ValueError(f"{uri}: header must be the tab-separated columns {COLUMNS}, got {header!r}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) < 3 or not all(v.strip() for v in row[:3]):
                raise ValueError(f"{uri}:{lineno}: expected 3 non-empty fields (lang, label, text), got {row!r}")
            try:  # any ISO 639 form ('fr', 'fra', 'fra_Latn') -> the pipeline's canonical label
                lang = normalize(row[0].strip())
            except ValueError as e:
                raise ValueError(f"{uri}:{lineno}: field lang: {e}") from e
            rows.append([lang, row[1], row[2]])
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})


def train_loop(config: dict) -> None:
    import ray.train
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .config import FinetuneConfig

    fcfg = FinetuneConfig.model_validate(config["finetune"])
    device = raytrain.worker_setup(config["threads"], fcfg.seed)
    rank = ray.train.get_context().get_world_rank()
    label2id = config["label2id"]
    resumed = raytrain.load_state(ray.train.get_checkpoint())
    source = resumed[0] if resumed else config["pretrained_dir"]
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    torch.manual_seed(fcfg.seed)  # identical classifier head on every rank
    model = AutoModelForSequenceClassification.from_pretrained(
        source, local_files_only=True, num_labels=len(label2id), label2id=label2id, id2label={v: k for k, v in label2id.items()})
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=fcfg.learning_rate, weight_decay=0.01)
    shard = ray.train.get_dataset_shard("train")
    steps_per_epoch, total_steps = config["steps_per_epoch"], config["total_steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(max(1, steps_per_epoch // 2), total_steps))
    step = 0
    if resumed:
        state = resumed[1]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
    max_length = config["max_length"]
    model.train()
    total, n, t0 = 0.0, 0, time.monotonic()
    for batch in raytrain.batches(shard, fcfg.batch_size, skip=step, drop_last=False):
        enc = encode(tokenizer, batch["text"], max_length)
        labels = torch.tensor([label2id[x] for x in batch["label"]])
        out = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                    labels=labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        total += out.loss.item()
        n += 1
        if step % steps_per_epoch == 0 or step == total_steps:
            epoch = -(-step // steps_per_epoch)
            metrics = {"epoch": epoch, "step": step, "loss": total / max(n, 1), "seconds": time.monotonic() - t0}
            if rank == 0:
                log.info("finetune epoch %d/%d step %d/%d loss %.4f (%.1fs)", epoch, fcfg.epochs, step, total_steps,
                         metrics["loss"], metrics["seconds"])
            if epoch % fcfg.checkpoint_every_epochs == 0 or step == total_steps:
                state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                         "meta": {"task": "sequence_classification", "label2id": label2id}}
                raytrain.report(metrics, model, tokenizer, state)
            total, n, t0 = 0.0, 0, time.monotonic()


def epoch_stream(table: pa.Table, epochs: int, seed: int) -> pa.Table:
    """All epochs as one table, each epoch a fresh permutation: one pass over it is the run
    (labelled sets are small; this avoids restarting a Ray Data stream every epoch)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return pa.concat_tables([table.take(rng.permutation(table.num_rows)) for _ in range(epochs)])


def finetune(pretrained_dir: str, out_dir: str, cfg: PipelineConfig) -> dict:
    import ray.data

    fcfg = cfg.finetune
    train = read_labelled(fcfg.train_path)
    if fcfg.train_languages:
        keep = [matches(l, fcfg.train_languages) for l in train["lang"].to_pylist()]
        train = train.filter(pa.array(keep, pa.bool_()))
    if train.num_rows == 0:
        raise ValueError(f"{fcfg.train_path}: no training rows for languages {fcfg.train_languages}")
    labels = sorted(set(train["label"].to_pylist()))
    label2id = {l: i for i, l in enumerate(labels)}
    raytrain.init_ray(cfg.ray)
    ds = ray.data.from_arrow(epoch_stream(train, fcfg.epochs, fcfg.seed))
    # Ray Train splits the stream equally (remainder dropped): this is each worker's step count
    total_steps = -(-(train.num_rows * fcfg.epochs // cfg.ray.num_workers) // fcfg.batch_size)
    result = raytrain.fit(
        train_loop,
        {"finetune": fcfg.model_dump(), "pretrained_dir": absolute(pretrained_dir), "label2id": label2id,
         "threads": cfg.ray.cpus_per_worker, "max_length": cfg.model.max_length,
         "steps_per_epoch": -(-total_steps // fcfg.epochs), "total_steps": total_steps},
        {"train": ds}, f"{cfg.run_name}-finetune", cfg.run_dir, cfg.ray,
    )
    raytrain.export(result.checkpoint, out_dir)
    log.info("finetune: %d rows, %d labels, %s languages, final loss %.4f -> %s", train.num_rows, len(labels),
             sorted(set(train["lang"].to_pylist())), result.metrics["loss"], out_dir)
    return {"model_dir": out_dir, "labels": labels, "train_rows": train.num_rows,
            "train_languages": sorted(set(train["lang"].to_pylist())), **result.metrics}
