"""MinHash near-dedup: babelforge vs. datatrove's four MinHash stages, same documents, one process.

    taskset -c 0 .venv/bin/python bench/minhash_bench.py [--docs-per-lang 240]

Needs the bench extra (datatrove + spaCy) and ../shared/data/lingua-sentences. Documents: 4
real sentences each in 12 languages, plus for every third one a copy with two word edits.
datatrove: MinhashDedupSignature -> MinhashDedupBuckets (one task per bucket) ->
MinhashDedupCluster -> MinhashDedupFilter, run in-process on local folders, with its defaults
(5-grams, 14 x 8) and with babelforge's settings (3-grams, 20 x 5). babelforge:
`dedup.signatures` + `dedup.clusters` with its defaults. Reports seconds, documents per
second, recall of the edited copies and precision of the removals.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from noise_bench import LANGS, _edit, _lines  # noqa: E402


def corpus(per_lang: int) -> tuple[list[str], list[str], np.ndarray]:
    rng = random.Random(0)
    texts, langs, planted = [], [], []
    for lang in LANGS:
        lines = _lines(lang)
        for j in range(min(per_lang, len(lines) // 4)):
            doc = " ".join(lines[4 * j : 4 * j + 4])
            texts.append(doc); langs.append(lang); planted.append(False)
            if j % 3 == 0:
                texts.append(_edit(doc, rng)); langs.append(lang); planted.append(True)
    return texts, langs, np.array(planted)


def score(removed: np.ndarray, planted: np.ndarray) -> tuple[float, float]:
    hit = (removed & planted).sum()
    return hit / planted.sum(), hit / max(removed.sum(), 1)


def _xxhash_str_compat() -> None:
    """datatrove 0.10.1 hashes `str` with xxhash, which xxhash >= 4 refuses (its `processing`
    extra pins xxhash<4); encode first, as xxhash 3 did internally."""
    import datatrove.utils.hashes.xxhash as dx
    import xxhash

    dx.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)
    dx.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)


def run_datatrove(texts: list[str], n_grams: int, buckets: int, per_bucket: int) -> tuple[float, np.ndarray]:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    _xxhash_str_compat()
    cfg = MinhashConfig(n_grams=n_grams, num_buckets=buckets, hashes_per_bucket=per_bucket)
    work = Path(tempfile.mkdtemp(prefix="dt-minhash-"))
    docs = lambda: (Document(text=t, id=str(i)) for i, t in enumerate(texts))  # noqa: E731
    t = time.perf_counter()
    for _ in MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg).run(docs()) or []:
        pass
    for b in range(buckets):
        MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"),
                            config=cfg).run(None, rank=b, world_size=buckets)
    MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg).run()
    kept = {d.id for d in MinhashDedupFilter(input_folder=str(work / "remove")).run(docs())}
    sec = time.perf_counter() - t
    return sec, np.array([str(i) not in kept for i in range(len(texts))])


def run_babelforge(texts: list[str], langs: list[str]) -> tuple[float, np.ndarray]:
    import pyarrow as pa

    from pipeline.config import DedupConfig
    from pipeline.corpus.dedup import clusters, signatures
    from pipeline.corpus.langid import detect_scripts
    from pipeline.schema import make_docs

    docs = make_docs([str(i) for i in range(len(texts))], texts, ["b"] * len(texts), lang=langs)
    docs = docs.set_column(docs.schema.get_field_index("script"), "script", pa.array(detect_scripts(texts)))
    cfg = DedupConfig()
    t = time.perf_counter()
    roots, _, _ = clusters(langs, signatures(docs, cfg), cfg)
    return time.perf_counter() - t, roots != np.arange(len(texts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs-per-lang", type=int, default=240)
    args = ap.parse_args()
    import logging

    from loguru import logger
    logger.remove()  # datatrove logs every step at INFO
    logging.disable(logging.INFO)
    texts, langs, planted = corpus(args.docs_per_lang)
    n = len(texts)
    rows = [("babelforge (character 4-grams, 25 x 4, per language)", *run_babelforge(texts, langs)),
            ("datatrove defaults (5-grams, 14 x 8)", *run_datatrove(texts, 5, 14, 8)),
            ("datatrove with 3-grams, 20 x 5", *run_datatrove(texts, 3, 20, 5))]
    print(f"{n} documents ({planted.sum()} edited copies), 12 languages, one core")
    print("| implementation | seconds | docs/s | recall | precision |\n|---|---:|---:|---:|---:|")
    for name, sec, removed in rows:
        r, p = score(removed, planted)
        print(f"| {name} | {sec:.2f} | {n / sec:,.0f} | {r:.3f} | {p:.3f} |")


if __name__ == "__main__":
    main()
