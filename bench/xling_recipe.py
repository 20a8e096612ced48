"""Recipe search for the alignment arm at equal CPU time: one process, one thread, the
pipeline's own training step (`pretrain._micro_step`: LM on documents + TLM / contrastive on
pairs) on a prepared corpus, for a wall-clock budget; then retrieval on a dev split of the
training pairs (`--dev`, left out of training; `--dev 0` tests on the corpus's held-out pairs,
which the first recipe runs did and which bench/xling_bench.py reports).
Two of these side by side fill the 2 cores the way two Ray Train workers do.

    .venv/bin/python bench/xling_recipe.py --corpus runs/xling-cpu/corpus \
        --tok runs/xling-cpu-aligned/tokenizer --seconds 300 --layers 2 --pb 128 --pool mean --tlm 0 --ctr 1

Prints one JSON line (arguments, steps, retrieval macro accuracy). bench/RESULTS.md, Issue 10.
"""
import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from pipeline.config import ModelConfig, PretrainConfig  # noqa: E402
from pipeline.corpus.parallel import read_pairs  # noqa: E402
from pipeline.corpus.shard import shard_paths, temperature_weights  # noqa: E402
from pipeline.evaluation.retrieval import evaluate_retrieval  # noqa: E402
from pipeline.training import alignment  # noqa: E402
from pipeline.training.model import SelectiveLM, build_mlm  # noqa: E402
from pipeline.training.pretrain import _micro_step, _tokenizer, tokenize_batch  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--corpus", required=True, help="a prepared corpus with translation pairs")
ap.add_argument("--tok", required=True, help="its tokenizer directory")
ap.add_argument("--seconds", type=float, default=150)
ap.add_argument("--hidden", type=int, default=128)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--inter", type=int, default=256)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--pb", type=int, default=64)
ap.add_argument("--lb", type=int, default=32)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--tlm", type=float, default=0.5)
ap.add_argument("--ctr", type=float, default=2.0)
ap.add_argument("--lm", type=float, default=1.0)
ap.add_argument("--plm", type=float, default=0.0)
ap.add_argument("--T", type=float, default=0.05)
ap.add_argument("--margin", type=float, default=0.0, help="additive margin (LaBSE) of the contrastive loss")
ap.add_argument("--pool", default="cls")
ap.add_argument("--tokdrop", type=float, default=0.0, help="pretrain.contrastive_token_dropout")
ap.add_argument("--alpha", type=float, default=0.3)
ap.add_argument("--maxlen", type=int, default=48)
ap.add_argument("--dropout", type=float, default=0.1)
ap.add_argument("--homog", type=int, default=0, help="1: every batch from one language pair")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--buckets", type=int, default=1, help="pretrain.length_buckets")
ap.add_argument("--dev", type=float, default=0.1, help="share of training pairs held out as the dev set")
ap.add_argument("--eval-sources", default="", help="comma-separated substrings of the pairs' source: retrieval "
                "on each part of the dev pairs as well (e.g. tatoeba,udhr)")
ap.add_argument("--name", default="x")
ap.add_argument("--out", default="/tmp/xling-recipe")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
manifest = json.load(open(f"{a.corpus}/manifest.json"))
tok = _tokenizer(a.tok)
t0 = time.time()
train = read_pairs(manifest, a.corpus, "train")
# dev split for choosing a recipe: a seeded share of the training pairs, left out of training
# here; the corpus's held-out split (what bench/xling_bench.py reports) is never looked at
# (by a salted hash of the pair's id, so that two corpora holding the same pairs have the same dev
# pairs; not shard.heldout_mask's hash, which put every training pair above the held-out cut)
is_dev = np.array([int.from_bytes(hashlib.blake2b(f"dev|{i}".encode(), digest_size=8).digest(), "big") / 2**64 < a.dev
                   for i in train["id"].to_pylist()], dtype=bool)
dev, train = train.filter(pa.array(is_dev)), train.filter(pa.array(~is_dev))
P = alignment.tokenize_pairs(train, a.tok, "masked_lm", a.maxlen)
keys = P["pair"]
uk = sorted(set(keys))
idx = {k: np.flatnonzero(keys == k) for k in uk}
w = temperature_weights({k: len(v) for k, v in idx.items()}, a.alpha)
wk = np.array([w[k] for k in uk])
wk /= wk.sum()
docs = pa.concat_tables([pq.read_table(p, columns=["text", "lang"]) for p in shard_paths(manifest, a.corpus, "train")])
D = tokenize_batch(docs, a.tok, "masked_lm", a.maxlen)
print("data", len(keys), docs.num_rows, round(time.time() - t0, 1), flush=True)
mcfg = ModelConfig(hidden_size=a.hidden, num_layers=a.layers, num_heads=a.heads, intermediate_size=a.inter,
                   max_length=a.maxlen, dropout=a.dropout)
model = SelectiveLM(build_mlm(mcfg, tok), a.buckets)
pcfg = PretrainConfig(lm_weight=a.lm, tlm_weight=a.tlm, contrastive_weight=a.ctr, pair_lm_weight=a.plm,
                      contrastive_temperature=a.T, contrastive_pooling=a.pool,
                      contrastive_margin=a.margin, contrastive_token_dropout=a.tokdrop)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
rng = np.random.default_rng(0)
gen = torch.Generator().manual_seed(0)
step, t0, hist = 0, time.time(), []
warm = 50
while time.time() - t0 < a.seconds:
    frac = (time.time() - t0) / a.seconds  # warmup, then cosine to 0.1x over the time budget
    lr = a.lr * min(1, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))
    for g in opt.param_groups:
        g["lr"] = lr
    if a.homog:
        k = uk[rng.choice(len(uk), p=wk)]
        rows = rng.choice(idx[k], a.pb, replace=len(idx[k]) < a.pb)
    else:
        ks = rng.choice(len(uk), a.pb, p=wk)
        rows = np.array([rng.choice(idx[uk[k]]) for k in ks])
    pb = {k2: v[rows] for k2, v in P.items()}
    lb = {"input_ids": D["input_ids"][rng.choice(len(D["input_ids"]), a.lb)]}
    model.train()
    opt.zero_grad()
    out = _micro_step(model, tok, lb, pb, False, pcfg, gen, torch.device("cpu"), torch.autocast("cpu", enabled=False), True)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    step += 1
    if "contrastive" in out:
        hist.append(float(out["contrastive"][1].float().mean()))
    if step % 100 == 0:
        print(step, round(time.time() - t0), "acc", round(np.mean(hist[-100:]), 3) if hist else None, flush=True)
d = f"{a.out}/{a.name}"
model.model.save_pretrained(d)
tok.save_pretrained(d)
t1 = time.time()
heldout = read_pairs(manifest, a.corpus, "heldout")
r = evaluate_retrieval(d, manifest, a.corpus, a.maxlen, False, a.pool, pairs=dev if a.dev > 0 else heldout)
by_source = {}
for src in filter(None, a.eval_sources.split(",")):
    for split, table in (("dev", dev if a.dev > 0 else None), ("heldout", heldout)):
        if table is None:
            continue
        part = table.filter(pa.array([src in x for x in table["source"].to_pylist()]))
        rs = evaluate_retrieval(d, manifest, a.corpus, a.maxlen, False, a.pool, pairs=part)
        by_source[f"{src}/{split}"] = {"macro": rs.get("macro_accuracy"), "pairs": part.num_rows,
                                       "language_pairs": len(rs.get("pairs", {}))}
print(json.dumps({"name": a.name, "args": vars(a), "steps": step, "macro": r["macro_accuracy"], "by_source": by_source,
                  "eval_s": round(time.time() - t1)}), flush=True)
