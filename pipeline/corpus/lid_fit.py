"""Fitting the language-ID combiner on genres its members did not see (leave one genre out).

Recipe (as in stacking with out-of-fold predictions; `bench/langid_genres.py` runs it):
1. train the babelforge fastText model without each genre g (`babelforge langid train`);
2. let every member (lid.176, the model without g, heliport if installed) read documents of g:
   text of a genre the babelforge member never saw, as web text will be (`candidate_rows`);
3. fit the combiner on those documents' candidates (`fit_across_genres`, `lid_combine.fit`),
   and score it on a genre left out of the fit as well (`evaluate`).

Documents: `sentences` consecutive lines of a label's file (a NTREX document's lines stay
together, `documents.tsv`), joined by newlines in even documents and spaces in odd ones, so the
combiner sees both shapes.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import numpy as np

from .. import language_codes
from ..config import LidModel
from . import lid_backends, lid_combine
from .langid import CANDIDATES, _lines, detect_scripts
from .langid_train import _file_label, canonical_labels



def genre_documents(folder: str, sentences: int = 10, max_docs: int = 100) -> list[tuple[str, str]]:
    """(canonical label, document) pairs: up to `max_docs` documents of `sentences` lines per
    label file (`<label>.txt` one text a line, `<label>.tsv` `id<TAB>text`)."""
    doc_ids = None
    index = os.path.join(folder, "documents.tsv")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            doc_ids = [line.rstrip("\n").split("\t")[0] for line in f]
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    for name in sorted(os.listdir(folder)):
        raw = _file_label(name)
        if not raw:
            continue
        with open(os.path.join(folder, name), encoding="utf-8-sig") as f:
            lines = [l.rstrip("\n") for l in f]
        if name.endswith(".tsv"):
            lines = [l.rsplit("\t", 1)[-1] for l in lines]
        groups: list[list[str]] = []
        for i, line in enumerate(lines):
            key = doc_ids[i] if doc_ids and len(doc_ids) == len(lines) else i // sentences
            if not groups or groups[-1][0] != key or len(groups[-1]) > sentences:
                groups.append([key])
            if line.strip():
                groups[-1].append(line.strip())
        docs = [g[1:] for g in groups if len(g) > 3][:max_docs]
        texts = [("\n" if n % 2 == 0 else " ").join(d) for n, d in enumerate(docs)]
        labels = canonical_labels([raw] * len(texts), texts)
        for lab, text in zip(labels, texts):
            if (lab, text) not in seen and not language_codes.is_unidentified(lab):
                seen.add((lab, text))
                out.append((lab, text))
    return out


def member_answers(texts: list[str], models: list[LidModel], max_chars: int) -> tuple[list, list[str]]:
    """Every member's top-k answers for each text, and the texts' scripts."""
    scripts = detect_scripts(texts)
    lines = _lines(texts, max_chars)
    return [lid_backends.backend(m).top_k(lines, scripts, CANDIDATES) for m in models], scripts


def candidate_rows(docs: list[tuple[str, str]], models: list[LidModel], max_chars: int):
    """(Candidates, gold label) per document."""
    answers, scripts = member_answers([t for _, t in docs], models, max_chars)
    knows = [lid_backends.backend(m).knows for m in models]
    return [(lid_combine.candidates([a[i] for a in answers], knows, scripts[i]), gold)
            for i, (gold, _) in enumerate(docs)]


def outcome(c, p, gold: str, script: str, bar: float) -> str:
    """'right', 'wrong' or 'und' for one document's decision."""
    label, _, _ = lid_combine.decide(c, p, bar, script)
    if language_codes.is_unidentified(label):
        return "und"
    return "right" if label == lid_combine.final_label(gold, script) else "wrong"


def evaluate(rows, combiner, bar: float | None = None) -> dict[str, Counter]:
    """{gold label: Counter(right / wrong / und)} of a combiner's decisions."""
    bar = combiner.abstain_below if bar is None else bar
    out: dict[str, Counter] = defaultdict(Counter)
    for c, gold in rows:
        script = gold.partition("_")[2]
        out[gold][outcome(c, combiner.probabilities(c), gold, script, bar)] += 1
    return out


def summary(per_lang: dict[str, Counter], right_bar: float = 0.9) -> dict:
    rates = {l: c["right"] / max(sum(c.values()), 1) for l, c in per_lang.items()}
    und = sum(c["und"] for c in per_lang.values())
    n = sum(sum(c.values()) for c in per_lang.values())
    return {"languages": len(rates), "right_ge_90": sum(r >= right_bar for r in rates.values()),
            "macro_right": round(float(np.mean(list(rates.values()))) if rates else 0.0, 4),
            "und_share": round(und / max(n, 1), 4), "documents": n}


def fit_across_genres(rows: dict[str, list], names: list[str], max_und: float = 0.05, meta: dict | None = None):
    """A combiner fitted on every genre's documents, its abstention bar chosen across genres:
    for each genre h, a combiner fitted without h reads h, and the bar is the highest at which
    at most `max_und` of the documents whose language some member named (the truth is a
    candidate) are left unidentified, on average over the genres (the target: und <= 5% of
    the documents of languages some model knows). Abstention then falls on documents of
    languages no member knows. A bar chosen on the genres the fit saw would abstain on text of
    a new genre, where the members are less sure of languages they do know."""
    all_rows = [r for rs in rows.values() for r in rs]
    bar = 0.5
    if len(rows) > 1:
        und: Counter = Counter()
        for h in rows:
            held = lid_combine.fit([r for k, rs in rows.items() if k != h for r in rs], names, abstain_below=0.5)
            best = np.array([held.probabilities(c).max() for c, gold in rows[h] if gold in c.labels])
            for b in lid_combine.BARS:
                und[b] += float((best < b).mean()) / len(rows) if len(best) else 0.0
        bar = max([b for b in lid_combine.BARS if und[b] <= max_und] or [0.0])
    return lid_combine.fit(all_rows, names, abstain_below=bar, meta=meta)
