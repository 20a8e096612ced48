"""Language ID stage vs. raw fastText on the same texts, in one process.

    .venv/bin/python bench/langid_bench.py [--repeat 3] [--sentences 3]

Texts: documents of 3 (or `--sentences`) sentences from ../shared/data/lingua-sentences (75 languages), or the
bundled sample when that folder is absent. Reports documents per second for
  raw-multiline : fastText's C++ batch call (`f.multilinePredict`, k=1) on the raw texts
  raw-predict   : fastText's C++ per-text call (`f.predict`) on newline-free texts
  raw-predict-top3 : the same with k=3
  raw-babelforge-model-top3 : babelforge's own model alone, raw, k=3
  babelforge-lid176-only : pipeline.corpus.langid.predict with lid.176 alone (folding, lower-casing, labels)
  identify-lid176-only-top3 : pipeline.corpus.langid.identify with lid.176 alone (adds script detection,
                  thresholds, rejects; the 3 best languages kept)
  identify-ensemble-top3 (default) : identify with the default models: lid.176, and babelforge's
                  model where lid.176 is below `confident` (the stage as `prepare` runs it)
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import LangIdConfig  # noqa: E402
from pipeline.corpus import langid  # noqa: E402
from pipeline.schema import make_docs  # noqa: E402


def load_texts(sentences: int = 3) -> tuple[list[str], str]:
    shared = ROOT.parent / "shared" / "data" / "lingua-sentences"
    if shared.is_dir():
        texts = []
        for f in sorted(shared.glob("*.txt")):
            lines = [l for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
            texts += [" ".join(lines[i : i + sentences]) for i in range(0, len(lines), sentences)]
        return texts, f"lingua-sentences, {sentences}-sentence documents"
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
    ap.add_argument("--sentences", type=int, default=3, help="sentences per document (10: news-article length)")
    args = ap.parse_args()
    texts, what = load_texts(args.sentences)
    model = langid.load_model(None).f
    clean = [" ".join(t.split()) for t in texts]
    table = make_docs([str(i) for i in range(len(texts))], texts, ["b"] * len(texts))
    single = LangIdConfig(models=[{"path": "lid.176"}])
    ours = langid.load_model("babelforge").f
    rows = {
        "raw-multiline": best(lambda: model.multilinePredict(clean, 1, 0.0, "replace"), args.repeat),
        "raw-predict": best(lambda: [model.predict(t, 1, 0.0, "replace") for t in clean], args.repeat),
        "raw-predict-top3": best(lambda: [model.predict(t, 3, 0.0, "replace") for t in clean], args.repeat),
        "raw-babelforge-model-top3": best(lambda: [ours.predict(t, 3, 0.0, "replace") for t in clean], args.repeat),
        "babelforge-lid176-only": best(lambda: langid.predict(texts, single.models), args.repeat),
        "identify-lid176-only-top3": best(lambda: langid.identify(table, single), args.repeat),
        "identify-ensemble-top3 (default)": best(lambda: langid.identify(table, LangIdConfig()), args.repeat),
    }
    cfg = LangIdConfig()
    first_lang, first_score = langid.predict(texts, single.models)
    recheck = langid.recheck_set(cfg)
    share = sum(s < cfg.confident or l in recheck for l, s in zip(first_lang, first_score)) / len(texts)
    print(f"{len(texts)} texts ({what}, {sum(map(len, texts)) / len(texts):.0f} characters on average); {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    base = rows["raw-predict"]
    print("| path | seconds | docs/s | vs raw-predict |\n|---|---:|---:|---:|")
    for name, sec in rows.items():
        print(f"| {name} | {sec:.3f} | {len(texts) / sec:,.0f} | {base / sec:.2f}x |")
    print(f"\nthe second model read {share:.1%} of the documents (lid.176 below {cfg.confident} "
          f"or a label on its re-check list); "
          f"default stage / raw lid.176 top-3: {rows['identify-ensemble-top3 (default)'] / rows['raw-predict-top3']:.2f}x")


if __name__ == "__main__":
    main()
