"""Write the bundled sample corpus and labelled set from texts.py, with planted noise.

    python data/sample/build_sample.py      # rewrites data/sample/corpus and data/sample/labelled

Deterministic: the committed files are exactly what this script writes.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from texts import BOILERPLATE_DOCS, BOILERPLATE_LINES, DOCS, GIBBERISH, OTHER_LANGUAGE, TOO_SHORT, TOPICS

HERE = Path(__file__).parent
rng = random.Random(7)


def doc_id(lang: str, topic: str, i: int) -> str:
    return f"{lang}-{topic}-{i}"


def all_docs(langs):
    for lang in langs:
        for topic in TOPICS:
            for i, text in enumerate(DOCS[lang][topic]):
                yield doc_id(lang, topic, i), lang, topic, text


def write_jsonl(path: Path, rows: list[dict | str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")


def main() -> None:
    corpus = HERE / "corpus"
    corpus.mkdir(exist_ok=True)

    # news.jsonl: clean documents with ids, one malformed line in the middle.
    news = [{"id": d, "text": t} for d, _, _, t in all_docs(["en", "fr", "de", "es", "ru", "ar"])]
    news.insert(17, '{"id": "broken-1", "text": "this line was cut off')
    write_jsonl(corpus / "news.jsonl", news)

    # forum.txt: one document per line, no ids (ids become forum.txt:<line>).
    forum = [t for _, _, _, t in all_docs(["zh", "ja", "hi", "th"])]
    (corpus / "forum.txt").write_text("\n".join(forum) + "\n", encoding="utf-8")

    # web.parquet: sw and eu pages, some with boilerplate lines around the content,
    # and pages that are nothing but boilerplate.
    ids, texts = [], []
    for n, (d, _, _, t) in enumerate(all_docs(["sw", "eu"])):
        if n % 3 == 0:
            t = f"{BOILERPLATE_LINES[n % len(BOILERPLATE_LINES)]}\n{t}\n{BOILERPLATE_LINES[(n + 1) % len(BOILERPLATE_LINES)]}"
        ids.append(d)
        texts.append(t)
    for n, t in enumerate(BOILERPLATE_DOCS):
        ids.append(f"boilerplate-{n}")
        texts.append(t)
    pq.write_table(pa.table({"id": ids, "text": texts}), corpus / "web.parquet", compression="zstd")

    # noise.jsonl: duplicates, near duplicates, mojibake, other languages, short, gibberish.
    clean = list(all_docs(sorted(DOCS)))
    noise: list[dict] = []
    for n, (d, _, _, t) in enumerate(rng.sample(clean, 12)):
        noise.append({"id": f"copy-{n}-of-{d}", "text": t})
    for n, (d, _, _, t) in enumerate(rng.sample(clean, 8)):
        # same words, different case, punctuation and spacing
        noise.append({"id": f"near-{n}-of-{d}", "text": "  " + t.upper().replace(",", " ,").rstrip(".。।") + " !!"})
    latin = [x for x in clean if x[1] in ("fr", "de", "es")]
    for n, (d, _, _, t) in enumerate(rng.sample(latin, 6)):
        noise.append({"id": f"mojibake-{n}-of-{d}", "text": t.encode("utf-8").decode("cp1252", errors="ignore")})
    for n, t in enumerate(OTHER_LANGUAGE):
        noise.append({"id": f"other-language-{n}", "text": t})
    for n, t in enumerate(TOO_SHORT):
        noise.append({"id": f"short-{n}", "text": t})
    for n, t in enumerate(GIBBERISH):
        noise.append({"id": f"gibberish-{n}", "text": t})
    noise.append({"id": "no-text-1", "title": "a record without a text field"})
    write_jsonl(corpus / "noise.jsonl", noise)

    # labelled topic classification: docs 0-2 of each topic train, doc 3 test, every language.
    labelled = HERE / "labelled"
    labelled.mkdir(exist_ok=True)
    for split, keep in (("train", lambda i: i < 3), ("test", lambda i: i == 3)):
        with (labelled / f"{split}.tsv").open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["lang", "label", "text"])
            for lang in sorted(DOCS):
                for topic in TOPICS:
                    for i, t in enumerate(DOCS[lang][topic]):
                        if keep(i):
                            w.writerow([lang, topic, t])


if __name__ == "__main__":
    main()
