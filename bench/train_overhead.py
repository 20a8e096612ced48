"""Ray Train path vs. a plain PyTorch loop: tokens/s on the same model, data and threads (CPU).

    .venv/bin/python bench/train_overhead.py [--steps 60] [--threads 1]

Both train the same Llama-style causal LM (pipeline.training.model.build_clm) from the same seed on the
same packed sequences (the bundled sample corpus, tokenised once by pipeline.training.pretrain's
tokenize_batch): the plain loop iterates NumPy batches in this process; the Ray path is
`pipeline.training.pretrain.train_loop` in a TorchTrainer with 1 worker reading a Ray Dataset through
`get_dataset_shard`. Throughput is measured after the first logging window (warm-up: process
start, graph warm-up), from the tokens/s the loop itself reports.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sequences(tmp: Path, seq_len: int):
    import numpy as np
    import pyarrow as pa

    from pipeline.config import CorpusConfig, TokenizerConfig
    from pipeline.corpus.prepare import prepare
    from pipeline.storage import read_parquet
    from pipeline.training.pretrain import tokenize_batch
    from pipeline.training.tokenizer import train_tokenizer

    prepare([str(ROOT / "data" / "sample" / "corpus" / "*")], str(tmp / "corpus"), CorpusConfig(engine="local"))
    manifest = json.loads((tmp / "corpus" / "manifest.json").read_text())
    tok = train_tokenizer(manifest, str(tmp / "corpus"), str(tmp / "tok"), TokenizerConfig(vocab_size=2000), "causal_lm")
    docs = pa.concat_tables([read_parquet(str(tmp / "corpus" / s["path"]), ["text", "lang"]) for s in manifest["shards"]])
    docs = pa.concat_tables([docs] * 20)
    out = tokenize_batch(docs, str(tmp / "tok"), "causal_lm", seq_len)
    return tok, manifest, out["input_ids"], out["lang"], np


def plain_loop(cfg, tok, ids, steps: int, threads: int) -> list[float]:
    import torch

    from pipeline.training.model import build_clm, sequence_losses, warmup_cosine

    torch.set_num_threads(threads)
    torch.manual_seed(cfg.pretrain.seed)
    model = build_clm(cfg.model, tok)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain.learning_rate, weight_decay=cfg.pretrain.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.pretrain.warmup_steps, steps))
    bs, rates, tokens, t0 = cfg.pretrain.batch_size, [], 0, time.monotonic()
    for step in range(1, steps + 1):
        batch = torch.as_tensor(ids[(step - 1) * bs % len(ids):][:bs], dtype=torch.long)
        attention = (batch != tok.pad_token_id).long()
        logits = model(input_ids=batch, attention_mask=attention).logits
        seq_loss, seq_n = sequence_losses(logits, batch.masked_fill(attention == 0, -100), True)
        loss = seq_loss.sum() / seq_n.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.pretrain.max_grad_norm)
        opt.step()
        sched.step()
        tokens += int(attention.sum())
        if step % cfg.pretrain.log_every == 0:
            rates.append(tokens / (time.monotonic() - t0))
            tokens, t0 = 0, time.monotonic()
    return rates


def ray_loop(cfg, tmp: Path, ids, langs, manifest) -> list[float]:
    import ray
    import ray.data
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    from pipeline.training import pretrain, raytrain

    raytrain.init_ray(cfg.ray)
    ds = ray.data.from_items([{"input_ids": r, "lang": l} for r, l in zip(ids, langs)])
    trainer = TorchTrainer(
        pretrain.train_loop,
        train_loop_config={"pretrain": cfg.pretrain.model_dump(), "model": cfg.model.model_dump(),
                           "tokenizer_dir": str(tmp / "tok"), "threads": cfg.ray.cpus_per_worker,
                           "languages": sorted(manifest["languages"]), "strategy": "ddp",
                           "failure_marker": str(tmp / "marker"), "metrics_path": str(tmp / "metrics.jsonl")},
        scaling_config=raytrain.scaling_config(cfg.ray),
        run_config=RunConfig(name="overhead", storage_path=str(tmp / "ray")),
        datasets={"train": ds},
    )
    trainer.fit()
    rates = [json.loads(line)["tokens_per_s"] for line in (tmp / "metrics.jsonl").read_text().splitlines()]
    ray.shutdown()
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from pipeline.config import PipelineConfig

    cfg = PipelineConfig.model_validate({
        "model": {"objective": "causal_lm", "hidden_size": 128, "num_layers": 4, "num_heads": 4,
                  "intermediate_size": 256, "max_length": 64},
        "pretrain": {"max_steps": args.steps, "batch_size": 16, "log_every": 10, "checkpoint_every": args.steps,
                     "warmup_steps": 5},
        "ray": {"num_workers": 1, "cpus_per_worker": args.threads, "max_failures": 0}})
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tok, manifest, ids, langs, _ = sequences(tmp, cfg.model.max_length)
        plain = plain_loop(cfg, tok, ids, args.steps, args.threads)
        ray_rates = ray_loop(cfg, tmp, ids, langs, manifest)
    p, r = statistics.median(plain[1:]), statistics.median(ray_rates[1:])
    print(f"{platform.machine()}, Python {platform.python_version()}; {args.steps} steps, batch 16 x 64 tokens, "
          f"{args.threads} thread(s)")
    print("| path | tokens/s (median of windows after the first) | windows |")
    print("|---|---:|---:|")
    print(f"| plain PyTorch loop | {p:,.0f} | {len(plain) - 1} |")
    print(f"| Ray Train, 1 worker (pipeline.training.pretrain.train_loop) | {r:,.0f} | {len(ray_rates) - 1} |")
    print(f"ratio Ray / plain: {r / p:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()
