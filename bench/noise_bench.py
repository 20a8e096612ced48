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


# Held-out kinds: English site furniture that no boilerplate pattern of ours names, and near
# copies with character edits (OCR, typos, spelling variants) and a dropped sentence.
SITE_LINES = ["Skip to main content and jump straight to the latest stories",
              "Share this article with your friends on Facebook, Twitter and WhatsApp",
              "Sign up for our weekly newsletter and never miss a story again",
              "Download our free mobile app for breaking news alerts on your phone",
              "Related stories you might have missed from our correspondents this week"]


def _char_edit(text: str, rng: random.Random) -> str:
    """About 3% of the letters replaced by other letters of the text, one sentence dropped."""
    import re

    sents = re.split(r"(?<=[.!?。！？])\s+", text)
    if len(sents) > 1:
        del sents[rng.randrange(len(sents))]
    text = " ".join(sents)
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.isalpha()]
    pool = [chars[i] for i in letters]
    for i in rng.sample(letters, max(1, int(0.03 * len(chars)))):
        chars[i] = rng.choice(pool)
    return "".join(chars)


def build_heldout(n_langs: int = 36, docs_per_lang: int = 12, seed: int = 0):
    """Clean documents of Tatoeba sentences held out from language-ID training, in `n_langs`
    languages outside the 12 of `build` (every k-th Tatoeba language), each document 12
    sentences as 4 lines; then planted: character-edit near copies, English site lines
    inserted at the top and bottom, exact copies."""
    sys.path.insert(0, str(ROOT / "bench"))
    from langid_accuracy import DATA, heldout_docs

    from pipeline.language_codes import normalize

    rng = random.Random(seed)
    skip = {normalize(l) for l in LANGS}
    by = {lab: docs for lab, docs in heldout_docs(DATA / "tatoeba", 3, " ").items() if lab not in skip and len(docs) >= 4 * docs_per_lang}
    labs = sorted(by)[:: max(1, len(by) // n_langs)][:n_langs]
    rows, planted = [], {k: [] for k in ("exact_duplicate", "char_near_duplicate", "foreign_site_lines")}
    for lab in labs:
        groups = by[lab]
        clean = ["\n".join(groups[i : i + 4]) for i in range(0, 4 * docs_per_lang, 4)]
        third = docs_per_lang // 3
        # the last third only ever appears with site lines: no clean twin for dedup to catch them by
        for j, text in enumerate(clean[: 2 * third]):
            rows.append({"id": f"{lab}-{j}", "text": text})
        for j, text in enumerate(clean[:third]):
            rows.append({"id": f"{lab}-{j}-copy", "text": text})
            planted["exact_duplicate"].append(f"{lab}-{j}-copy")
        for j, text in enumerate(clean[third : 2 * third]):
            rows.append({"id": f"{lab}-near-{j}", "text": _char_edit(text, rng)})
            planted["char_near_duplicate"].append(f"{lab}-near-{j}")
        for j, text in enumerate(clean[2 * third :]):
            a, b = rng.sample(SITE_LINES, 2)
            rows.append({"id": f"{lab}-site-{j}", "text": "\n".join([a, text, b])})
            planted["foreign_site_lines"].append(f"{lab}-site-{j}")
    return rows, planted, labs


def _run(rows: list[dict], work: Path, cfg=None) -> tuple[dict, dict[str, str], dict[str, str]]:
    """`prepare` on the rows; (report, kept id -> text, rejected id -> reason)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.corpus.prepare import prepare

    work.mkdir(parents=True, exist_ok=True)
    (work / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = prepare([str(work / "in.jsonl")], str(work / "out"), cfg)
    kept = pa.concat_tables([pq.read_table(p) for p in sorted((work / "out" / "shards").rglob("*.parquet"))])
    rejects = pa.concat_tables([pq.read_table(p) for p in sorted((work / "out" / "rejects").glob("*.parquet"))])
    return (report, dict(zip(kept["id"].to_pylist(), kept["text"].to_pylist())),
            dict(zip(rejects["id"].to_pylist(), rejects["reason"].to_pylist())))


def measure_heldout(out: str | None = None, n_langs: int = 36, docs_per_lang: int = 12) -> dict:
    """`build_heldout` through `prepare` with default settings (no language list)."""
    rows, planted, labs = build_heldout(n_langs, docs_per_lang)
    report, kept_text, reason = _run(rows, Path(out or tempfile.mkdtemp(prefix="noise-heldout-")))
    result = {}
    for kind, ids in planted.items():
        if kind == "foreign_site_lines":  # repaired: kept, without any site line
            gone = sum(i in kept_text and not any(s in kept_text[i] for s in SITE_LINES) for i in ids)
        else:
            gone = sum(i not in kept_text for i in ids)
        result[kind] = {"planted": len(ids), "removed_or_repaired": gone, "recall": round(gone / len(ids), 4)}
    originals = {r["id"] for r in rows if r["id"].rsplit("-", 1)[1].isdigit() and "-near-" not in r["id"]
                 and "-site-" not in r["id"]}
    near_removed = [i for i, r in reason.items() if r == "near_duplicate"]
    result["char_near_duplicate"]["precision"] = round(sum(i not in originals for i in near_removed) / max(len(near_removed), 1), 4)
    clean_ids = sorted(originals)
    source = {r["id"]: r["text"] for r in rows}
    lines_in = sum(len(source[i].split("\n")) for i in clean_ids if i in kept_text)
    lines_out = sum(len(kept_text[i].split("\n")) for i in clean_ids if i in kept_text)
    result["clean_lines_lost"] = {"lines": lines_in, "lost": lines_in - lines_out}
    result["clean_kept"] = round(sum(i in kept_text for i in clean_ids) / len(clean_ids), 4)
    per_lang = {}
    for lab in labs:
        ids = [i for i in clean_ids if i.startswith(lab + "-")]
        per_lang[lab] = round(sum(i in kept_text for i in ids) / len(ids), 3)
    result["clean_kept_per_language"] = per_lang
    result["languages"] = labs
    result["report"] = {k: report[k] for k in ("input", "kept", "unidentified", "rejected", "rejected_by_reason",
                                               "foreign_lines_removed")}
    return result


def measure(docs_per_lang: int = 60, out: str | None = None, dedup: dict | None = None) -> dict:
    from pipeline.config import CorpusConfig

    rows, planted = build(docs_per_lang)
    cfg = CorpusConfig()
    cfg.langid.languages = LANGS
    if dedup:
        cfg.dedup = cfg.dedup.model_copy(update=dedup)
    report, kept_text, reason = _run(rows, Path(out or tempfile.mkdtemp(prefix="noise-bench-")), cfg)
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
    ap.add_argument("--held-out", action="store_true", help="held-out kinds and languages (build_heldout)")
    args = ap.parse_args()
    if args.held_out:
        res = measure_heldout(args.out)
        print(f"{len(res['languages'])} languages: {' '.join(res['languages'])}\n")
        print("| noise kind | planted | removed or repaired | recall | precision |\n|---|---:|---:|---:|---:|")
        for kind, r in res.items():
            if isinstance(r, dict) and "planted" in r:
                print(f"| {kind} | {r['planted']} | {r['removed_or_repaired']} | {r['recall']:.3f} | {r.get('precision', '')} |")
        print(f"\nclean lines lost from kept clean documents: {res['clean_lines_lost']}")
        print(f"\nclean documents kept: {res['clean_kept']:.3f}; per language: "
              + ", ".join(f"{k} {v}" for k, v in res["clean_kept_per_language"].items()))
        print(json.dumps(res["report"], indent=1))
        return
    res = measure(args.docs_per_lang, args.out)
    print("| noise kind | planted | removed or repaired | recall | precision |\n|---|---:|---:|---:|---:|")
    for kind, r in res.items():
        if isinstance(r, dict) and "planted" in r:
            print(f"| {kind} | {r['planted']} | {r['removed_or_repaired']} | {r['recall']:.3f} | {r.get('precision', '')} |")
    print(f"\nclean documents kept: {res['clean_kept']:.3f}")
    print(json.dumps(res["report"], indent=1))


if __name__ == "__main__":
    main()
