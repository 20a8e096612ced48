"""Back-translation throughput: CTranslate2 int8 vs the transformers `generate` loop on the same
sentences and the same model, and the Ray stage vs the same backend called directly.

The model is MarianMT-shaped, by default at a small size (d_model 256, 3 + 3 layers, 8 heads,
FFN 4 x d_model; `--d-model 512 --layers 6` is the shape of the OPUS-MT models), with an 8k SentencePiece vocabulary trained on the sentences' language), random weights:
no trained model can be downloaded here, and throughput does not depend on what the weights
say, only on how many tokens are decoded. Both backends decode greedily up to the same
`max_new_tokens`; tokens generated are counted and reported, so a backend that stops earlier
does not look faster for that reason.

    .venv/bin/python bench/translate_bench.py [--sentences 500] [--threads 1] [--ray]

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


def timed(backend, texts: list[str]) -> dict:
    t = time.perf_counter()
    out, errors = backend.translate(texts, "eng_Latn", "swh_Latn")
    seconds = time.perf_counter() - t
    tokens = sum(len(backend.tokenizer(o or "")["input_ids"]) for o in out)
    return {"seconds": round(seconds, 2), "sentences_per_s": round(len(texts) / seconds, 1),
            "output_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1), "errors": len(errors)}


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
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from pipeline.translation.backends import load

    texts = sentences(args.sentences)
    work = Path(tempfile.mkdtemp(prefix="translate-bench-"))
    os.environ.setdefault("BABELFORGE_CT2_CACHE", str(work / "ct2"))
    model = build_model(work / "marian", texts, args.d_model, args.layers)
    kw = {"max_new_tokens": args.max_new_tokens, "batch_tokens": args.token_budget, "threads": args.threads}
    results = {"sentences": len(texts), "threads": args.threads, "device": "cpu", "d_model": args.d_model,
               "layers": args.layers, **kw}
    hf = load("hf", model, **kw)
    timed(hf, texts[:16])  # warm-up
    results["hf_generate"] = timed(hf, texts)
    for ct in ("int8", "float32"):
        ct2 = load("ct2", model, compute_type=ct, **kw)
        timed(ct2, texts[:16])
        results[f"ct2_{ct}"] = timed(ct2, texts)
    results["speedup_int8_vs_hf"] = round(results["ct2_int8"]["sentences_per_s"] / results["hf_generate"]["sentences_per_s"], 2)
    if args.ray:
        results["ray_vs_direct"] = ray_vs_direct(model, texts, args)
    print(json.dumps(results, indent=2))


def ray_vs_direct(model: str, texts: list[str], args) -> dict:
    """The corpus stage's units through one Ray actor vs the same units through translate_unit
    in this process (both ct2 int8, one thread; the Ray figure includes starting the actor and
    loading the model in it, as the stage pays them)."""
    import ray

    from pipeline.config import CorpusConfig, RayConfig, TranslationModel
    from pipeline.corpus import augment as aug

    tm = TranslationModel(source="en", target="sw", model_dir=model)
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
            ray.shutdown()
    out["ray_over_direct"] = round(out["ray"]["sentences_per_s"] / out["local"]["sentences_per_s"], 3)
    out["ray_over_direct_steady"] = round(out["ray"]["steady_sentences_per_s"] / out["local"]["steady_sentences_per_s"], 3)
    return out


if __name__ == "__main__":
    main()
