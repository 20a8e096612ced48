"""Clean text of another genre through the quality filters: what share is kept, per language.

    .venv/bin/python bench/genre_filters_bench.py [--join newline|space|both] [--docs 0] [--und]

The filter thresholds and letter-pair tables are derived from UDHR / Tatoeba / lingua
(`babelforge profiles derive`). This runs the filters (`filters.check`, language-ID score 1.0)
on clean professional text of other genres: NTREX-128 news (`../shared/data/ntrex`, documents of
10 consecutive sentences) and the Bible (`../shared/data/bible`, documents of 10 consecutive
verses), lines joined by newlines or by spaces, labelled with the file's language (canonical
label) and the script `detect_scripts` finds. Prints, per language, the documents rejected per
filter reason, then a summary: languages keeping >= 95% and every `gibberish` reject.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
DOC_LINES = 10


def documents(folder: str, join: str = "\n", max_docs: int = 0) -> dict[str, list[str]]:
    """{file stem: documents of DOC_LINES consecutive lines} of ntrex/ (sentences) or bible/ (verses)."""
    out: dict[str, list[str]] = {}
    src = DATA / folder
    for path in sorted(src.glob("*.txt" if folder == "ntrex" else "*.tsv")):
        if path.name == "languages.tsv" or path.name == "documents.tsv":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if folder == "bible":
            lines = [l.split("\t", 1)[1] for l in lines if "\t" in l]
        lines = [l.strip() for l in lines if l.strip()]
        docs = [join.join(lines[i : i + DOC_LINES]) for i in range(0, len(lines) - DOC_LINES + 1, DOC_LINES)]
        out[path.stem] = docs[:max_docs] if max_docs else docs
    return out


def label_of(stem: str, script: str) -> str:
    from pipeline.language_codes import normalize

    return normalize(stem.split("-")[0], script)


def run(folder: str, join: str, max_docs: int = 0, und: bool = False) -> dict[str, dict]:
    """{stem: {"label", "script", "docs", "rejects": Counter(reason), "gibberish": [(score, head)]}}."""
    from pipeline.corpus import filters
    from pipeline.corpus.langid import detect_scripts

    res = {}
    for stem, docs in documents(folder, join, max_docs).items():
        scripts = detect_scripts(docs)
        script = Counter(scripts).most_common(1)[0][0]
        lab = f"und_{script}" if und else label_of(stem, script)
        rejects: Counter = Counter()
        gib = []
        for d, s in zip(docs, scripts):
            hit = filters.check(d, lab, s)
            if hit:
                rejects[hit[1]] += 1
                if hit[1] == "gibberish":
                    gib.append((hit[2], d[:60].replace("\n", " ")))
        res[stem] = {"label": lab, "script": script, "docs": len(docs), "rejects": rejects, "gibberish": gib}
    return res


def report(name: str, res: dict[str, dict]) -> None:
    print(f"\n## {name}")
    print("| file | label | script | docs | kept | rejected per reason |")
    print("|---|---|---|---:|---:|---|")
    low = []
    for stem, r in sorted(res.items()):
        n, bad = r["docs"], sum(r["rejects"].values())
        kept = 1 - bad / max(n, 1)
        if kept < 0.95:
            low.append(stem)
        if bad:
            reasons = ", ".join(f"{k} {v}" for k, v in r["rejects"].most_common())
            print(f"| {stem} | {r['label']} | {r['script']} | {n} | {kept:.3f} | {reasons} |")
    langs = len(res)
    gib = sum(r["rejects"]["gibberish"] for r in res.values())
    print(f"\n{name}: {langs - len(low)} of {langs} files keep >= 95% ({(langs - len(low)) / langs:.3f}); "
          f"below: {' '.join(low) or '-'}; gibberish rejects: {gib}")
    for stem, r in sorted(res.items()):
        for detail, head in r["gibberish"][:3]:
            print(f"  gibberish {stem}: {detail}: {head!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--join", choices=["newline", "space", "both"], default="both")
    ap.add_argument("--docs", type=int, default=0, help="at most this many documents per file (0: all)")
    ap.add_argument("--und", action="store_true", help="label every document und_<Script> (unidentified)")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs {DATA}")
    joins = {"newline": ["\n"], "space": [" "], "both": ["\n", " "]}[args.join]
    for folder in ("ntrex", "bible"):
        for j in joins:
            report(f"{folder}, lines joined by {'newline' if j == chr(10) else 'space'}"
                   f"{', und_<Script>' if args.und else ''}", run(folder, j, args.docs, args.und))


if __name__ == "__main__":
    main()
