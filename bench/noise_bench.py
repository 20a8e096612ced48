"""Planted noise: does the corpus phase remove (or repair) every kind, per kind?

    .venv/bin/python bench/noise_bench.py [--docs-per-lang 60] [--out /tmp/noise-bench]

Clean documents (4 real sentences, lingua test sentences, 12 languages) plus copies of a
sample of them with one kind of planted noise each, run through `babelforge prepare` with
default settings and the languages restricted to the 12. Per kind, recall = share of the
planted documents whose noise is gone from the kept corpus (removed, or repaired and then
removed as a duplicate of its clean original). For near duplicates also precision = share of
near-duplicate removals that were planted.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANGS = ["en", "fr", "de", "es", "ru", "ar", "hi", "sw", "eu", "pt", "it", "tr"]
OTHER = ["nl", "pl", "fi", "hu", "cs", "sv"]  # wrong-language documents
BOILERPLATE = ["We use cookies to improve your experience.", "Home | News | Contact",
               "© 2026 All rights reserved.", "Please enable JavaScript to view this page."]


def _lines(lang: str) -> list[str]:
    src = ROOT.parent / "shared" / "data" / "lingua-sentences" / f"{lang}.txt"
    lines = [l.strip() for l in src.read_text(encoding="utf-8").splitlines() if l.strip()]
    random.Random(lang).shuffle(lines)
    return lines


def _edit(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(2):
        i = rng.randrange(len(words))
        words[i] = words[i] + "s" if rng.random() < 0.5 else words[i][::-1]
    return " ".join(words)


def build(docs_per_lang: int, seed: int = 0) -> tuple[list[dict], dict[str, list[str]]]:
    rng = random.Random(seed)
    rows: list[dict] = []
    planted: dict[str, list[str]] = {k: [] for k in (
        "exact_duplicate", "near_duplicate", "boilerplate_lines", "repeated_lines", "repeated_ngrams",
        "mojibake", "gibberish", "wrong_language")}

    def add(kind: str | None, doc_id: str, text: str) -> None:
        rows.append({"id": doc_id, "text": text})
        if kind:
            planted[kind].append(doc_id)

    for lang in LANGS:
        lines = _lines(lang)
        clean = [" ".join(lines[i : i + 4]) for i in range(0, docs_per_lang * 4, 4)]
        for j, text in enumerate(clean):
            add(None, f"{lang}-{j}", text)
        for j, text in enumerate(clean[: docs_per_lang // 6]):
            add("exact_duplicate", f"{lang}-{j}-copy", text)
        for j, text in enumerate(clean[docs_per_lang // 6 : docs_per_lang // 3]):
            add("near_duplicate", f"{lang}-near-{j}", _edit(text, rng))
        for j, text in enumerate(clean[docs_per_lang // 3 : docs_per_lang // 2]):
            sents = text.split(". ")
            add("boilerplate_lines", f"{lang}-boiler-{j}",
                "\n".join([rng.choice(BOILERPLATE), ". ".join(sents), rng.choice(BOILERPLATE)]))
            add("repeated_lines", f"{lang}-replines-{j}", "\n".join([text] + [sents[0]] * 8))
            add("repeated_ngrams", f"{lang}-repgram-{j}",
                text + " " + " ".join([" ".join(text.split()[:3])] * 10))
            if lang in ("en", "fr", "de", "es", "pt", "it", "tr", "eu"):
                add("mojibake", f"{lang}-moji-{j}", text.encode("utf-8").decode("cp1252", errors="ignore"))
            gib = " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
                           for _ in range(40))
            add("gibberish", f"{lang}-gib-{j}", gib)
    for lang in OTHER:
        for j, text in enumerate(" ".join(_lines(lang)[i : i + 4]) for i in range(0, 40, 4)):
            add("wrong_language", f"{lang}-wrong-{j}", text)
    return rows, planted


def measure(docs_per_lang: int = 60, out: str | None = None, dedup: dict | None = None) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.config import CorpusConfig
    from pipeline.corpus import prepare

    rows, planted = build(docs_per_lang)
    work = Path(out or tempfile.mkdtemp(prefix="noise-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = CorpusConfig()
    cfg.langid.languages = LANGS
    if dedup:
        cfg.dedup = cfg.dedup.model_copy(update=dedup)
    report = prepare([str(work / "in.jsonl")], str(work / "out"), cfg)
    kept = pa.concat_tables([pq.read_table(p) for p in sorted((work / "out" / "shards").rglob("*.parquet"))])
    kept_text = dict(zip(kept["id"].to_pylist(), kept["text"].to_pylist()))
    rejects = pa.concat_tables([pq.read_table(p) for p in sorted((work / "out" / "rejects").glob("*.parquet"))])
    reason = dict(zip(rejects["id"].to_pylist(), rejects["reason"].to_pylist()))
    result = {}
    for kind, ids in planted.items():
        if kind == "boilerplate_lines":  # repaired counts: kept without any boilerplate line
            gone = sum(i not in kept_text or not any(b in kept_text[i] for b in BOILERPLATE) for i in ids)
        elif kind == "mojibake":
            gone = sum(i not in kept_text or "Ã" not in kept_text[i] for i in ids)
        else:
            gone = sum(i not in kept_text for i in ids)
        result[kind] = {"planted": len(ids), "removed_or_repaired": gone, "recall": round(gone / max(len(ids), 1), 4)}
    # a near-duplicate removal is right when it removes any planted copy of an original
    # (an edited copy, or a mojibake copy whose repair left it slightly different); it is a
    # false positive when it removes an original clean document
    clean_ids = [r["id"] for r in rows if r["id"].count("-") == 1 and r["id"].split("-")[1].isdigit()]
    near_removed = [i for i, r in reason.items() if r == "near_duplicate"]
    originals = set(clean_ids)
    result["near_duplicate"]["precision"] = round(
        sum(i not in originals for i in near_removed) / max(len(near_removed), 1), 4)
    result["clean_kept"] = round(sum(i in kept_text for i in clean_ids) / len(clean_ids), 4)
    result["report"] = {k: report[k] for k in ("input", "kept", "unidentified", "rejected", "rejected_by_reason")}
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs-per-lang", type=int, default=60)
    ap.add_argument("--out")
    args = ap.parse_args()
    res = measure(args.docs_per_lang, args.out)
    print("| noise kind | planted | removed or repaired | recall | precision |\n|---|---:|---:|---:|---:|")
    for kind, r in res.items():
        if isinstance(r, dict) and "planted" in r:
            print(f"| {kind} | {r['planted']} | {r['removed_or_repaired']} | {r['recall']:.3f} | {r.get('precision', '')} |")
    print(f"\nclean documents kept: {res['clean_kept']:.3f}")
    print(json.dumps(res["report"], indent=1))


if __name__ == "__main__":
    main()
