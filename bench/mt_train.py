"""A small, real translation model trained here: a multi-target MarianMT (English into each
target language, chosen by a `>>lang_Script<<` token before the source text, as OPUS-MT's
multi-target models do) trained from scratch on the train split of a prepared corpus's pair
shards, and scored per language with chrF (sacrebleu) on their held-out split.

Why: no translation model can be downloaded here. Random weights are enough for plumbing
tests, but they decode every sentence to the length limit and write no language at all; this
model ends its translations where it learnt to (EOS at learnt lengths) and writes the target
language, so the translation benchmark (`bench/translate_bench.py --model`) decodes realistic
lengths and the cross-lingual benchmark (`bench/xling_bench.py --mt-model`) gets a
translate-train column from real machine translation. It is small and trained on little data
(Tatoeba: short everyday sentences, a few hundred per language): expect weak translations; its
chrF per language is written next to it (`mt.json`) and reported with every figure it feeds.

    .venv/bin/python bench/mt_train.py --corpus runs/xling-s7/corpus --out runs/mt-eng-x \
        [--targets arb_Arab,deu_Latn,...] [--minutes 15] [--d-model 256] [--layers 3]

Default targets: every language paired with English in the corpus that SIB-200 (the
fine-tuning benchmark) has, i.e. those of `../shared/data/sib200` when present.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("mt_train")
SOURCE = "eng_Latn"


def load_pairs(corpus: str, targets: list[str] | None) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
    """{target: [(English, target text)]} for the train and held-out splits."""
    from pipeline.corpus.parallel import read_pairs
    from pipeline.corpus.shard import read_manifest

    manifest = read_manifest(corpus)
    keys = sorted({f["pair"] for f in (manifest.get("parallel") or {}).get("files", [])})
    out: tuple[dict, dict] = ({}, {})
    for key in keys:
        a, _, b = key.partition("-")
        if SOURCE not in (a, b):
            continue
        target = b if a == SOURCE else a
        if targets is not None and target not in targets:
            continue
        for split, into in (("train", out[0]), ("heldout", out[1])):
            t = read_pairs(manifest, corpus, split, [key]).to_pylist()
            into.setdefault(target, []).extend(
                (r["src_text"], r["tgt_text"]) if r["src_lang"] == SOURCE else (r["tgt_text"], r["src_text"])
                for r in t if not r["synthetic"])
    missing = sorted(set(targets or []) - set(out[0]))
    if missing:
        log.warning("no English pairs in %s for %s: no translation into them", corpus, ", ".join(missing))
    return out


def default_targets() -> list[str] | None:
    sib = ROOT.parent / "shared" / "data" / "sib200"
    return sorted(p.name for p in sib.iterdir() if p.is_dir() and p.name != SOURCE) if sib.is_dir() else None


def build(out: Path, train: dict[str, list[tuple[str, str]]], vocab_size: int, d_model: int, layers: int, seed: int):
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    work = out / "_spm"
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    english = sorted({s for pairs in train.values() for s, _ in pairs})
    lines = english + [t for pairs in train.values() for _, t in pairs]
    rng.shuffle(lines)
    (work / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # one vocabulary for both sides (tied embeddings, as OPUS-MT); full character coverage so
    # no script's characters become <unk>
    spm.SentencePieceTrainer.train(input=str(work / "text.txt"), model_prefix=str(work / "spm"), vocab_size=vocab_size,
                                   hard_vocab_limit=False, character_coverage=1.0, model_type="unigram",
                                   bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(work / "spm.model"))
    vocab = {"</s>": 0, "<unk>": 1}
    for target in sorted(train):
        vocab[f">>{target}<<"] = len(vocab)
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = MarianTokenizer(source_spm=str(work / "spm.model"), target_spm=str(work / "spm.model"),
                          vocab=str(work / "vocab.json"), model_max_length=256)
    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=len(vocab), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                          encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=4 * d_model,
                          decoder_ffn_dim=4 * d_model, max_position_embeddings=256, pad_token_id=vocab["<pad>"],
                          eos_token_id=vocab["</s>"], decoder_start_token_id=vocab["<pad>"],
                          forced_eos_token_id=vocab["</s>"], scale_embedding=True, dropout=0.1,
                          max_length=128, num_beams=1)
    return tok, MarianMTModel(config)


def batches(rows: list[tuple[list[int], list[int]]], token_budget: int, rng: random.Random):
    """Length-bucketed batches of about `token_budget` padded tokens, in a shuffled order."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]) + len(rows[i][1]), rng.random()))
    out, batch, longest = [], [], 0
    for i in order:
        n = max(len(rows[i][0]), len(rows[i][1]))
        if batch and max(longest, n) * (len(batch) + 1) > token_budget:
            out.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, n)
    if batch:
        out.append(batch)
    rng.shuffle(out)
    return out


def train_model(tok, model, train: dict, minutes: float, token_budget: int, lr: float, seed: int) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import get_inverse_sqrt_schedule

    rng = random.Random(seed)
    examples = [(f">>{t}<< {s}", x) for t in sorted(train) for s, x in train[t]]
    enc = tok([s for s, _ in examples], text_target=[x for _, x in examples], truncation=True, max_length=64)
    rows = list(zip(enc["input_ids"], enc["labels"]))
    pad = tok.pad_token_id
    for name, p in model.named_parameters():  # sinusoidal tables are fixed, never saved
        if "embed_positions" in name:
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.98),
                            weight_decay=0.01)
    sched = get_inverse_sqrt_schedule(opt, num_warmup_steps=200)
    model.train()
    start, deadline = time.monotonic(), time.monotonic() + 60 * minutes
    step = epoch = seen = 0
    history = []
    while time.monotonic() < deadline:
        epoch += 1
        for idx in batches(rows, token_budget, rng):
            if time.monotonic() >= deadline:
                break
            src = [rows[i][0] for i in idx]
            tgt = [rows[i][1] for i in idx]
            ls, lt = max(map(len, src)), max(map(len, tgt))
            input_ids = torch.tensor([r + [pad] * (ls - len(r)) for r in src])
            labels = torch.tensor([r + [-100] * (lt - len(r)) for r in tgt])
            logits = model(input_ids=input_ids, attention_mask=(input_ids != pad).long(), labels=labels).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
                                   label_smoothing=0.1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            seen += len(idx)
            if step % 50 == 0:
                elapsed = time.monotonic() - start
                history.append({"step": step, "epoch": epoch, "loss": round(loss.item(), 4), "pairs_seen": seen})
                log.info("step %d epoch %d loss %.3f | %.1f pairs/s | %.0f s left", step, epoch, loss.item(),
                         seen / elapsed, max(0.0, deadline - time.monotonic()))
    model.eval()
    return {"steps": step, "epochs": epoch, "pairs_seen": seen, "train_pairs": len(rows),
            "seconds": round(time.monotonic() - start, 1), "history": history}


def score(model_dir: str, heldout: dict, per_language: int, backend: str) -> dict:
    """chrF (and BLEU) per target language on up to `per_language` held-out pairs, translated
    with the pipeline's own backend."""
    import sacrebleu

    from pipeline.translation.backends import load

    translator = load(backend, model_dir, max_new_tokens=128, batch_tokens=4096)
    out = {}
    for target in sorted(heldout):
        pairs = heldout[target][:per_language]
        hyps, _ = translator.translate([s for s, _ in pairs], SOURCE, target)
        refs = [t for _, t in pairs]
        hyps = [h or "" for h in hyps]
        tokenize = "char" if target.split("_")[1] in ("Hans", "Hant", "Jpan", "Thai") else "13a"
        out[target] = {"pairs": len(pairs), "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 1),
                       "bleu": round(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score, 1),
                       "examples": [{"source": s, "output": h, "reference": r}
                                    for (s, r), h in list(zip(pairs, hyps))[:3]]}
        log.info("%s: chrF %.1f BLEU %.1f on %d held-out pairs", target, out[target]["chrf"], out[target]["bleu"],
                 len(pairs))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="a prepared corpus with English pair shards")
    ap.add_argument("--out", required=True)
    ap.add_argument("--targets", default=None, help="comma-separated labels (default: SIB-200's languages)")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--token-budget", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--score-pairs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    targets = args.targets.split(",") if args.targets else default_targets()
    train, heldout = load_pairs(args.corpus, targets)
    if not train:
        raise SystemExit(f"{args.corpus}: no English pairs for {targets}")
    log.info("train pairs per target: %s", {t: len(v) for t, v in sorted(train.items())})
    out = Path(args.out)
    tok, model = build(out, train, args.vocab, args.d_model, args.layers, args.seed)
    log.info("model: %.1fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    info = train_model(tok, model, train, args.minutes, args.token_budget, args.lr, args.seed)
    model.save_pretrained(out)  # safetensors
    tok.save_pretrained(out)
    scores = score(str(out), heldout, args.score_pairs, "hf")
    report = {"source": SOURCE, "targets": sorted(train), "corpus": args.corpus,
              "train_pairs": {t: len(v) for t, v in sorted(train.items())},
              "d_model": args.d_model, "layers": args.layers, "vocab": len(tok), "training": info,
              "heldout": scores,
              "macro_chrf": round(sum(s["chrf"] for s in scores.values()) / max(len(scores), 1), 1)}
    (out / "mt.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    print("| target | train pairs | held-out pairs | chrF | BLEU |\n|---|---:|---:|---:|---:|")
    for t, s in scores.items():
        print(f"| {t} | {len(train[t])} | {s['pairs']} | {s['chrf']} | {s['bleu']} |")
    print(f"macro chrF {report['macro_chrf']}; {info['steps']} steps, {info['epochs']} epochs, "
          f"{info['seconds']} s -> {out}")
    return 0 if math.isfinite(report["macro_chrf"]) else 1


if __name__ == "__main__":
    sys.exit(main())
