"""Back-translation throughput: CTranslate2 int8 vs the transformers `generate` loop on the same
sentences and the same model, and the Ray stage vs the same backend called directly.

The model is MarianMT-shaped, by default at a small size (d_model 256, 3 + 3 layers, 8 heads,
FFN 4 x d_model; `--d-model 512 --layers 6` is the shape of the OPUS-MT models), with an 8k SentencePiece vocabulary trained on the sentences' language), random weights:
no trained model can be downloaded here, and throughput does not depend on what the weights
say, only on how many tokens are decoded. Both backends decode greedily up to the same
`max_new_tokens`; tokens generated are counted and reported, so a backend that stops earlier
does not look faster for that reason.

    .venv/bin/python bench/translate_bench.py [--sentences 500] [--threads 1] [--ray]
    .venv/bin/python bench/translate_bench.py --model runs/mt-eng-x --target deu_Latn --max-new-tokens 128

`--model DIR` benchmarks a trained model instead (e.g. the one `bench/mt_train.py` trains
here): its translations end where it learnt they end, at different lengths in one batch, as
a real model's do; the output tokens are counted all the same.

Sentences: the English side of Tatoeba (../shared/data/tatoeba), else the sample corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def sentences(n: int) -> list[str]:
    tatoeba = ROOT.parent / "shared" / "data" / "tatoeba"
    if tatoeba.is_dir():
        lines = []
        for f in sorted(tatoeba.glob("tatoeba.*-eng.eng")):
            lines += [x.strip() for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
            if len(lines) >= 4 * n:
                break
        return sorted(set(lines))[:n]
    sys.path.insert(0, str(ROOT / "data" / "sample"))
    from texts import DOCS

    return [t for v in DOCS["en"].values() for t in v] * (n // 16 + 1)


def build_model(out: Path, texts: list[str], d_model: int = 256, layers: int = 3) -> str:
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    work = out / "_spm"
    work.mkdir(parents=True, exist_ok=True)
    (work / "text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(work / "text.txt"), model_prefix=str(work / "spm"), vocab_size=8000,
                                   hard_vocab_limit=False, character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(work / "spm.model"))
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = MarianTokenizer(source_spm=str(work / "spm.model"), target_spm=str(work / "spm.model"),
                          vocab=str(work / "vocab.json"))
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(vocab), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                          encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=4 * d_model,
                          decoder_ffn_dim=4 * d_model, max_position_embeddings=512, pad_token_id=vocab["<pad>"],
                          eos_token_id=vocab["</s>"], decoder_start_token_id=vocab["<pad>"],
                          forced_eos_token_id=vocab["</s>"], scale_embedding=True)
    MarianMTModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def timed(backend, texts: list[str], target: str) -> dict:
    t = time.perf_counter()
    out, errors = backend.translate(texts, "eng_Latn", target)
    seconds = time.perf_counter() - t
    by_row = [len(backend.tokenizer(o or "")["input_ids"]) for o in out]
    lengths = sorted(by_row)
    tokens = sum(lengths)
    # a decoder that runs every row of a batch until its longest row ends computes this many
    # positions (transformers generate); one that drops finished rows computes `tokens`
    batch_steps = sum(len(b) * max(by_row[i] for i in b) for b in backend.batches(backend.lengths(texts, "eng_Latn", target)))
    return {"seconds": round(seconds, 2), "sentences_per_s": round(len(texts) / seconds, 1),
            "output_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1), "errors": len(errors),
            # how long the outputs are: a batch decodes until its longest row ends, on both backends
            # alike unless the backend drops finished rows (CTranslate2 does, generate does not)
            "output_length_median": lengths[len(lengths) // 2], "output_length_max": lengths[-1],
            "outputs_at_the_length_limit": sum(n >= backend.max_new_tokens for n in lengths),
            "positions_if_rows_run_to_the_batch_end": batch_steps,
            "share_after_a_row_ended": round(1 - tokens / max(batch_steps, 1), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sentences", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--token-budget", type=int, default=2048)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--docs-per-unit", type=int, default=100)
    p.add_argument("--ray", action="store_true", help="also: the Ray stage (1 actor) vs translate_unit in-process")
    p.add_argument("--ray-only", action="store_true", help="only the Ray stage vs direct calls")
    p.add_argument("--model", default=None, help="a trained local English -> X model instead of random weights")
    p.add_argument("--target", default="swh_Latn", help="the target language label (with --model: one it writes)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from pipeline.translation.backends import load

    texts = sentences(args.sentences)
    work = Path(tempfile.mkdtemp(prefix="translate-bench-"))
    os.environ.setdefault("BABELFORGE_CT2_CACHE", str(work / "ct2"))
    if args.model:
        from transformers import AutoConfig

        model = args.model
        shape = AutoConfig.from_pretrained(model)
        args.d_model, args.layers = shape.d_model, shape.encoder_layers
    else:
        model = build_model(work / "marian", texts, args.d_model, args.layers)
    kw = {"max_new_tokens": args.max_new_tokens, "batch_tokens": args.token_budget, "threads": args.threads}
    results = {"sentences": len(texts), "threads": args.threads, "device": "cpu", "d_model": args.d_model,
               "layers": args.layers, "model": args.model or "random weights", "target": args.target, **kw}
    if args.ray_only:
        results["ray_vs_direct"] = ray_vs_direct(model, texts, args)
        print(json.dumps(results, indent=2))
        return
    hf = load("hf", model, **kw)
    timed(hf, texts[:16], args.target)  # warm-up
    results["hf_generate"] = timed(hf, texts, args.target)
    for ct in ("int8", "float32"):
        ct2 = load("ct2", model, compute_type=ct, **kw)
        timed(ct2, texts[:16], args.target)
        results[f"ct2_{ct}"] = timed(ct2, texts, args.target)
    results["speedup_int8_vs_hf"] = round(results["ct2_int8"]["sentences_per_s"] / results["hf_generate"]["sentences_per_s"], 2)
    if args.ray:
        results["ray_vs_direct"] = ray_vs_direct(model, texts, args)
    print(json.dumps(results, indent=2))


def ray_vs_direct(model: str, texts: list[str], args) -> dict:
    """The corpus stage's units through one Ray actor vs the same backend called directly: on
    one plain Ray actor (`Backend.translate` on each unit's sentences; it pays the same actor
    start and model load as the stage) and in this process through translate_unit (all ct2
    int8, one thread)."""
    import ray

    from pipeline.config import CorpusConfig, RayConfig, TranslationModel
    from pipeline.corpus import augment as aug

    tm = TranslationModel(source="en", target=args.target, model_dir=model)
    cfg = CorpusConfig.model_validate({"augment": {"models": [tm.model_dump()], "backend": "ct2", "threads": args.threads,
                                                   "max_new_tokens": args.max_new_tokens, "check_language": False,
                                                   "token_budget": args.token_budget, "docs_per_unit": args.docs_per_unit}})
    docs = [{"id": f"d{i}", "text": t, "lang": "eng_Latn", "script": "Latn", "lang_score": 1.0, "source": "b"}
            for i, t in enumerate(texts)]
    out = {}
    for engine in ("local", "ray"):
        base = Path(tempfile.mkdtemp(prefix=f"bt-{engine}-"))
        cfg.unit_cache = str(base)
        units = aug.make_units([{"model": tm, "docs": docs, "plan": {}}], str(base), cfg)
        if engine == "ray":
            ray.init(num_cpus=2, include_dashboard=False)
        t = time.perf_counter()
        infos = aug.run_units(units, cfg, engine, RayConfig(local_num_cpus=2))
        seconds = time.perf_counter() - t
        done = sorted(infos, key=lambda i: i["finished_at"])
        steady = sum(i["sentences"] for i in done[1:]) / max(done[-1]["finished_at"] - done[0]["finished_at"], 1e-9)
        out[engine] = {"seconds": round(seconds, 2), "sentences": sum(i["sentences"] for i in infos),
                       "sentences_per_s": round(sum(i["sentences"] for i in infos) / seconds, 1),
                       # after the first unit is back: the actor started and its model loaded
                       "steady_sentences_per_s": round(steady, 1),
                       "translate_seconds_in_units": round(sum(i["seconds"]["augment"] for i in infos), 2)}
        if engine == "ray":
            out["actor"] = direct_on_actor(model, [[d["text"] for d in docs[i:i + args.docs_per_unit]]
                                                   for i in range(0, len(docs), args.docs_per_unit)], args)
            ray.shutdown()
    out["ray_over_direct_actor"] = round(out["ray"]["sentences_per_s"] / out["actor"]["sentences_per_s"], 3)
    out["ray_over_direct"] = round(out["ray"]["sentences_per_s"] / out["local"]["sentences_per_s"], 3)
    out["ray_over_direct_steady"] = round(out["ray"]["steady_sentences_per_s"] / out["local"]["steady_sentences_per_s"], 3)
    return out


def direct_on_actor(model: str, units: list[list[str]], args) -> dict:
    """The backend called directly on one Ray actor, unit by unit: the reference the stage is
    held to (same actor start, same model load, none of the stage's splitting, checks and commits)."""
    import ray

    from pipeline.translation.backends import load

    @ray.remote(num_cpus=1)
    class Direct:
        def __init__(self):
            self.backend = load("ct2", model, compute_type="int8", max_new_tokens=args.max_new_tokens,
                                batch_tokens=args.token_budget, threads=args.threads)

        def run(self, texts: list[str]) -> int:
            return len(self.backend.translate(texts, "eng_Latn", args.target)[0])

    t = time.perf_counter()
    actor = Direct.remote()
    done = [ray.get(actor.run.remote(u)) for u in units]
    seconds = time.perf_counter() - t
    ray.kill(actor)
    return {"seconds": round(seconds, 2), "sentences": sum(done), "sentences_per_s": round(sum(done) / seconds, 1)}


if __name__ == "__main__":
    main()
