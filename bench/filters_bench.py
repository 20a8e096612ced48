"""Quality-filter chain: babelforge vs. datatrove's default chain, same documents, one process.

    taskset -c 0 .venv/bin/python bench/filters_bench.py [--docs-per-lang 100]

Needs the bench extra (`pip install -e ".[bench]"`: datatrove + spaCy, which datatrove's
default English word tokenizer uses) and ../shared/data/lingua-sentences.

Documents: 4 real sentences each, shuffled with a fixed seed, from lingua's test sentences in
75 languages. The datatrove chain is the one named in issue 3 with default settings:
GopherQualityFilter + GopherRepetitionFilter + C4QualityFilter + FineWebQualityFilter.
babelforge's chain is `clean.filter_quality` (per-language Gopher quality + repetition +
FineWeb lines) on the same texts, after language ID (timed separately, and reported with the
chain as well). Reports documents per second and the share kept, overall and per language; then
both chains on planted noise (repeated lines, repeated n-grams, gibberish) with clean documents.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.compute as pc  # noqa: E402

from pipeline.config import CleanConfig  # noqa: E402
from pipeline.corpus.clean import filter_quality  # noqa: E402
from pipeline.corpus.langid import identify  # noqa: E402
from pipeline.schema import make_docs  # noqa: E402


def documents(per_lang: int) -> tuple[list[str], list[str]]:
    src = ROOT.parent / "shared" / "data" / "lingua-sentences"
    if not src.is_dir():
        sys.exit(f"needs {src}")
    texts, langs = [], []
    for f in sorted(src.glob("*.txt")):
        lines = [l.strip() for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
        random.Random(0).shuffle(lines)
        for i in range(0, min(len(lines) - 3, per_lang * 4), 4):
            texts.append(" ".join(lines[i : i + 4]))
            langs.append(f.stem)
    return texts, langs


def datatrove_default_chain(warm_text: str) -> list:
    """datatrove's default filter chain, with spaCy's tokenizers loaded (outside any timing)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    chain = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]
    for f in chain:
        f.filter(Document(text=warm_text, id="warm"))
    return chain


def datatrove_keeps(chain: list, texts: list[str]) -> tuple[float, list[bool]]:
    """(seconds, kept flag per text) of the chain as datatrove runs it: each document stops at
    the first filter that drops it."""
    from datatrove.data import Document

    t = time.perf_counter()
    kept = []
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        ok = True
        for f in chain:
            r = f.filter(doc)
            if r is False or (isinstance(r, tuple) and r[0] is False):
                ok = False
                break
        kept.append(ok)
    return time.perf_counter() - t, kept


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs-per-lang", type=int, default=100)
    args = ap.parse_args()
    texts, langs = documents(args.docs_per_lang)
    n = len(texts)

    from datatrove.data import Document

    chain = datatrove_default_chain(texts[0])
    dt_sec, dt_kept = datatrove_keeps(chain, texts)
    t = time.perf_counter()  # the same filters without early exit: every check on every document
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        for f in chain:
            f.filter(doc)
    dt_all_sec = time.perf_counter() - t

    docs = make_docs([str(i) for i in range(n)], texts, ["bench"] * n)
    t = time.perf_counter()
    docs, _ = identify(docs)  # fills lang and script; min_score 0 rejects nothing
    lid_sec = time.perf_counter() - t
    filter_quality(docs.slice(0, 50), CleanConfig())  # warm segmenters and profiles
    t = time.perf_counter()
    kept, _ = filter_quality(docs, CleanConfig())
    bf_sec = time.perf_counter() - t
    bf_ids = set(kept["id"].to_pylist())
    bf_kept = [str(i) in bf_ids for i in range(n)]

    per = {}
    for lang, a, b in zip(langs, dt_kept, bf_kept):
        k = per.setdefault(lang, [0, 0, 0])
        k[0] += 1
        k[1] += a
        k[2] += b
    def share(col):
        return sum(v[col] / v[0] for v in per.values()) / len(per)
    print(f"{n} documents, {len(per)} languages, one core")
    print("| chain | seconds | docs/s | kept (all docs) | languages with >= 95% kept |")
    print("|---|---:|---:|---:|---:|")
    for name, sec, col, flags in (("datatrove default chain", dt_sec, 1, dt_kept), ("babelforge filter_quality", bf_sec, 2, bf_kept)):
        ok_langs = sum(v[col] / v[0] >= 0.95 for v in per.values())
        print(f"| {name} | {sec:.2f} | {n / sec:,.0f} | {sum(flags) / n:.1%} | {ok_langs}/{len(per)} |")
    print(f"| datatrove, every filter on every document | {dt_all_sec:.2f} | {n / dt_all_sec:,.0f} | | |")
    print(f"| babelforge language ID (ensemble) + filter_quality | {lid_sec + bf_sec:.2f} | "
          f"{n / (lid_sec + bf_sec):,.0f} | | |")
    print(f"\nspeed-up {dt_sec / bf_sec:.1f}x (chain as run), {dt_all_sec / bf_sec:.1f}x (same work); "
          f"with babelforge's language ID included: {dt_sec / (lid_sec + bf_sec):.1f}x")
    print("\n| language | datatrove kept | babelforge kept |\n|---|---:|---:|")
    for lang, (total, a, b) in sorted(per.items()):
        print(f"| {lang} | {a / total:.0%} | {b / total:.0%} |")
    noisy(chain)


def noisy(chain) -> None:
    """The same two chains on planted noise (bench/noise_bench.py's kinds that a document
    filter can catch, 12 languages): share of each kind removed, and of clean documents kept.
    babelforge: language ID (an unidentified document is not trained on: removed) + filters."""
    sys.path.insert(0, str(ROOT / "bench"))
    from noise_bench import build

    rows, planted = build(24)
    kinds = {k: set(planted[k]) for k in ("repeated_lines", "repeated_ngrams", "gibberish")}
    clean = {r["id"] for r in rows if r["id"].count("-") == 1 and r["id"].split("-")[1].isdigit()}
    ids = [r["id"] for r in rows if r["id"] in clean or any(r["id"] in v for v in kinds.values())]
    text = {r["id"]: r["text"] for r in rows}
    _, flags = datatrove_keeps(chain, [text[i] for i in ids])
    dt_keep = {i for i, k in zip(ids, flags) if k}
    docs, _ = identify(make_docs(ids, [text[i] for i in ids], ["noise"] * len(ids)))
    docs = docs.filter(pc.invert(pc.starts_with(docs["lang"], "und_")))
    kept, _ = filter_quality(docs, CleanConfig())
    bf_keep = set(kept["id"].to_pylist())
    print(f"\nPlanted noise (noise_bench kinds a document filter can catch; {len(ids)} documents, 12 languages)")
    print("| kind | planted | datatrove removed | babelforge removed |\n|---|---:|---:|---:|")
    for k, v in kinds.items():
        print(f"| {k} | {len(v)} | {len(v - dt_keep) / len(v):.3f} | {len(v - bf_keep) / len(v):.3f} |")
    print(f"| clean documents kept | {len(clean)} | {len(clean & dt_keep) / len(clean):.3f} | "
          f"{len(clean & bf_keep) / len(clean):.3f} |")


if __name__ == "__main__":
    main()
