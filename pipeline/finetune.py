"""Fine-tuning: sequence classification from the pretrained checkpoint, on Ray Train.

Labelled data: TSVs with columns `lang`, `label`, `text`, or SIB-200 files (`index_id`,
`category`, `text`) whose language is their folder's name (`sib200/fra_Latn/test.tsv`); paths
may be globs. Training and evaluation languages are chosen independently (zero-shot
cross-lingual transfer: train on English, evaluate on all); a main language can weigh 1 and
the others lambda. Strategies: full fine-tune, linear probe (frozen encoder), LoRA (peft).
With a dev set, training stops early when dev accuracy has not improved for `patience`
epochs, and the best epoch's model is the one exported.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import posixpath
import time

import numpy as np
import pyarrow as pa
import torch

from . import raytrain
from .config import FinetuneConfig, PipelineConfig
from .labels import matches, normalize
from .model import encode, warmup_cosine
from .storage import absolute, expand, get_fs

log = logging.getLogger(__name__)
COLUMNS = ("lang", "label", "text")
SIB_COLUMNS = ("index_id", "category", "text")


def _read_one(uri: str) -> list[list[str]]:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        reader = csv.reader(io.StringIO(f.read().decode("utf-8")), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.strip() for h in (next(reader, None) or [])[:3]]
        if header == list(COLUMNS):
            folder_lang = None
        elif header == list(SIB_COLUMNS):
            folder_lang = posixpath.basename(posixpath.dirname(path))
        else:
            raise ValueError(f"{uri}: header must be the tab-separated columns {COLUMNS} or {SIB_COLUMNS}, got {header!r}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) < 3 or not all(v.strip() for v in row[:3]):
                raise ValueError(f"{uri}:{lineno}: expected 3 non-empty fields {header}, got {row!r}")
            code = folder_lang or row[0].strip()
            try:  # any ISO 639 form ('fr', 'fra', 'fra_Latn') -> the pipeline's canonical label
                lang = normalize(code)
            except ValueError as e:
                raise ValueError(f"{uri}:{lineno}: {'folder name' if folder_lang else 'field lang'}: {e}") from e
            rows.append([lang, row[1].strip(), row[2]])
    return rows


def _read_conll(uri: str) -> list[list]:
    """Sentences of a CoNLL file (`token TAG` per line, blank line between sentences); the
    language is the parent folder's name (masakhaner/swa/train.txt)."""
    fs, path = get_fs(uri)
    folder = posixpath.basename(posixpath.dirname(path))
    try:
        lang = normalize(folder)
    except ValueError as e:
        raise ValueError(f"{uri}: the folder name must be a language code: {e}") from e
    with fs.open(path, "rb") as f:
        lines = f.read().decode("utf-8").splitlines()
    rows, tokens, tags = [], [], []
    for lineno, line in enumerate(lines + [""], start=1):
        if not line.strip():
            if tokens:
                rows.append([lang, tokens, tags])
            tokens, tags = [], []
            continue
        parts = line.split()
        if len(parts) < 2 or not (parts[-1] == "O" or parts[-1][:2] in ("B-", "I-")):
            raise ValueError(f"{uri}:{lineno}: expected 'token TAG' with a BIO tag, got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[-1])
    return rows


def read_tagged(uri: str, languages: list[str] | None = None) -> pa.Table:
    """CoNLL file(s) (path, glob or URI) -> columns lang, tokens, tags."""
    rows = [r for f in expand([uri]) for r in _read_conll(f)]
    if languages:
        rows = [r for r in rows if matches(r[0], languages)]
    return pa.table({"lang": [r[0] for r in rows], "tokens": [r[1] for r in rows], "tags": [r[2] for r in rows]})


def read_examples(uri: str, task: str, languages: list[str] | None = None) -> pa.Table:
    return read_tagged(uri, languages) if task == "token_classification" else read_labelled(uri, languages)


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Micro entity precision / recall / F1 over sentences (exact span and type), by seqeval in
    its conlleval mode (what NER papers report: an I- tag that does not continue an entity of
    its type starts one); `entities`: the number of gold entities."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    args = dict(zero_division=0)
    return {"precision": round(float(precision_score(gold, pred, **args)), 4),
            "recall": round(float(recall_score(gold, pred, **args)), 4),
            "f1": round(float(f1_score(gold, pred, **args)), 4),
            "entities": sum(len(get_entities(g)) for g in gold)}


def encode_words(tokenizer, words: list[list[str]], max_length: int, tags: list[list[str]] | None = None,
                 label2id: dict | None = None):
    """Tokenise pre-split words; the first piece of each word carries its tag, the other pieces
    and special tokens -100. Returns (encoding, labels or None, word ids per row)."""
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt")
    word_ids = [enc.word_ids(i) for i in range(len(words))]
    labels = None
    if tags is not None:
        labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
        for i, ids in enumerate(word_ids):
            prev = None
            for j, w in enumerate(ids):
                if w is not None and w != prev:
                    labels[i, j] = label2id[tags[i][w]]
                prev = w
    return enc, labels, word_ids


def predict_tags(model, tokenizer, words: list[list[str]], id2label: dict, max_length: int, device,
                 batch_size: int = 32) -> list[list[str]]:
    """Tag per word (from its first piece); words cut off by truncation get 'O'."""
    out = []
    for b in range(0, len(words), batch_size):
        chunk = words[b : b + batch_size]
        enc, _, word_ids = encode_words(tokenizer, chunk, max_length)
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
        best = logits.argmax(-1).cpu()
        for i, ids in enumerate(word_ids):
            tags = ["O"] * len(chunk[i])
            prev = None
            for j, w in enumerate(ids):
                if w is not None and w != prev:
                    tags[w] = id2label[int(best[i, j])]
                prev = w
            out.append(tags)
    return out


def read_labelled(uri: str, languages: list[str] | None = None) -> pa.Table:
    """Read labelled TSV(s) (a path, glob or URI); a bad row is an error naming file and line.
    `languages`: keep only these (normalised codes; empty or None: all)."""
    rows = [r for f in expand([uri]) for r in _read_one(f)]
    if languages:
        rows = [r for r in rows if matches(r[0], languages)]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})


def example_weights(langs: list[str], fcfg: FinetuneConfig) -> list[float]:
    """1 for the main language (all languages when none is set), lambda for the others."""
    if not fcfg.main_language:
        return [1.0] * len(langs)
    return [1.0 if matches(l, [fcfg.main_language]) else fcfg.other_language_weight for l in langs]


def apply_strategy(model, fcfg: FinetuneConfig):
    """Full fine-tune (unchanged), linear probe (only the classification head trains) or LoRA."""
    head = "classifier" if hasattr(model, "classifier") else "score"
    if fcfg.strategy == "linear_probe":
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith(head)
        return model
    if fcfg.strategy == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        task = TaskType.TOKEN_CLS if fcfg.task == "token_classification" else TaskType.SEQ_CLS
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


def exportable(model):
    """The plain HF model to save: LoRA adapters merged into a copy of the weights."""
    inner = raytrain.unwrap(model)
    if hasattr(inner, "merge_and_unload"):
        return copy.deepcopy(inner).merge_and_unload()
    return inner


@torch.inference_mode()
def dev_score(model, tokenizer, dev: pa.Table, label2id: dict, max_length: int, device, task: str,
              batch_size: int = 64) -> float:
    """Accuracy (sequence classification) or entity F1 (token classification) on the dev set."""
    model.eval()
    try:
        if task == "token_classification":
            words = dev["tokens"].to_pylist()
            pred = predict_tags(model, tokenizer, words, {v: k for k, v in label2id.items()}, max_length, device)
            return entity_f1(dev["tags"].to_pylist(), pred)["f1"]
        texts, gold = dev["text"].to_pylist(), [label2id.get(x, -1) for x in dev["label"].to_pylist()]
        right = 0
        for b in range(0, len(texts), batch_size):
            enc = encode(tokenizer, texts[b : b + batch_size], max_length)
            logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
            right += sum(int(p) == g for p, g in zip(logits.argmax(-1).cpu(), gold[b : b + batch_size]))
        return right / max(len(texts), 1)
    finally:
        model.train()


def example_losses(model, tokenizer, batch: dict, label2id: dict, max_length: int, device, task: str) -> torch.Tensor:
    """Loss per example: cross-entropy of its label, or the mean over its tagged words."""
    if task == "token_classification":
        words = [list(w) for w in batch["tokens"]]
        enc, labels, _ = encode_words(tokenizer, words, max_length, [list(t) for t in batch["tags"]], label2id)
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
        labels = labels.to(device)
        loss = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100,
                                                 reduction="none")
        return loss.sum(1) / (labels != -100).sum(1).clamp(min=1)
    enc = encode(tokenizer, batch["text"], max_length)
    labels = torch.tensor([label2id[x] for x in batch["label"]], device=device)
    logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
    return torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")


def train_loop(config: dict) -> None:
    import ray.train
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    fcfg = FinetuneConfig.model_validate(config["finetune"])
    auto = AutoModelForTokenClassification if fcfg.task == "token_classification" else AutoModelForSequenceClassification
    device = raytrain.worker_setup(config["threads"], fcfg.seed)
    rank = ray.train.get_context().get_world_rank()
    label2id = config["label2id"]
    resumed = raytrain.load_state(ray.train.get_checkpoint())
    source = resumed[0] if resumed else config["pretrained_dir"]
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    torch.manual_seed(fcfg.seed)  # identical classifier head (and adapters) on every rank
    model = auto.from_pretrained(
        source, local_files_only=True, num_labels=len(label2id), label2id=label2id,
        id2label={v: k for k, v in label2id.items()}, pad_token_id=tokenizer.pad_token_id)
    model = apply_strategy(model, fcfg)
    model = ray.train.torch.prepare_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=fcfg.learning_rate, weight_decay=0.01)
    shard = ray.train.get_dataset_shard("train")
    steps_per_epoch, total_steps = config["steps_per_epoch"], config["total_steps"]
    scheduler = warmup_cosine(optimizer, max(1, steps_per_epoch // 2), total_steps)
    step, best, since_best = 0, -1.0, 0
    if resumed:
        state = resumed[1]
        if fcfg.strategy != "lora":  # LoRA resumes from merged weights with fresh adapters
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        best, since_best = state.get("meta", {}).get("best_dev", -1.0), state.get("meta", {}).get("since_best", 0)
    dev = pa.table(config["dev"]) if config.get("dev") else None
    max_length = config["max_length"]
    model.train()
    total, n, t0 = 0.0, 0, time.monotonic()
    for batch in raytrain.batches(shard, fcfg.batch_size, skip=step, drop_last=False):
        weights = torch.tensor(batch["weight"], dtype=torch.float32)
        per_example = example_losses(model, tokenizer, batch, label2id, max_length, device, fcfg.task)
        loss = (per_example * weights.to(device)).sum() / weights.sum().clamp(min=1e-9)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        total += loss.item()
        n += 1
        if step % steps_per_epoch == 0 or step == total_steps:
            epoch = -(-step // steps_per_epoch)
            metrics = {"epoch": epoch, "step": step, "loss": total / max(n, 1), "seconds": time.monotonic() - t0}
            save = epoch % fcfg.checkpoint_every_epochs == 0 or step == total_steps
            stop = False
            if dev is not None:  # every rank has the same weights, so the same dev accuracy
                metrics["dev_score"] = dev_score(model, tokenizer, dev, label2id, max_length, device, fcfg.task)
                improved = metrics["dev_score"] > best
                best, since_best = (metrics["dev_score"], 0) if improved else (best, since_best + 1)
                save, stop = improved, since_best >= fcfg.patience
            if rank == 0:
                log.info("finetune epoch %d/%d step %d/%d loss %.4f%s (%.1fs)%s", epoch, fcfg.epochs, step, total_steps,
                         metrics["loss"], f" dev {'entity F1' if fcfg.task == 'token_classification' else 'accuracy'} "
                         f"{metrics['dev_score']:.3f}" if dev is not None else "",
                         metrics["seconds"], " early stop" if stop else "")
            state = None
            if save:
                state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                         "meta": {"task": fcfg.task, "label2id": label2id, "best_dev": best,
                                  "since_best": since_best, "strategy": fcfg.strategy}}
            raytrain.report(metrics, exportable(model) if state else model, tokenizer, state)
            total, n, t0 = 0.0, 0, time.monotonic()
            if stop:
                break


def epoch_stream(table: pa.Table, epochs: int, seed: int) -> pa.Table:
    """All epochs as one table, each epoch a fresh permutation: one pass over it is the run
    (labelled sets are small; this avoids restarting a Ray Data stream every epoch)."""
    rng = np.random.default_rng(seed)
    return pa.concat_tables([table.take(rng.permutation(table.num_rows)) for _ in range(epochs)])


def finetune(pretrained_dir: str, out_dir: str, cfg: PipelineConfig) -> dict:
    import ray.data

    fcfg = cfg.finetune
    from .storage import exists

    if not exists(f"{pretrained_dir.rstrip('/')}/config.json"):
        raise FileNotFoundError(
            f"no pretrained model at {pretrained_dir} (config.json is missing): pretrain first with "
            f"`babelforge pretrain` (same --config / --run-name), or pass --pretrained DIR")
    train = read_examples(fcfg.train_path, fcfg.task, fcfg.train_languages)
    if train.num_rows == 0:
        raise ValueError(f"{fcfg.train_path}: no training rows for languages {fcfg.train_languages}")
    if fcfg.task == "token_classification":
        labels = sorted({t for tags in train["tags"].to_pylist() for t in tags})
    else:
        labels = sorted(set(train["label"].to_pylist()))
    label2id = {l: i for i, l in enumerate(labels)}
    train = train.append_column("weight", pa.array(example_weights(train["lang"].to_pylist(), fcfg), pa.float32()))
    dev = read_examples(fcfg.dev_path, fcfg.task, fcfg.train_languages) if fcfg.dev_path else None
    raytrain.init_ray(cfg.ray)
    ds = ray.data.from_arrow(epoch_stream(train, fcfg.epochs, fcfg.seed))
    # Ray Train splits the stream equally (remainder dropped): this is each worker's step count
    total_steps = -(-(train.num_rows * fcfg.epochs // cfg.ray.num_workers) // fcfg.batch_size)
    result = raytrain.fit(
        train_loop,
        {"finetune": fcfg.model_dump(), "pretrained_dir": absolute(pretrained_dir), "label2id": label2id,
         "threads": cfg.ray.cpus_per_worker, "max_length": cfg.model.max_length,
         "steps_per_epoch": -(-total_steps // fcfg.epochs), "total_steps": total_steps,
         "dev": dev.to_pydict() if dev is not None else None},
        {"train": ds}, f"{cfg.run_name}-finetune", absolute(cfg.run_dir) if "://" not in cfg.run_dir else cfg.run_dir,
        cfg.ray,
    )
    raytrain.export(result.checkpoint, out_dir)
    langs = sorted(set(train["lang"].to_pylist()))
    log.info("finetune (%s): %d rows, %d labels, languages %s, final loss %.4f -> %s", fcfg.strategy, train.num_rows,
             len(labels), langs, result.metrics["loss"], out_dir)
    return {"model_dir": out_dir, "labels": labels, "train_rows": train.num_rows, "train_languages": langs,
            "strategy": fcfg.strategy, **result.metrics}
