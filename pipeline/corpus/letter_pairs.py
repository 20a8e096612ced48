"""Gibberish check that needs no language: how much a text's adjacent letters depend on each other.

In running text of any language, which letter follows which is far from chance (`q` before
`u`, vowels between consonants, a script's combining marks after their base letters); in
random letters, keyboard mashing or random characters of a script it is not. Per script,
`build()` counts letter pairs (word boundaries included) in real clean text of every language
we have in that script and keeps the pointwise mutual information table

    PMI(a, b) = log2 P(b | a) - log2 P(b)

A document's score is the mean PMI of its letter pairs under its script's table: clean text of
the 460 UDHR / Tatoeba / lingua labels scores about +0.5 (lowest held-out document -0.34),
uniformly random Latin letters about -0.9, random Cyrillic or Devanagari letters below -1
(`bench/noise_bench.py`, `bench/RESULTS.md`). It does not depend on the document's language
label, so it also works on documents nobody could identify (`und_<Script>`), where a
per-language model (CCNet's KenLM perplexity) has nothing to go by.

The tables (`lang_profiles/_letter_pairs.npz`, float16, one per script with at most
`MAX_ALPHABET` letters; scripts of thousands of characters such as Han are not scored) are
built from the lines `langid train` does not hold out, by `babelforge profiles derive`.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from functools import lru_cache

import numpy as np

PATH = os.path.join(os.path.dirname(__file__), "lang_profiles", "_letter_pairs.npz")
MAX_ALPHABET = 600  # letters per script kept in a table (more: a logographic script, not scored)
MIN_LETTER_COUNT = 5  # rarer letters share one "other letter" row
SMOOTH = 0.01
BOUNDARY = 0  # index of the word boundary; 1 is "other letter"


def _sequence(text: str) -> list[str]:
    """The case-folded letters of a text with one boundary between words ('' = boundary)."""
    out = [""]
    for ch in text.casefold():
        if ch.isalpha() or _is_mark(ch):
            out.append(ch)
        elif out[-1]:
            out.append("")
    if out[-1]:
        out.append("")
    return out


@lru_cache(maxsize=4096)
def _is_mark(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch).startswith("M")  # vowel signs of Indic scripts, harakat


def build(texts_by_script: dict[str, list[str]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{script: (alphabet code points, PMI table float16)} from clean texts grouped by script."""
    tables = {}
    for script, texts in sorted(texts_by_script.items()):
        letters: Counter = Counter()
        seqs = [_sequence(t) for t in texts]
        for s in seqs:
            letters.update(c for c in s if c)
        alphabet = sorted(c for c, n in letters.items() if n >= MIN_LETTER_COUNT and len(c) == 1)
        if not alphabet or len(alphabet) > MAX_ALPHABET:
            continue
        index = {c: i + 2 for i, c in enumerate(alphabet)}
        size = len(alphabet) + 2
        pairs = np.zeros((size, size), np.float64)
        for s in seqs:
            idx = np.array([index.get(c, 1) if c else BOUNDARY for c in s], np.int64)
            np.add.at(pairs, (idx[:-1], idx[1:]), 1)
        first = pairs.sum(axis=1, keepdims=True)
        second = pairs.sum(axis=0, keepdims=True)
        cond = (pairs + SMOOTH) / (first + SMOOTH * size)
        marg = (second + SMOOTH) / (pairs.sum() + SMOOTH * size)
        tables[script] = (np.array([ord(c) for c in alphabet], np.int32),
                          (np.log2(cond) - np.log2(marg)).astype(np.float16))
    return tables


def save(tables: dict[str, tuple[np.ndarray, np.ndarray]], path: str = PATH) -> None:
    arrays = {}
    for script, (alphabet, pmi) in tables.items():
        arrays[f"{script}_alphabet"] = alphabet
        arrays[f"{script}_pmi"] = pmi
    np.savez_compressed(path, **arrays)


@lru_cache(maxsize=4)
def load(path: str = PATH) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not os.path.exists(path):
        return {}
    with np.load(path) as z:
        scripts = {k.rsplit("_", 1)[0] for k in z.files}
        return {s: (z[f"{s}_alphabet"], z[f"{s}_pmi"].astype(np.float32)) for s in scripts}


def score(text: str, script: str, min_pairs: int = 100, tables: dict | None = None) -> float | None:
    """Mean letter-pair PMI of a text under its script's table; None when the script has no
    table or the text has fewer than `min_pairs` letter pairs (too short to judge)."""
    table = (tables if tables is not None else load()).get(script)
    if table is None:
        return None
    alphabet, pmi = table
    folded = text.casefold()
    cps = np.frombuffer(folded.encode("utf-32-le"), np.uint32).astype(np.int64)
    if len(cps) <= min_pairs:
        return None
    letter = _letter_mask(cps)
    # word boundaries: every run of non-letters becomes one boundary
    keep = letter | np.r_[False, letter[:-1]]
    cps, letter = cps[keep], letter[keep]
    if not len(cps):
        return None
    pos = np.searchsorted(alphabet, cps)
    pos = np.minimum(pos, len(alphabet) - 1)
    idx = np.where(alphabet[pos] == cps, pos + 2, 1)
    idx = np.where(letter, idx, BOUNDARY)
    idx = np.r_[BOUNDARY, idx, BOUNDARY] if letter[-1] else np.r_[BOUNDARY, idx]
    if len(idx) - 1 < min_pairs:
        return None
    return float(pmi[idx[:-1], idx[1:]].mean())


def _letter_mask(cps: np.ndarray) -> np.ndarray:
    """Letters and combining marks (as `_sequence` counts them), by a lookup table built once."""
    table = _letter_table()
    return table[np.minimum(cps, len(table) - 1)]


@lru_cache(maxsize=1)
def _letter_table() -> np.ndarray:
    import unicodedata

    size = 0x30000
    table = np.zeros(size, bool)
    for cp in range(size):
        ch = chr(cp)
        table[cp] = ch.isalpha() or unicodedata.category(ch).startswith("M")
    return table


def texts_by_script(inputs: list[str]) -> dict[str, list[str]]:
    """Clean training text (lines `langid train` does not hold out) grouped by the script the
    pipeline detects, from the same inputs as `langid train` / `profiles derive`."""
    from ..config import LidTrainConfig
    from . import langid_train
    from .langid import detect_scripts

    raw, texts = langid_train.read_labelled(inputs)
    labs = langid_train.canonical_labels(raw, texts)
    cfg = LidTrainConfig()
    kept = [t for lab, t in zip(labs, texts)
            if langid_train._bucket(lab, langid_train._line(t)) >= cfg.heldout_fraction]
    out: dict[str, list[str]] = defaultdict(list)
    for t, s in zip(kept, detect_scripts(kept)):
        if s != "Zyyy":  # letters of scripts detect_scripts does not name: no one table fits them
            out[s].append(t)
    return dict(out)
