"""Peak memory of `babelforge prepare` as its input grows 10x (issue 3: growth < 1.5x).

    .venv/bin/python bench/memory_bench.py [--docs-per-file 1400] [--files 4] [--scale 10]

Builds two corpora from ../shared/data/lingua-sentences with the same language mix: every
file holds documents of 4 random sentences, languages shuffled together (75 languages), so the
small and the large run meet the same languages, segmenters and models. x1 = `--files` files,
x10 = `--scale` times as many files of the same size. Each corpus is prepared by the real CLI
in a fresh process under `/usr/bin/time -v`; peak RSS is its maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINGUA = ROOT.parent / "shared" / "data" / "lingua-sentences"


def build(out: Path, n_files: int, docs_per_file: int, seed: int) -> int:
    pools = {f.stem: [l.strip() for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
             for f in sorted(LINGUA.glob("*.txt"))}
    langs = sorted(pools)
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for i in range(n_files):
        with open(out / f"part-{i:04d}.jsonl", "w", encoding="utf-8") as f:
            for j in range(docs_per_file):
                lang = rng.choice(langs)
                text = " ".join(rng.sample(pools[lang], 4))
                f.write(json.dumps({"id": f"{seed}-{i}-{j}", "text": text}, ensure_ascii=False) + "\n")
                n += 1
    return n


def run(inputs: Path, out: Path) -> dict:
    cmd = ["/usr/bin/time", "-v", str(ROOT / ".venv" / "bin" / "babelforge"), "prepare", f"{inputs}/*.jsonl",
           "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    report = json.loads((out / "report.json").read_text())
    return {"wall": wall, "peak_mb": peak_kb / 1024, "input": report["input"], "kept": report["kept"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs-per-file", type=int, default=1400)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--scale", type=int, default=10)
    args = ap.parse_args()
    if not LINGUA.is_dir():
        sys.exit(f"needs {LINGUA}")
    tmp = Path(tempfile.mkdtemp(prefix="babelforge-mem-"))
    try:
        rows = []
        for label, n_files in (("x1", args.files), (f"x{args.scale}", args.files * args.scale)):
            build(tmp / label, n_files, args.docs_per_file, seed=0)
            rows.append((label, n_files, run(tmp / label, tmp / f"out-{label}")))
        print(f"{platform.machine()}, Python {platform.python_version()}; {args.docs_per_file} docs per file")
        print("| input | files | documents | kept | wall s | peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, n_files, r in rows:
            print(f"| {label} | {n_files} | {r['input']:,} | {r['kept']:,} | {r['wall']:.1f} | {r['peak_mb']:.0f} |")
        print(f"growth of peak RSS: {rows[1][2]['peak_mb'] / rows[0][2]['peak_mb']:.2f}x for {args.scale}x input")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
