"""The whole `babelforge prepare` process vs. datatrove's default filter chain alone, same documents.

    taskset -c 0 .venv/bin/python bench/prepare_bench.py [--max-docs 4000]

Needs the bench extra (datatrove + spaCy) and ../shared/data. Documents: 20 consecutive
sentences held out from language-ID training (`LidTrainConfig` split) of every Tatoeba language,
as one paragraph, and 8 held-out paragraphs of every UDHR translation, one a line (news-article
length: most pass Gopher's 50-word minimum, so datatrove's chain runs more than one filter),
shuffled with a fixed seed, written to one JSONL file.

- babelforge: `babelforge prepare docs.jsonl --out DIR` in a fresh process (start-up, model
  loading, ingest, normalisation, language ID with the default ensemble, foreign lines, filters,
  exact + near dedup, shards, report), timed from outside;
- datatrove: GopherQualityFilter + GopherRepetitionFilter + C4QualityFilter + FineWebQualityFilter
  with default settings, in this process, on the same texts, spaCy loaded before timing; no
  language ID, no dedup, no writing.

Both run on the core this process is pinned to (taskset is inherited by the child).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from filters_bench import datatrove_default_chain, datatrove_keeps  # noqa: E402
from langid_accuracy import DATA, heldout_docs  # noqa: E402


def documents(max_docs: int) -> list[tuple[str, str]]:
    docs = [(lab, d) for lab, ds in heldout_docs(DATA / "tatoeba", 20, " ").items() for d in ds]
    docs += [(lab, d) for lab, ds in heldout_docs(DATA / "udhr", 8).items() for d in ds]
    random.Random(0).shuffle(docs)
    return docs[:max_docs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-docs", type=int, default=4000)
    args = ap.parse_args()
    docs = documents(args.max_docs)
    texts = [d for _, d in docs]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "docs.jsonl"
        src.write_text("".join(json.dumps({"id": f"{lab}|{i}", "text": d}, ensure_ascii=False) + "\n"
                               for i, (lab, d) in enumerate(docs)), encoding="utf-8")
        exe = str(Path(sys.executable).with_name("babelforge"))
        t = time.perf_counter()
        subprocess.run([exe, "prepare", str(src), "--out", str(Path(tmp) / "out")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CI": "1"})
        bf_sec = time.perf_counter() - t
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
    dt_sec, flags = datatrove_keeps(datatrove_default_chain(texts[0]), texts)
    dt_kept = sum(flags)
    n = len(texts)
    cpus = sorted(os.sched_getaffinity(0))
    print(f"{n} documents ({len({l for l, _ in docs})} languages), cores {cpus}\n")
    print("| what | seconds | docs/s | kept |\n|---|---:|---:|---:|")
    print(f"| babelforge prepare (whole process) | {bf_sec:.1f} | {n / bf_sec:,.0f} | {report['kept'] / n:.1%} |")
    print(f"| datatrove default filter chain alone | {dt_sec:.1f} | {n / dt_sec:,.0f} | {dt_kept / n:.1%} |")
    print(f"\nbabelforge / datatrove: {dt_sec / bf_sec:.2f}x documents per second")
    print("prepare stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()))


if __name__ == "__main__":
    main()
