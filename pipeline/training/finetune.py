"""Fine-tuning on Ray Train, for any task of `tasks/` (sequence classification, NER, ...).

The task (`finetune.task`) brings its reader, model head, loss and dev score; this module
brings what every task shares. Training and evaluation languages are chosen independently
(zero-shot cross-lingual transfer: train on English, evaluate on all); a main language can
weigh 1 and the others lambda. Strategies: full fine-tune, linear probe (frozen encoder), LoRA
(peft). With a dev set, training stops early when the dev score has not improved for
`patience` epochs, and the best epoch's model is the one exported.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import pyarrow as pa
import torch

from ..config import FinetuneConfig, PipelineConfig
from ..language_codes import matches
from ..storage import absolute, exists, local_dir
from . import raytrain, tasks
from .model import warmup_cosine

log = logging.getLogger(__name__)


def example_weights(langs: list[str], fcfg: FinetuneConfig) -> list[float]:
    """1 for the main language (all languages when none is set), lambda for the others."""
    if not fcfg.main_language:
        return [1.0] * len(langs)
    return [1.0 if matches(l, [fcfg.main_language]) else fcfg.other_language_weight for l in langs]


def apply_strategy(model, fcfg: FinetuneConfig):
    """Full fine-tune (unchanged, or with the token embeddings frozen), linear probe (only the
    classification head trains) or LoRA."""
    head = "classifier" if hasattr(model, "classifier") else "score"
    if fcfg.strategy == "full" and fcfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad = False
        return model
    if fcfg.strategy == "linear_probe":
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith(head)
        return model
    if fcfg.strategy == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        task = getattr(TaskType, tasks.get(fcfg.task).peft_task_type)
        lcfg = LoraConfig(task_type=task, r=fcfg.lora_r, lora_alpha=fcfg.lora_alpha,
                          lora_dropout=fcfg.lora_dropout, target_modules=fcfg.lora_target_modules,
                          modules_to_save=[head])
        try:  # target_modules None: peft's own table of attention projections per architecture
            return get_peft_model(model, lcfg)
        except ValueError as e:
            if fcfg.lora_target_modules:
                raise
            raise ValueError(f"LoRA: peft has no default target modules for model type "
                             f"{model.config.model_type!r}; set finetune.lora_target_modules ({e})") from e
    return model


def dropout_overrides(model_dir: str, dropout: float | None) -> dict[str, float]:
    """Config overrides that set every dropout rate of the model at `model_dir` (names differ
    by architecture: hidden_dropout_prob, attention_dropout, classifier_dropout...)."""
    if dropout is None:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(local_dir(model_dir), local_files_only=True).to_dict()
    return {k: dropout for k in config if "dropout" in k and (config[k] is None or isinstance(config[k], float))}


def exportable(model):
    """The plain HF model to save: LoRA adapters merged into a copy of the weights."""
    inner = raytrain.unwrap(model)
    if hasattr(inner, "merge_and_unload"):
        return copy.deepcopy(inner).merge_and_unload()
    return inner


@torch.inference_mode()
@torch.inference_mode()
def dev_score(model, tokenizer, task, dev: pa.Table, label2id: dict, max_length: int, device) -> float:
    """The task's dev score, with the model in eval mode for it."""
    model.eval()
    try:
        return task.dev_score(model, tokenizer, dev, label2id, max_length, device)
    finally:
        model.train()


def _load(config: dict, fcfg: FinetuneConfig, task):
    """Tokenizer and model with the task's head, from the last checkpoint of this run (resume)
    or from the pretrained model; the strategy applied; wrapped for DDP."""
    import ray.train
    from transformers import AutoTokenizer

    label2id = config["label2id"]
    resumed = raytrain.load_state(ray.train.get_checkpoint(), config["lineage"])
    source = resumed[0] if resumed else config["pretrained_dir"]
    source = local_dir(source)  # a model on s3:// is read from a local copy
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    torch.manual_seed(fcfg.seed)  # identical head (and adapters) on every rank
    model = task.auto_model().from_pretrained(source, local_files_only=True, pad_token_id=tokenizer.pad_token_id,
                                              **task.model_kwargs(label2id), **dropout_overrides(source, fcfg.dropout))
    model = ray.train.torch.prepare_model(apply_strategy(model, fcfg))
    return tokenizer, model, resumed[1] if resumed else None


def _checkpoint_state(optimizer, scheduler, step: int, fcfg: FinetuneConfig, label2id: dict, best: float,
                      since_best: int, lineage: dict) -> dict:
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
            "meta": {"task": fcfg.task, "label2id": label2id, "best_dev": best, "since_best": since_best,
                     "strategy": fcfg.strategy, "lineage": lineage}}


def _restore(state: dict, optimizer, scheduler, fcfg: FinetuneConfig) -> tuple[int, float, int]:
    """Resume where the last checkpoint of this run stopped: (step, best dev score, epochs since it)."""
    if fcfg.strategy != "lora":  # LoRA resumes from merged weights with fresh adapters
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    meta = state.get("meta", {})
    return state["step"], meta.get("best_dev", -1.0), meta.get("since_best", 0)


def _early_stopping(score: float, best: float, since_best: int, patience: int) -> tuple[bool, bool, float, int]:
    """(save this epoch, stop now, best score, epochs since the best) after a dev score."""
    if score > best:
        return True, False, score, 0
    return False, since_best + 1 >= patience, best, since_best + 1


def train_loop(config: dict) -> None:
    import ray.train

    fcfg = FinetuneConfig.model_validate(config["finetune"])
    task = tasks.get(fcfg.task)
    device = raytrain.worker_setup(config["threads"], fcfg.seed)
    rank = ray.train.get_context().get_world_rank()
    label2id, max_length = config["label2id"], config["max_length"]
    steps_per_epoch, total_steps = config["steps_per_epoch"], config["total_steps"]
    tokenizer, model, state = _load(config, fcfg, task)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=fcfg.learning_rate, weight_decay=0.01)
    scheduler = warmup_cosine(optimizer, max(1, steps_per_epoch // 2), total_steps)
    step, best, since_best = _restore(state, optimizer, scheduler, fcfg) if state else (0, -1.0, 0)
    dev = pa.table(config["dev"]) if config.get("dev") else None
    model.train()
    total, n, t0 = 0.0, 0, time.monotonic()
    for batch in raytrain.batches(ray.train.get_dataset_shard("train"), fcfg.batch_size, skip=step, drop_last=False):
        weights = torch.tensor(batch["weight"], dtype=torch.float32).to(device)
        per_example = task.example_losses(model, tokenizer, batch, label2id, max_length, device)
        loss = (per_example * weights).sum() / weights.sum().clamp(min=1e-9)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        total += loss.item()
        n += 1
        if step % steps_per_epoch and step != total_steps:
            continue
        # end of an epoch: dev score, early stopping, checkpoint of the best (or every k-th) epoch
        epoch = -(-step // steps_per_epoch)
        metrics = {"epoch": epoch, "step": step, "loss": total / max(n, 1), "seconds": time.monotonic() - t0}
        save = epoch % fcfg.checkpoint_every_epochs == 0 or step == total_steps
        stop = False
        if dev is not None:  # every rank has the same weights, so the same dev score
            metrics["dev_score"] = dev_score(model, tokenizer, task, dev, label2id, max_length, device)
            save, stop, best, since_best = _early_stopping(metrics["dev_score"], best, since_best, fcfg.patience)
        if rank == 0:
            log.info("finetune epoch %d/%d step %d/%d loss %.4f%s (%.1fs)%s", epoch, fcfg.epochs, step, total_steps,
                     metrics["loss"], f" dev {task.dev_metric} {metrics['dev_score']:.3f}" if dev is not None else "",
                     metrics["seconds"], " early stop" if stop else "")
        state = _checkpoint_state(optimizer, scheduler, step, fcfg, label2id, best, since_best,
                                  config["lineage"]) if save else None
        raytrain.report(metrics, exportable(model) if state else model, tokenizer, state)
        total, n, t0 = 0.0, 0, time.monotonic()
        if stop:
            break


def epoch_stream(table: pa.Table, epochs: int, seed: int) -> pa.Table:
    """All epochs as one table, each epoch a fresh permutation: one pass over it is the run
    (labelled sets are small; this avoids restarting a Ray Data stream every epoch)."""
    rng = np.random.default_rng(seed)
    return pa.concat_tables([table.take(rng.permutation(table.num_rows)) for _ in range(epochs)])


# the labelled data's locations: the workers get the rows, not these (a presigned URL carries a
# credential, and Ray Train keeps the loop config in its state and dashboard)
DATA_PATHS = {"train_path", "dev_path", "test_path", "extra_train_paths"}


def table_sha256(table: pa.Table | None) -> str | None:
    """sha256 of a table's rows (Arrow IPC stream of its columns, in order)."""
    import hashlib

    if table is None:
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue()).hexdigest()


def finetune_lineage(pretrained_dir: str, train: pa.Table, dev: pa.Table | None, label2id: dict,
                     fcfg: FinetuneConfig) -> dict:
    """What a fine-tuning checkpoint is made from: the pretrained model (sha256 of its folder,
    and the corpus manifest and tokenizer its pretraining recorded), the labelled rows it
    trains and selects on, the task and its labels. Recorded in every checkpoint and the
    exported model; a run whose checkpoint says otherwise is refused (`raytrain.check_lineage`),
    and registration checks the model's record against the run's pretrained model and corpus."""
    from ..storage import exists, model_sha256, read_json

    meta = f"{pretrained_dir.rstrip('/')}/trainer_meta.json"
    pretrained = (read_json(meta).get("lineage") or {}) if exists(meta) else {}
    return {"pretrained_sha256": model_sha256(pretrained_dir),
            "manifest_sha256": pretrained.get("manifest_sha256"),
            "tokenizer_sha256": pretrained.get("tokenizer_sha256"),
            "train_sha256": table_sha256(train), "dev_sha256": table_sha256(dev),
            "task": fcfg.task, "label2id": label2id}


def finetune(pretrained_dir: str, out_dir: str, cfg: PipelineConfig) -> dict:
    import ray.data

    fcfg = cfg.finetune
    task = tasks.get(fcfg.task)
    if not exists(f"{pretrained_dir.rstrip('/')}/config.json"):
        raise FileNotFoundError(
            f"no pretrained model at {pretrained_dir} (config.json is missing): pretrain first with "
            f"`babelforge pretrain` (same --config / --run-name), or pass --pretrained DIR")
    train = task.read(fcfg.train_path, fcfg.train_languages)
    if train.num_rows == 0:
        raise ValueError(f"{fcfg.train_path}: no training rows for languages {fcfg.train_languages}")
    for extra in fcfg.extra_train_paths:  # translate-train / paraphrase output: in the target languages on purpose
        more = task.read(extra)
        log.info("finetune: %d more training examples from %s", more.num_rows, extra)
        train = pa.concat_tables([train, more.select(train.column_names)])
    labels = task.labels(train)
    label2id = {l: i for i, l in enumerate(labels)}
    train = train.append_column("weight", pa.array(example_weights(train["lang"].to_pylist(), fcfg), pa.float32()))
    dev = task.read(fcfg.dev_path, fcfg.train_languages) if fcfg.dev_path else None
    run_dir = absolute(cfg.run_dir) if "://" not in cfg.run_dir else cfg.run_dir
    lineage = finetune_lineage(pretrained_dir, train, dev, label2id, fcfg)
    raytrain.check_lineage(run_dir, cfg.ray, f"{cfg.run_name}-finetune", lineage, cfg.run_name)
    raytrain.init_ray(cfg.ray)
    ds = ray.data.from_arrow(epoch_stream(train, fcfg.epochs, fcfg.seed))
    # Ray Train splits the stream equally (remainder dropped): this is each worker's step count
    total_steps = -(-(train.num_rows * fcfg.epochs // cfg.ray.num_workers) // fcfg.batch_size)
    result = raytrain.fit(
        train_loop,
        {"finetune": fcfg.model_dump(exclude=DATA_PATHS), "pretrained_dir": absolute(pretrained_dir),
         "label2id": label2id,
         "threads": cfg.ray.cpus_per_worker, "max_length": cfg.model.max_length,
         "steps_per_epoch": -(-total_steps // fcfg.epochs), "total_steps": total_steps,
         "dev": dev.to_pydict() if dev is not None else None, "lineage": lineage},
        {"train": ds}, f"{cfg.run_name}-finetune", run_dir, cfg.ray,
    )
    raytrain.export(result.checkpoint, out_dir, lineage)
    langs = sorted(set(train["lang"].to_pylist()))
    log.info("finetune (%s): %d rows, %d labels, languages %s, final loss %.4f -> %s", fcfg.strategy, train.num_rows,
             len(labels), langs, result.metrics["loss"], out_dir)
    return {"model_dir": out_dir, "labels": labels, "train_rows": train.num_rows, "train_languages": langs,
            "strategy": fcfg.strategy, **result.metrics}
