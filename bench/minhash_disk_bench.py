"""MinHash near-dedup at scale, from disk to disk: babelforge vs. datatrove's four MinHash stages.

    taskset -c 0 .venv/bin/python bench/minhash_disk_bench.py [--docs 112000] [--files 16]

Needs the bench extra (datatrove + spaCy) and ../shared/data/{tatoeba,lingua-sentences}.

Corpus (>= 100,000 documents, 187 sentence sets in ~150 languages): documents of 5 real
sentences of one language, sentences between half and twice their set's median length. Each
sentence is used in four documents, built so that two documents share at most one sentence
(sentences i, i+d, ..., i+4d for steps d in {1, 7, 11, 13}, whose differences never coincide),
so one shared sentence is at most half of a document's text, and the only true near duplicates
are the planted ones: for
one document in eight, a copy with two word edits (`word_edits`) or with 2% of its letters
replaced by other letters of the text (`char_edits`), placed at a random later position.
Written as `--files` Parquet files (`id`, `text`; no language column), in random order.

Both sides read those files and write the kept documents as Parquet, one core, no true labels:
- datatrove: ParquetReader -> MinhashDedupSignature -> MinhashDedupBuckets (one task per
  bucket) -> MinhashDedupCluster -> MinhashDedupFilter -> ParquetWriter, its defaults
  (word 5-grams, 14 x 8); it has no language handling;
- babelforge: pyarrow read -> language ID (`langid.identify`, default models; timed apart,
  since `prepare` runs it anyway) -> `dedup.signatures` + `dedup.clusters` with the default
  `DedupConfig` (character 4-grams, 25 x 4, 0.5, per predicted language) -> pyarrow write.
  Also one run with every document in one language bucket (no language handling at all).

Reports seconds, documents/s, recall per planted kind and precision of the removals (a removal
is right when the document removed is a planted copy or the original of one that was kept).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from minhash_bench import _xxhash_str_compat  # noqa: E402
from noise_bench import _edit  # noqa: E402

STEPS = (1, 7, 11, 13)
PER_DOC = 5


def sentence_sets() -> dict[str, list[str]]:
    sets = {}
    for f in sorted((DATA / "tatoeba").glob("tatoeba.*-eng.*")):
        if not f.name.endswith(".eng"):
            sets["tatoeba:" + f.suffix[1:]] = f.read_text(encoding="utf-8").splitlines()
    for f in sorted((DATA / "lingua-sentences").glob("*.txt")):
        sets["lingua:" + f.stem] = f.read_text(encoding="utf-8").splitlines()
    out = {}
    for k, v in sets.items():
        v = [s.strip() for s in v if s.strip()]
        med = float(np.median([len(s) for s in v]))
        # no sentence may dominate its documents: sharing one sentence stays well below 50% of the text
        out[k] = [s for s in v if 0.5 * med <= len(s) <= 2 * med]
    return out


def base_documents(sents: list[str]) -> list[str]:
    """Documents of PER_DOC sentences; two documents share at most one sentence."""
    n = len(sents)
    docs = []
    for d in STEPS:
        block = PER_DOC * d
        for start in range(0, n - block + 1, block):
            for r in range(d):
                docs.append(" ".join(sents[start + r + k * d] for k in range(PER_DOC)))
    return docs


def _char_edit(text: str, rng: random.Random, share: float = 0.02) -> str:
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.isalpha()]
    for i in rng.sample(letters, max(1, int(share * len(letters)))):
        chars[i] = chars[rng.choice(letters)]
    return "".join(chars)


def build(n_docs: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """texts, planted kind per row (0 none, 1 word_edits, 2 char_edits), original row of each copy
    (-1 for originals), source set per row."""
    rng = random.Random(seed)
    texts, kinds, sources = [], [], []
    for name, sents in sentence_sets().items():
        for doc in base_documents(sents):
            texts.append(doc); kinds.append(0); sources.append(name)
    order = list(range(len(texts)))
    rng.shuffle(order)
    texts = [texts[i] for i in order]; sources = [sources[i] for i in order]
    n_base = min(len(texts), int(n_docs / 1.125))
    rows = [(float(i), texts[i], 0, -1, sources[i]) for i in range(n_base)]
    for i in range(0, n_base, 8):
        kind = 1 + (i // 8) % 2
        copy = _edit(texts[i], rng) if kind == 1 else _char_edit(texts[i], rng)
        rows.append((rng.uniform(i + 0.5, n_base), copy, kind, i, sources[i]))  # after its original
    rows.sort(key=lambda r: r[0])
    pos = {int(key): row for row, (key, _, kind, _, _) in enumerate(rows) if kind == 0}
    texts = [r[1] for r in rows]
    kinds = [r[2] for r in rows]
    orig = [pos[r[3]] if r[3] >= 0 else -1 for r in rows]
    sources = [r[4] for r in rows]
    return texts, np.array(kinds), np.array(orig), sources


def write_corpus(texts: list[str], folder: Path, files: int) -> None:
    folder.mkdir(parents=True)
    bounds = np.linspace(0, len(texts), files + 1).astype(int)
    for f in range(files):
        lo, hi = bounds[f], bounds[f + 1]
        pq.write_table(pa.table({"id": [str(i) for i in range(lo, hi)], "text": texts[lo:hi]}),
                       folder / f"part-{f:05d}.parquet")


def score(removed: np.ndarray, kinds: np.ndarray, orig: np.ndarray) -> dict:
    planted = kinds > 0
    # a removal is right if it removes a planted copy, or an original whose copy was kept
    right = removed & planted
    for row in np.flatnonzero(removed & ~planted):
        copies = np.flatnonzero(orig == row)
        right[row] = len(copies) > 0 and not removed[copies].all()
    out = {f"recall_{k}": float(removed[kinds == v].mean()) for k, v in (("word_edits", 1), ("char_edits", 2))}
    out["precision"] = float(right.sum() / max(removed.sum(), 1))
    out["removed"] = int(removed.sum())
    return out


def run_datatrove(inp: Path, work: Path, n: int) -> tuple[float, np.ndarray]:
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    _xxhash_str_compat()
    cfg = MinhashConfig()
    t = time.perf_counter()
    reader = lambda: ParquetReader(str(inp)).run()  # noqa: E731
    for _ in MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg).run(reader()) or []:
        pass
    for b in range(cfg.num_buckets):
        MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"),
                            config=cfg).run(None, rank=b, world_size=cfg.num_buckets)
    MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg).run()
    kept_docs = MinhashDedupFilter(input_folder=str(work / "remove")).run(reader())
    for _ in ParquetWriter(str(work / "out")).run(kept_docs):
        pass
    sec = time.perf_counter() - t
    kept = set(pq.read_table(work / "out", columns=["id"])["id"].to_pylist())
    return sec, np.array([str(i) not in kept for i in range(n)])


def run_babelforge(inp: Path, work: Path, n: int, one_bucket: bool) -> tuple[float, float, np.ndarray]:
    from pipeline.config import DedupConfig, LangIdConfig
    from pipeline.corpus.dedup import clusters, signatures
    from pipeline.corpus.langid import detect_scripts, predict, threshold
    from pipeline.schema import make_docs

    cfg, lid = DedupConfig(), LangIdConfig()
    t = time.perf_counter()
    tables = []
    lid_sec = 0.0
    for f in sorted(inp.glob("*.parquet")):
        raw = pq.read_table(f)
        scripts = detect_scripts(raw["text"])
        t_lid = time.perf_counter()
        if one_bucket:
            langs = ["all"] * raw.num_rows
        else:  # the labels prepare dedups by: the language, or und_<Script> below its threshold
            langs, scores = predict(raw["text"], lid, lid.max_chars, scripts)
            langs = [l if sc >= threshold(l, lid) else f"und_{s}" for l, sc, s in zip(langs, scores, scripts)]
        lid_sec += time.perf_counter() - t_lid
        tables.append(make_docs(raw["id"].to_pylist(), raw["text"].to_pylist(), [f.name] * raw.num_rows,
                                lang=langs).set_column(5, "script", pa.array(scripts)))
    docs = pa.concat_tables(tables)
    roots, _, _ = clusters(docs["lang"].to_pylist(), signatures(docs, cfg), cfg)
    keep = roots == np.arange(n)
    out = work / "out"
    out.mkdir(parents=True)
    pq.write_table(docs.select(["id", "text", "lang"]).filter(pa.array(keep)), out / "part-00000.parquet")
    sec = time.perf_counter() - t
    kept = set(pq.read_table(out, columns=["id"])["id"].to_pylist())
    return sec - lid_sec, lid_sec, np.array([str(i) not in kept for i in range(n)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=112_000)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--skip-datatrove", action="store_true")
    args = ap.parse_args()
    import logging

    from loguru import logger
    logger.remove()  # datatrove logs every step at INFO
    logging.disable(logging.INFO)
    texts, kinds, orig, sources = build(args.docs)
    n = len(texts)
    root = Path(tempfile.mkdtemp(prefix="minhash-disk-"))
    write_corpus(texts, root / "in", args.files)
    print(f"{n:,} documents in {args.files} Parquet files ({(kinds == 1).sum()} word-edit and "
          f"{(kinds == 2).sum()} char-edit copies), {len(set(sources))} sentence sets, one core\n")
    rows = []
    sec, lid, removed = run_babelforge(root / "in", root / "bf", n, one_bucket=False)
    rows.append(("babelforge, per predicted language", sec, lid, removed))
    sec, lid, removed = run_babelforge(root / "in", root / "bf1", n, one_bucket=True)
    rows.append(("babelforge, one bucket (no language)", sec, lid, removed))
    if not args.skip_datatrove:
        sec, removed = run_datatrove(root / "in", root / "dt", n)
        rows.append(("datatrove defaults (word 5-grams, 14 x 8)", sec, None, removed))
    print("| implementation | seconds (dedup, disk to disk) | docs/s | recall word_edits | recall char_edits "
          "| precision | removed |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, sec, lid, removed in rows:
        s = score(removed, kinds, orig)
        print(f"| {name} | {sec:.1f} | {n / sec:,.0f} | {s['recall_word_edits']:.3f} | "
              f"{s['recall_char_edits']:.3f} | {s['precision']:.3f} | {s['removed']:,} |")
    print(f"\nbabelforge language ID (not in the seconds above): {rows[0][2]:.1f} s")


if __name__ == "__main__":
    main()
