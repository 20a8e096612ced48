"""Language-ID accuracy and keep rate per language on text held out from LID training.

    .venv/bin/python bench/langid_accuracy.py [--datasets udhr tatoeba lingua] [--doc-lines 3]

Documents: `doc_lines` consecutive held-out lines of each label of ../shared/data/{udhr,
tatoeba, lingua-sentences}, the lines `babelforge langid train` held out (same hash split,
`LidTrainConfig` defaults), so the shipped model never saw them. For each document:
- raw lid.176: fastText's top-1 label, normalised to the pipeline's scheme;
- babelforge model alone: the shipped model's top-1;
- pipeline: `babelforge prepare` (default config: ensemble, thresholds, filters, dedup) on all
  documents at once; a document is *kept* when it is in a training shard, *right* when it is
  kept with its true label; unidentified (und_<Script>) and rejected documents are neither.

Prints per dataset the macro accuracy (over languages), the same on the languages lid.176
knows, the number of languages with >= 90% right, keep rates, and a per-language table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import language_codes
from pipeline.config import CorpusConfig, LidTrainConfig  # noqa: E402
from pipeline.corpus import langid, langid_train  # noqa: E402
from pipeline.corpus.prepare import prepare  # noqa: E402
from pipeline.storage import read_parquet  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FOLDERS = {"udhr": "udhr", "tatoeba": "tatoeba", "lingua": "lingua-sentences"}


def heldout_docs(folder: Path, doc_lines: int, sep: str = "\n") -> dict[str, list[str]]:
    """Documents of `doc_lines` held-out lines: paragraphs (UDHR) one a line, sentences (Tatoeba,
    lingua) joined by spaces as in running text."""
    raw, texts = langid_train.read_labelled([str(folder)])
    labs = langid_train.canonical_labels(raw, texts)
    _, held, _ = langid_train.split_examples(labs, texts, LidTrainConfig())
    # documents from the original (cased) lines: re-read them by their folded form
    cased = {}
    for lab, text in zip(labs, texts):
        cased.setdefault((lab, langid_train._line(text)), text.strip())
    out = {}
    for lab, lines in held.items():
        lines = [cased.get((lab, l), l) for l in lines]
        docs = [sep.join(lines[i : i + doc_lines]) for i in range(0, len(lines) - doc_lines + 1, doc_lines)]
        if docs:
            out[lab] = docs
    return out


def top1(model: str, docs: list[str]) -> list[str]:
    return langid.predict(docs, model)[0]


def run_pipeline(all_docs: list[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    """{doc id: (outcome, label)}: outcome kept / unidentified / rejected:<reason>."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for i, (ds, lab, text) in enumerate(all_docs):
                f.write(json.dumps({"id": f"{ds}|{lab}|{i}", "text": text}, ensure_ascii=False) + "\n")
        out = Path(tmp) / "out"
        cfg = CorpusConfig()
        cfg.dedup.near = False  # parallel sentences across datasets are not duplicates of each other
        t = time.monotonic()
        prepare([str(path)], str(out), cfg)
        print(f"prepare: {len(all_docs)} documents in {time.monotonic() - t:.1f} s")
        result = {}
        for p in (out / "shards").rglob("*.parquet"):
            t = read_parquet(str(p), ["id", "lang"])
            result.update((i, ("kept", l)) for i, l in zip(t["id"].to_pylist(), t["lang"].to_pylist()))
        for p in (out / "unidentified").rglob("*.parquet"):
            t = read_parquet(str(p), ["id", "lang"])
            result.update((i, ("unidentified", l)) for i, l in zip(t["id"].to_pylist(), t["lang"].to_pylist()))
        for p in (out / "rejects").glob("*.parquet"):
            t = read_parquet(str(p), ["id", "reason", "lang"])
            result.update((i, (f"rejected:{r}", l)) for i, r, l in zip(t["id"].to_pylist(), t["reason"].to_pylist(),
                                                                         t["lang"].to_pylist()))
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=list(FOLDERS))
    ap.add_argument("--doc-lines", type=int, default=3)
    ap.add_argument("--table", action="store_true", help="print the per-language table")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs {DATA}")
    lid_known = {language_codes.normalize(l) for l in langid.load_model("lid.176").get_labels()}
    sets = {ds: heldout_docs(DATA / FOLDERS[ds], args.doc_lines, "\n" if ds == "udhr" else " ")
            for ds in args.datasets}
    all_docs = [(ds, lab, d) for ds, by in sets.items() for lab, docs in by.items() for d in docs]
    outcome = run_pipeline(all_docs)
    ids_by = defaultdict(list)
    for i, (ds, lab, _) in enumerate(all_docs):
        ids_by[ds, lab].append(f"{ds}|{lab}|{i}")
    for ds, by in sets.items():
        rows = {}
        for lab, docs in sorted(by.items()):
            res = [outcome.get(i, ("missing", None)) for i in ids_by[ds, lab]]
            rows[lab] = {
                "docs": len(docs),
                "lid176": np.mean([p == lab for p in top1("lid.176", docs)]),
                "model": np.mean([p == lab for p in top1("babelforge", docs)]),
                "pipeline_right": np.mean([o == "kept" and l == lab for o, l in res]),
                "kept": np.mean([o == "kept" for o, _ in res]),
                "unidentified": np.mean([o == "unidentified" for o, _ in res]),
                "known_to_lid176": lab in lid_known,
            }
        known = [r for r in rows.values() if r["known_to_lid176"]]
        mean = lambda rs, k: float(np.mean([r[k] for r in rs])) if rs else float("nan")
        n = len(rows)
        print(f"\n### {ds}: {sum(r['docs'] for r in rows.values())} held-out documents of {args.doc_lines} lines, "
              f"{n} languages ({len(known)} known to lid.176)\n")
        print("| measure | raw lid.176 | babelforge model alone | pipeline (prepare, default) |")
        print("|---|---:|---:|---:|")
        print(f"| right, macro over all languages | {mean(rows.values(), 'lid176'):.3f} | {mean(rows.values(), 'model'):.3f} "
              f"| {mean(rows.values(), 'pipeline_right'):.3f} |")
        print(f"| right, macro over lid.176's languages | {mean(known, 'lid176'):.3f} | {mean(known, 'model'):.3f} | "
              f"{mean(known, 'pipeline_right'):.3f} |")
        for k in ("lid176", "model", "pipeline_right"):
            rows_ok = sum(r[k] >= 0.9 for r in rows.values())
            print(f"| languages >= 90% right ({k}) | | | {rows_ok}/{n} ({rows_ok / n:.0%}) |" if k == "pipeline_right"
                  else f"| languages >= 90% right ({k}) | {rows_ok}/{n} ({rows_ok / n:.0%}) | | |")
        print(f"| kept in training shards (mean) | | | {mean(rows.values(), 'kept'):.3f} |")
        print(f"| languages >= 95% kept | | | {sum(r['kept'] >= 0.95 for r in rows.values())}/{n} |")
        print(f"| unidentified (und bucket, mean) | | | {mean(rows.values(), 'unidentified'):.3f} |")
        from collections import Counter

        outcomes = Counter(outcome.get(i, ("missing", None))[0] for lab in rows for i in ids_by[ds, lab])
        print("\noutcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
        if args.table:
            print("\n| language | docs | lid.176 | model | pipeline right | kept | und |\n|---|---:|---:|---:|---:|---:|---:|")
            for lab, r in sorted(rows.items(), key=lambda kv: kv[1]["pipeline_right"]):
                print(f"| {lab}{'' if r['known_to_lid176'] else ' *'} | {r['docs']} | {r['lid176']:.2f} | {r['model']:.2f} | "
                      f"{r['pipeline_right']:.2f} | {r['kept']:.2f} | {r['unidentified']:.2f} |")


if __name__ == "__main__":
    main()
