"""Language ID stage vs. raw fastText on the same texts, in one process.

    .venv/bin/python bench/langid_bench.py [--repeat 3]

Texts: three-sentence documents from ../shared/data/lingua-sentences (75 languages), or the
bundled sample when that folder is absent. Reports documents per second for
  raw-multiline : fastText's C++ batch call (`f.multilinePredict`, k=1) on the raw texts
  raw-predict   : fastText's C++ per-text call (`f.predict`) on newline-free texts
  raw-predict-top3 : the same with k=3
  babelforge    : pipeline.langid.predict (whitespace folding, lower-casing, f.predict)
  identify      : pipeline.langid.identify on an Arrow table (adds script detection, rejects)
  identify-top3 : the same keeping the 3 best languages per document (the default)
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import langid  # noqa: E402
from pipeline.schema import make_docs  # noqa: E402


def load_texts() -> tuple[list[str], str]:
    shared = ROOT.parent / "shared" / "data" / "lingua-sentences"
    if shared.is_dir():
        texts = []
        for f in sorted(shared.glob("*.txt")):
            lines = [l for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
            texts += [" ".join(lines[i : i + 3]) for i in range(0, len(lines), 3)]
        return texts, "lingua-sentences, 3-sentence documents"
    sys.path.insert(0, str(ROOT / "data" / "sample"))
    from texts import DOCS

    return [t for l in DOCS.values() for v in l.values() for t in v] * 50, "bundled sample x50"


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    texts, what = load_texts()
    model = langid.load_model(None).f
    clean = [" ".join(t.split()) for t in texts]
    table = make_docs([str(i) for i in range(len(texts))], texts, ["b"] * len(texts))
    rows = {
        "raw-multiline": best(lambda: model.multilinePredict(clean, 1, 0.0, "replace"), args.repeat),
        "raw-predict": best(lambda: [model.predict(t, 1, 0.0, "replace") for t in clean], args.repeat),
        "raw-predict-top3": best(lambda: [model.predict(t, 3, 0.0, "replace") for t in clean], args.repeat),
        "babelforge": best(lambda: langid.predict(texts), args.repeat),
        "identify": best(lambda: langid.identify(table, top_k=1), args.repeat),
        "identify-top3": best(lambda: langid.identify(table, top_k=3), args.repeat),
    }
    print(f"{len(texts)} texts ({what}); {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    base = rows["raw-predict"]
    print("| path | seconds | docs/s | vs raw-predict |\n|---|---:|---:|---:|")
    for name, sec in rows.items():
        print(f"| {name} | {sec:.3f} | {len(texts) / sec:,.0f} | {base / sec:.2f}x |")


if __name__ == "__main__":
    main()
