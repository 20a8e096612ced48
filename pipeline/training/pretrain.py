"""Pretraining on the corpus shards with Ray Train: masked LM (BERT / XLM-R style encoder) or
causal LM (Llama-style decoder), DDP or FSDP, CPU (gloo) or GPU (NCCL, bf16 autocast).

Data path, all in Ray Data on CPU workers: the manifest's training shards read chunk by chunk
(row groups) in a seeded order, each language drawn at its rate of the temperature-sampling plan
(alpha from the config or the manifest), rows shuffled within windows of `pretrain.shuffle_buffer`
(`stream`: no global shuffle) -> tokenise (`tokenize_batch`: one padded sequence per document for
masked LM; for causal LM documents of one language are concatenated with </s> and cut into
full sequences, "packing") -> each training worker's equal split via
`ray.train.get_dataset_shard`. Masking is dynamic (drawn per step on the worker).

Each optimizer step accumulates `grad_accum_steps` micro-batches, clips the gradient norm, and
follows warmup + cosine. Every `log_every` steps the workers report the loss overall and per
language (summed over all workers), tokens/s, the learning rate and, on GPU, an MFU estimate.
Every `checkpoint_every` steps a checkpoint goes through `ray.train.report` (tokenizer,
optimizer, scheduler, step = data position, RNG states; weights as safetensors from rank 0
under DDP, as every rank's own shard under FSDP: `raytrain.report`); a
failed worker is replaced and training resumes from the latest one (FailureConfig), and
rerunning with the same run name resumes too.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
import zlib
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ..config import PipelineConfig
from ..corpus.shard import mixing_plan, verify_corpus
from ..storage import absolute, is_remote, join, local_dir
from . import alignment, raytrain
from .model import (
    SelectiveLM,
    build_model,
    check_pretrained,
    flops_per_token,
    lm_targets,
    load_model,
    mask_tokens,
    selected_losses,
    warmup_cosine,
)

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per GPU, for the MFU estimate (NVIDIA data sheets, SXM parts).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


# ---------------------------------------------------------------- data path (Ray Data, CPU)

@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_dir(path), local_files_only=True)


def tokenize_batch(batch: pa.Table, tokenizer_dir: str, objective: str, seq_len: int,
                   seed: int = 0, synthetic_tag: str | None = None) -> dict[str, np.ndarray]:
    """Documents -> fixed-length training sequences with their language. Masked LM: one
    sequence per document, truncated and padded. Causal LM: the documents of each language
    are joined with </s> and cut into sequences of exactly `seq_len` tokens (packing; the tail
    of each language in a batch, shorter than one sequence, is dropped), then the sequences
    are put in a seeded random order so training batches mix languages. With `synthetic_tag`
    (the manifest's, tagged back-translation), augmented documents start with that token."""
    tok = _tokenizer(tokenizer_dir)
    texts, langs = batch["text"].to_pylist(), batch["lang"].to_pylist()
    if synthetic_tag and "augmented" in batch.column_names:
        texts = [f"{synthetic_tag} {t}" if a else t for t, a in zip(texts, batch["augmented"].to_pylist())]
    if objective == "masked_lm":
        enc = tok(texts, truncation=True, max_length=seq_len, padding="max_length")
        return {"input_ids": np.array(enc["input_ids"], np.int32).reshape(-1, seq_len),
                "lang": np.array(langs, dtype=object)}
    streams: dict[str, list[int]] = {}
    for ids, lang in zip(tok(texts)["input_ids"], langs):
        streams.setdefault(lang, []).extend(ids + [tok.eos_token_id])
    rows, row_langs = [], []
    for lang in sorted(streams):
        s = streams[lang]
        for k in range(0, len(s) - seq_len + 1, seq_len):
            rows.append(s[k : k + seq_len])
            row_langs.append(lang)
    order = np.random.default_rng([seed, zlib.crc32((texts[0] if texts else "").encode())]).permutation(len(rows))
    return {"input_ids": np.array(rows, np.int32).reshape(-1, seq_len)[order],
            "lang": np.array(row_langs, dtype=object)[order]}


def training_stream(manifest: dict, corpus_dir: str, total_rows: int, alpha: float | None, seed: int,
                    tokenizer_dir: str | None = None, objective: str = "masked_lm", seq_len: int = 64,
                    buffer_rows: int = 8192):
    """One Ray Dataset holding the whole training stream: every language drawn at its rate in
    the temperature-sampling plan (`mixing_plan`), in shuffled chunk order with a local
    shuffle window of ~`buffer_rows` documents (`stream`; no global shuffle), and (with
    `tokenizer_dir`) tokenised into training sequences. One pass over it is the run."""
    from .stream import mixed_stream

    plan = mixing_plan(manifest, total_rows, alpha)
    rates = {lang: n / manifest["languages"][lang]["train_rows"] for lang, n in plan.items()}
    files = [(join(corpus_dir, s["path"]), s["lang"]) for s in manifest["shards"] if s["split"] == "train"]
    if not files:
        raise ValueError(f"{corpus_dir}: manifest lists no training shards")
    log.info("pretrain: language mix for %d documents: %s", total_rows, plan)
    ds = mixed_stream(files, rates, ["id", "text", "lang", "augmented"], seed, buffer_rows, corpus_dir)
    if tokenizer_dir:
        ds = ds.map_batches(tokenize_batch, batch_size=256, batch_format="pyarrow",
                            fn_kwargs={"tokenizer_dir": tokenizer_dir, "objective": objective, "seq_len": seq_len,
                                       "seed": seed, "synthetic_tag": manifest.get("synthetic_tag")})
    return ds


# ---------------------------------------------------------------- training loop (Ray Train worker)

def _rng_state(gen: torch.Generator) -> dict:
    """This process's RNG states as tensors and plain values (a checkpoint is read with
    `weights_only=True`: numpy's and Python's own state objects would need pickle)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "mask": gen.get_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next}}


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["mask"])
    n, p = state["numpy"], state["python"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((p["version"], tuple(int(w) for w in p["words"].tolist()), p["gauss_next"]))


def _language_losses(langs: list[str], index: dict[str, int], seq_loss: torch.Tensor, seq_n: torch.Tensor,
                     acc: torch.Tensor) -> None:
    """Add this micro-batch's summed loss and target count per language into acc[lang, :]."""
    ids = torch.tensor([index[l] for l in langs])
    acc[:, 0].index_add_(0, ids, seq_loss.detach().double().cpu())
    acc[:, 1].index_add_(0, ids, seq_n.double().cpu())


def _load_model(config: dict, mcfg, pcfg, device):
    """Tokenizer, the model wrapped for its strategy (DDP or FSDP2), its FLOPs per token, and
    the checkpoint state to resume from (None on a fresh start; then every rank builds the
    same initial weights from the seed)."""
    import ray.train
    from transformers import AutoTokenizer

    resumed = raytrain.load_state(ray.train.get_checkpoint(), config.get("lineage"))
    if resumed:
        ckpt_dir, state = resumed
        tokenizer = AutoTokenizer.from_pretrained(ckpt_dir, local_files_only=True)
        # a sharded (FSDP) checkpoint: the architecture here, its weights once sharded (`_restore`)
        model = load_model(ckpt_dir, mcfg.objective, weights=not raytrain.is_sharded(ckpt_dir))
        state = {**state, "dir": ckpt_dir}
    else:
        state = None
        tokenizer = AutoTokenizer.from_pretrained(local_dir(config["tokenizer_dir"]), local_files_only=True)
        torch.manual_seed(pcfg.seed)  # identical initial weights on every rank
        model = build_model(mcfg, tokenizer)
    flops_tok = flops_per_token(model)
    model = SelectiveLM(model, pcfg.length_buckets)  # logits only where a loss needs them; length buckets
    if pcfg.compile:
        model = torch.compile(model)
    if config["strategy"] == "fsdp":
        model = raytrain.shard_fsdp(model, device)
    else:
        model = ray.train.torch.prepare_model(model)
    return tokenizer, model, flops_tok, state


def _restore(state: dict, model, optimizer, scheduler, gen: torch.Generator, rank: int, world: int) -> int:
    """Optimizer, scheduler and this rank's RNG from a checkpoint (and, from a sharded one, the
    weights, resharded over this run's workers); returns its step (which is also the data
    position: the stream skips what was trained on)."""
    if raytrain.is_sharded(state["dir"]):
        raytrain.load_sharded(state["dir"], model, optimizer)
    else:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "rng" in state and state.get("world") == world:
        _set_rng_state(state["rng"][rank], gen)
    elif rank == 0:
        log.warning("pretrain: checkpoint of %s workers resumed on %d: weights and optimizer resharded; each worker "
                    "skips its first %d batches of its new split, so the data position is approximate",
                    state.get("world"), world, state["step"])
    if rank == 0:
        log.info("pretrain: resumed at step %d", state["step"])
    return state["step"]


def _hand_on(state: dict, model, optimizer, tokenizer, step: int, max_steps: int, rank: int) -> None:
    """A rerun of a finished run: report the latest checkpoint on unchanged."""
    if rank == 0:
        log.info("pretrain: already at step %d of %d; nothing to train", step, max_steps)
    meta = json.loads(Path(state["dir"], "trainer_meta.json").read_text())
    metrics = {k: v for k, v in meta.items() if k in ("step", "lr", "tokens_per_s") or k.startswith("loss")}
    ckpt = {k: v for k, v in state.items() if k != "dir"}
    ckpt.update(final=True, optimizer=raytrain.optimizer_state(model, optimizer))
    kept = {k: v for k, v in meta.items() if k not in metrics and k != "sharded"}  # all it recorded, lineage too
    raytrain.report(metrics, model, tokenizer, {**ckpt, "meta": kept})


def _lm_rows(ids: torch.Tensor, tokenizer, causal: bool, pcfg, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of language-model rows: dynamic masking, or next-token labels."""
    if causal:
        return ids, ids.masked_fill(ids == tokenizer.pad_token_id, -100)
    return mask_tokens(ids, tokenizer, pcfg.mask_probability, gen)


def _token_dropout(ids: torch.Tensor, tokenizer, p: float, gen) -> torch.Tensor:
    """`ids` with a share `p` of each row's inner tokens (not padding, not the first and last
    token of the row: [CLS] / [SEP], <s> / </s>) replaced by the mask token (unknown token
    without one)."""
    if p <= 0:
        return ids
    real = ids != tokenizer.pad_token_id
    lengths = real.sum(dim=1, keepdim=True)
    pos = torch.arange(ids.size(1)).expand_as(ids)
    inner = real & (pos > 0) & (pos < lengths - 1)
    drop = inner & (torch.rand(ids.shape, generator=gen) < p)
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    return ids.masked_fill(drop, mask_id)


def _group(ids: torch.Tensor, pad: int, labels: torch.Tensor | None, causal: bool, positions: torch.Tensor | None,
           segments: torch.Tensor | None, config, device) -> tuple[dict, torch.Tensor | None]:
    """One group of rows for `SelectiveLM`: trimmed to its longest row, with the positions whose
    logits its loss needs; (group, their targets)."""
    attention = (ids != pad).long()
    width = max(1, int(attention.sum(dim=1).max()))
    g = {"input_ids": ids[:, :width].to(device), "attention_mask": attention[:, :width].to(device)}
    if positions is not None:  # explicit positions (reset per side in TLM rows) and segments
        g["position_ids"] = (positions[:, :width] + alignment.position_offset(config)).to(device)
        if segments is not None and not causal and alignment.uses_segments(config):
            g["token_type_ids"] = segments[:, :width].to(device)
    targets = None
    if labels is not None:
        select, targets = lm_targets(labels[:, :width], causal)
        g["select"] = select.to(device)
        targets = targets.to(device)
    return g, targets


def _micro_step(model, tokenizer, batch: dict, pairs: dict | None, causal: bool, pcfg, gen, device, autocast,
                sync: bool) -> dict:
    """Forward and backward of one micro-batch (gradients scaled for accumulation): the
    documents' LM rows and, from the translation pairs, TLM rows (a pair as one sequence),
    pair-LM rows (each side alone, masked) and contrastive rows (each side alone, clean), each
    kind as its own group of rows trimmed to its own width, all in one forward through the
    model (so DDP reduces the gradients once). Returns per-sequence losses and target counts
    per objective, and the tokens seen."""
    pad = tokenizer.pad_token_id
    config = raytrain.unwrap(model).config
    ids = torch.as_tensor(batch["input_ids"], dtype=torch.long)
    inp, labels = _lm_rows(ids, tokenizer, causal, pcfg, gen)
    aligned = pairs is not None
    arange = (lambda x: torch.arange(x.size(1)).expand(x.size(0), -1)) if aligned else (lambda x: None)
    groups = {"lm": _group(inp, pad, labels, causal, arange(inp), None, config, device)}
    if aligned and pcfg.tlm_weight > 0:
        inp, labels = _lm_rows(torch.as_tensor(pairs["tlm_ids"], dtype=torch.long), tokenizer, causal, pcfg, gen)
        groups["tlm"] = _group(inp, pad, labels, causal, torch.as_tensor(pairs["tlm_pos"], dtype=torch.long),
                               torch.as_tensor(pairs["tlm_seg"], dtype=torch.long), config, device)
    sides = torch.cat([torch.as_tensor(pairs[s], dtype=torch.long) for s in ("a_ids", "b_ids")]) if aligned else None
    if aligned and pcfg.pair_lm_weight > 0:  # each side of a pair as a monolingual sentence
        inp, labels = _lm_rows(sides, tokenizer, causal, pcfg, gen)
        groups["pair_lm"] = _group(inp, pad, labels, causal, arange(inp), None, config, device)
    if aligned and pcfg.contrastive_weight > 0:
        rows = _token_dropout(sides, tokenizer, pcfg.contrastive_token_dropout, gen)
        groups["contrastive"] = _group(rows, pad, None, causal, arange(rows), None, config, device)
    weights = {"lm": pcfg.lm_weight, "tlm": pcfg.tlm_weight, "pair_lm": pcfg.pair_lm_weight}
    out: dict = {}
    with (nullcontext() if sync else model.no_sync()), autocast:
        results = dict(zip(groups, model([g for g, _ in groups.values()])))
        loss = 0.0
        for name, (hidden, logits) in results.items():
            g, targets = groups[name]
            if name == "contrastive":
                n = len(pairs["a_ids"])
                z = alignment.pool(hidden, g["attention_mask"], pcfg.contrastive_pooling)
                keys = alignment.row_keys(sides).to(device)
                c_loss, correct = alignment.contrastive_losses(z[:n], z[n:], pcfg.contrastive_temperature,
                                                               pcfg.gather_negatives, keys[:n], keys[n:],
                                                               pcfg.contrastive_margin)
                loss = loss + pcfg.contrastive_weight * c_loss.mean()
                out[name] = (c_loss, correct)
                continue
            seq_loss, seq_n = selected_losses(logits, targets, g["select"])
            loss = loss + weights[name] * seq_loss.sum() / seq_n.sum().clamp(min=1)
            if name == "pair_lm":  # per pair: both sides together
                n = len(pairs["a_ids"])
                seq_loss, seq_n = seq_loss[:n] + seq_loss[n:], seq_n[:n] + seq_n[n:]
            out[name] = (seq_loss, seq_n)
    (loss / pcfg.grad_accum_steps).backward()
    out["tokens"] = sum(int(g["attention_mask"].sum()) for g, _ in groups.values())  # every token through the model
    return out


def _inject_failure(config: dict, step: int, rank: int) -> None:
    """Fault injection for the killed-worker test: the last rank SIGKILLs itself once."""
    marker = Path(config["failure_marker"])
    if not marker.exists():
        marker.write_text(f"worker {rank} killed itself at step {step}\n")
        log.warning("pretrain: injected failure: rank %d sends itself SIGKILL at step %d", rank, step)
        os.kill(os.getpid(), signal.SIGKILL)


PAIR_STATS = 7  # per language pair: TLM loss, targets; contrastive loss, pairs, ranked first; pair-LM loss, targets


def _pair_losses(keys: list[str], index: dict[str, int], out: dict, acc: torch.Tensor) -> None:
    """Add this micro-batch's pair-objective losses per language pair into acc[pair, :]
    (columns: PAIR_STATS)."""
    ids = torch.tensor([index[k] for k in keys])
    if "tlm" in out:
        acc[:, 0].index_add_(0, ids, out["tlm"][0].detach().double().cpu())
        acc[:, 1].index_add_(0, ids, out["tlm"][1].double().cpu())
    if "pair_lm" in out:
        acc[:, 5].index_add_(0, ids, out["pair_lm"][0].detach().double().cpu())
        acc[:, 6].index_add_(0, ids, out["pair_lm"][1].double().cpu())
    if "contrastive" in out:
        acc[:, 2].index_add_(0, ids, out["contrastive"][0].detach().double().cpu())
        acc[:, 3].index_add_(0, ids, torch.ones(len(keys), dtype=torch.float64))
        acc[:, 4].index_add_(0, ids, out["contrastive"][1].double().cpu())


def _metrics(step: int, lang_acc: torch.Tensor, pair_acc: torch.Tensor, tokens: int, elapsed: float,
             languages: list[str], pairs: list[str], lr: float, flops_tok: float, peak: float | None,
             world: int) -> dict:
    """Loss overall and per language (and per objective and language pair when aligning),
    summed over workers (all-reduce), tokens/s and MFU."""
    import torch.distributed as dist

    totals = torch.cat([lang_acc.flatten(), pair_acc.flatten(), torch.tensor([float(tokens)], dtype=torch.float64)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    acc = totals[: lang_acc.numel()].view(-1, 2)
    p_acc = totals[lang_acc.numel() : -1].view(-1, PAIR_STATS)
    metrics = {"step": step, "loss": float(acc[:, 0].sum() / acc[:, 1].sum().clamp(min=1)),
               "lr": lr, "tokens_per_s": float(totals[-1]) / max(elapsed, 1e-9)}
    metrics.update({f"loss/{l}": round(float(acc[i, 0] / acc[i, 1]), 5)
                    for i, l in enumerate(languages) if acc[i, 1] > 0})
    for name, (num, den) in (("tlm_loss", (0, 1)), ("contrastive_loss", (2, 3)), ("contrastive_acc", (4, 3)),
                             ("pair_lm_loss", (5, 6))):
        if p_acc[:, den].sum() > 0:
            metrics[name] = round(float(p_acc[:, num].sum() / p_acc[:, den].sum()), 5)
            metrics.update({f"{name}/{k}": round(float(p_acc[i, num] / p_acc[i, den]), 5)
                            for i, k in enumerate(pairs) if p_acc[i, den] > 0})
    if peak:
        metrics["mfu"] = metrics["tokens_per_s"] * flops_tok / (peak * world)
    return metrics


def _checkpoint(model, optimizer, scheduler, gen, step: int, world: int, objective: str, accum: int,
                lineage: dict, final: bool) -> dict:
    """Optimizer, scheduler, step and every rank's RNG state (gathered), for an exact resume."""
    import torch.distributed as dist

    gathered = [None] * world
    if dist.is_available() and dist.is_initialized():
        dist.all_gather_object(gathered, _rng_state(gen))
    else:
        gathered = [_rng_state(gen)]
    return {"optimizer": raytrain.optimizer_state(model, optimizer), "scheduler": scheduler.state_dict(),
            "step": step, "world": world, "rng": gathered, "final": final,
            "meta": {"objective": objective, "data_position_batches": step * accum * world, "lineage": lineage}}


def train_loop(config: dict) -> None:
    import ray.train

    from ..config import ModelConfig, PretrainConfig

    pcfg = PretrainConfig.model_validate(config["pretrain"])
    mcfg = ModelConfig.model_validate(config["model"])
    causal = mcfg.objective == "causal_lm"
    device = raytrain.worker_setup(config["threads"], pcfg.seed)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    languages: list[str] = config["languages"]
    lang_index = {l: i for i, l in enumerate(languages)}

    tokenizer, model, flops_tok, state = _load_model(config, mcfg, pcfg, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=pcfg.learning_rate, weight_decay=pcfg.weight_decay)
    scheduler = warmup_cosine(optimizer, pcfg.warmup_steps, pcfg.max_steps)
    gen = torch.Generator().manual_seed(pcfg.seed * 1000 + rank)
    step = _restore(state, model, optimizer, scheduler, gen, rank, world) if state else 0
    if step >= pcfg.max_steps:
        _hand_on(state, model, optimizer, tokenizer, step, pcfg.max_steps, rank)
        return
    bf16 = pcfg.precision == "bf16" or (pcfg.precision == "auto" and device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    peak = peak_flops(device)
    accum = pcfg.grad_accum_steps
    micro = raytrain.batches(ray.train.get_dataset_shard("train"), pcfg.batch_size, skip=step * accum,
                             repeat_until=pcfg.max_steps * accum)
    pairs = config.get("pairs") or []
    pair_index = {k: i for i, k in enumerate(pairs)}
    pair_micro = raytrain.batches(ray.train.get_dataset_shard("pairs"), pcfg.pair_batch_size, skip=step * accum,
                                  repeat_until=pcfg.max_steps * accum) if pairs else None
    model.train()
    lang_acc = torch.zeros(len(languages), 2, dtype=torch.float64)
    pair_acc = torch.zeros(len(pairs), PAIR_STATS, dtype=torch.float64)
    tokens, t0 = 0, time.monotonic()
    while step < pcfg.max_steps:
        optimizer.zero_grad(set_to_none=True)
        for k in range(accum):
            batch = next(micro, None)
            pair_batch = next(pair_micro, None) if pair_micro else None
            if batch is None or (pair_micro and pair_batch is None):
                raise RuntimeError(f"pretrain: data ran out at step {step} (rank {rank})")
            sync = k == accum - 1 or not hasattr(model, "no_sync")
            out = _micro_step(model, tokenizer, batch, pair_batch, causal, pcfg, gen, device, autocast, sync)
            _language_losses(list(batch["lang"]), lang_index, *out["lm"], lang_acc)
            if pair_batch is not None:
                _pair_losses(list(pair_batch["pair"]), pair_index, out, pair_acc)
            tokens += out["tokens"]
        torch.nn.utils.clip_grad_norm_(model.parameters(), pcfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        done = step >= pcfg.max_steps
        if pcfg.inject_failure_at_step == step and rank == world - 1:
            _inject_failure(config, step, rank)
        if step % pcfg.log_every and step % pcfg.checkpoint_every and not done:
            continue
        metrics = _metrics(step, lang_acc, pair_acc, tokens, time.monotonic() - t0, languages, pairs,
                           scheduler.get_last_lr()[0], flops_tok, peak, world)
        if rank == 0:
            aligned = "".join(f" {k} {metrics[k]:.4f}" for k in ("tlm_loss", "contrastive_loss", "contrastive_acc",
                                                                  "pair_lm_loss")
                              if k in metrics)
            log.info("pretrain step %d/%d loss %.4f%s lr %.2e %.0f tok/s%s", step, pcfg.max_steps, metrics["loss"],
                     aligned, metrics["lr"], metrics["tokens_per_s"],
                     f" MFU {metrics['mfu']:.1%}" if "mfu" in metrics else "")
            if config.get("metrics_path"):  # the whole history, one JSON line per report
                with open(config["metrics_path"], "a", encoding="utf-8") as f:
                    f.write(json.dumps(metrics) + "\n")
        save = step % pcfg.checkpoint_every == 0 or done
        ckpt = _checkpoint(model, optimizer, scheduler, gen, step, world, mcfg.objective, accum,
                           config.get("lineage", {}), done) if save else None
        raytrain.report(metrics, model, tokenizer, ckpt)
        lang_acc.zero_()
        pair_acc.zero_()
        tokens, t0 = 0, time.monotonic()


def _failure_marker(out_dir: str, run_name: str) -> str:
    """Where the fault-injection test notes it has killed a worker (once per run)."""
    import tempfile

    base = Path(tempfile.gettempdir(), f"babelforge-{run_name}") if is_remote(out_dir) else Path(absolute(out_dir)).parent
    base.mkdir(parents=True, exist_ok=True)
    return str(base / ".injected-failure")


def _metrics_path(run_dir: str) -> str | None:
    """<run>/eval/pretrain-metrics.jsonl for a local run directory (rank 0 appends to it)."""
    if "://" in run_dir:
        return None
    path = Path(run_dir, "eval", "pretrain-metrics.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def pretrain_lineage(corpus_dir: str, tokenizer_dir: str, cfg: PipelineConfig) -> dict:
    """What a pretraining checkpoint was trained on: the corpus manifest, the tokenizer and the
    starting checkpoint (sha256 each). Recorded in every checkpoint and the exported model;
    a run whose checkpoint says otherwise is refused (`raytrain.check_lineage`)."""
    from ..storage import sha256_dir, sha256_file

    return {"manifest_sha256": sha256_file(f"{corpus_dir}/manifest.json"),
            "tokenizer_sha256": sha256_dir(tokenizer_dir),
            "pretrained_sha256": sha256_dir(cfg.model.pretrained_dir) if cfg.model.pretrained_dir else None}


def pretrain(corpus_dir: str, manifest: dict, tokenizer_dir: str, out_dir: str, cfg: PipelineConfig) -> dict:
    """Run the Ray Train job; export the final model (safetensors) to `out_dir`."""
    if cfg.model.pretrained_dir:  # continued pretraining: fail here, not in every worker
        check_pretrained(cfg.model)
    verify_corpus(manifest, corpus_dir)  # a corrupted shard stops the run here, before any training
    raytrain.init_ray(cfg.ray)
    pcfg = cfg.pretrain
    seq_len = cfg.model.max_length
    micro_batches = (pcfg.max_steps * pcfg.grad_accum_steps + 1) * cfg.ray.num_workers
    rows = micro_batches * pcfg.batch_size
    if cfg.model.objective == "causal_lm":  # documents per packed sequence, from the corpus itself
        tokens_per_doc = sum(v.get("train_tokens", 0) for v in manifest["languages"].values()) / max(
            1, sum(v.get("train_rows", 0) for v in manifest["languages"].values()))
        rows = int(rows * max(1.0, 1.5 * seq_len / max(tokens_per_doc, 1.0))) + 1
    ds = training_stream(manifest, corpus_dir, rows, pcfg.alpha, pcfg.seed, absolute(tokenizer_dir),
                         cfg.model.objective, seq_len, pcfg.shuffle_buffer)
    datasets, pairs = {"train": ds}, []
    if pcfg.reads_pairs:  # translation pairs for TLM / contrastive, one pair micro-batch per micro-batch
        datasets["pairs"] = alignment.pair_stream(manifest, corpus_dir, micro_batches * pcfg.pair_batch_size,
                                                  pcfg.pair_alpha, pcfg.seed, absolute(tokenizer_dir),
                                                  cfg.model.objective, seq_len, pcfg.shuffle_buffer)
        pairs = sorted(manifest["parallel"]["pairs"])
    run_dir = absolute(cfg.run_dir) if "://" not in cfg.run_dir else cfg.run_dir
    lineage = pretrain_lineage(corpus_dir, tokenizer_dir, cfg)
    raytrain.check_lineage(run_dir, cfg.ray, f"{cfg.run_name}-pretrain", lineage, cfg.run_name)
    result = raytrain.fit(
        train_loop,
        {"pretrain": pcfg.model_dump(), "model": cfg.model.model_dump(), "tokenizer_dir": absolute(tokenizer_dir),
         "threads": cfg.ray.cpus_per_worker, "languages": sorted(manifest["languages"]),
         "strategy": cfg.ray.strategy, "failure_marker": _failure_marker(out_dir, cfg.run_name),
         "metrics_path": _metrics_path(run_dir), "pairs": pairs, "lineage": lineage},
        datasets, f"{cfg.run_name}-pretrain", run_dir, cfg.ray,
    )
    raytrain.export(result.checkpoint, out_dir, lineage)
    log.info("pretrain: final loss %.4f at step %d -> %s", result.metrics["loss"], result.metrics["step"], out_dir)
    return {"model_dir": out_dir, **result.metrics}
