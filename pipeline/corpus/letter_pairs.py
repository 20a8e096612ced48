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

How much text a table stands on is recorded next to it and decides, at filter time, how far it
is trusted (issue 26: thin tables rejected clean Tigrinya, Tifinagh, Cherokee, Syriac and
Tongan as gibberish):

- per letter (`counts`): how often the reference text had it. A letter below
  `min_letter_share` of the script's reference letters (or not in the table at all, or of
  another script: Latin homoglyphs in Cyrillic text) is too thin to judge: pairs with it are
  not scored, and a document with too few scored pairs (`min_pairs`, or under half of its
  pairs) is not judged (None);
- per row (Witten-Bell smoothing): `P(b | a)` is interpolated with `P(b)` in proportion to
  how many different letters followed `a` against how often `a` was seen, so a pair never
  seen after a rarely seen letter costs little (log2 T/(c+T)) and one never seen after a
  letter seen a million times costs a lot;
- per table (`support`: characters, letters, letter pairs and distinct pairs it was built
  from): `filters.py` judges a table built from fewer than
  `quality.letter_pair_min_reference_pairs` letter pairs (about one UDHR translation: one
  text, one or two languages) only at the looser `quality.min_letter_pair_pmi_thin`, the level
  of random letters.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from functools import lru_cache
from typing import NamedTuple

import numpy as np

PATH = os.path.join(os.path.dirname(__file__), "lang_profiles", "_letter_pairs.npz")
MAX_ALPHABET = 600  # letters per script kept in a table (more: a logographic script, not scored)
MIN_LETTER_COUNT = 5  # rarer letters share one "other letter" row (never scored)
MIN_LETTER_SHARE = 1e-4  # letters rarer than this in the script's reference text are not scored
MIN_JUDGED_SHARE = 0.5  # a document with fewer of its letter pairs scorable is not judged
BOUNDARY = 0  # index of the word boundary; 1 is "other letter"
SUPPORT = ("characters", "letters", "pairs", "distinct_pairs")  # what a table was built from


class Table(NamedTuple):
    """One script's table: alphabet (sorted code points), PMI (row: first letter, column: second;
    0 = word boundary, 1 = other letter, i + 2 = alphabet[i]), how often the reference text had
    each alphabet letter, and how much reference text it was built from (`SUPPORT`)."""

    alphabet: np.ndarray
    pmi: np.ndarray
    counts: np.ndarray | None = None
    support: dict | None = None

    @property
    def reference_pairs(self) -> int:
        """Letter pairs the table was derived from (0: not recorded, i.e. unknown)."""
        return int((self.support or {}).get("pairs", 0))


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


def build(texts_by_script: dict[str, list[str]]) -> dict[str, Table]:
    """{script: Table} from clean texts grouped by script. Letters of another script (a Latin
    word in a Cyrillic line) are left out of a script's alphabet; PMI is Witten-Bell smoothed
    (see the module docstring); the letter counts and the amount of text are kept with it."""
    tables = {}
    for script, texts in sorted(texts_by_script.items()):
        letters: Counter = Counter()
        seqs = [_sequence(t) for t in texts]
        for s in seqs:
            letters.update(c for c in s if c)
        alphabet = sorted(c for c, n in letters.items() if n >= MIN_LETTER_COUNT and len(c) == 1)
        if not alphabet or len(alphabet) > MAX_ALPHABET:  # (a logographic script: not scored)
            continue
        alphabet = [c for c, own in zip(alphabet, _own_script(alphabet, script)) if own]
        index = {c: i + 2 for i, c in enumerate(alphabet)}
        size = len(alphabet) + 2
        pairs = np.zeros((size, size), np.float64)
        for s in seqs:
            idx = np.array([index.get(c, 1) if c else BOUNDARY for c in s], np.int64)
            np.add.at(pairs, (idx[:-1], idx[1:]), 1)
        total = pairs.sum()
        first = pairs.sum(axis=1, keepdims=True)
        marg = (pairs.sum(axis=0, keepdims=True) + 0.5) / (total + 0.5 * size)
        types = (pairs > 0).sum(axis=1, keepdims=True)  # distinct letters seen after each letter
        with np.errstate(invalid="ignore", divide="ignore"):
            cond = np.where(first > 0, (pairs + types * marg) / (first + types), marg)
        counts = np.array([letters[c] for c in alphabet], np.int64)
        support = {"characters": sum(len(t) for t in texts), "letters": int(sum(letters.values())),
                   "pairs": int(total), "distinct_pairs": int((pairs > 0).sum())}
        tables[script] = Table(np.array([ord(c) for c in alphabet], np.int32),
                               (np.log2(cond) - np.log2(marg)).astype(np.float16), counts, support)
    return tables


def _own_script(letters: list[str], script: str) -> list[bool]:
    """Whether each letter belongs to `script` or to no particular script (combining marks,
    modifier letters such as the okina), as `detect_scripts` sees a text of that one letter."""
    from .langid import detect_scripts

    return [s in (script, "Zyyy") for s in detect_scripts(letters)]


def save(tables: dict[str, Table], path: str = PATH) -> None:
    arrays = {}
    for script, t in tables.items():
        arrays[f"{script}_alphabet"] = t.alphabet
        arrays[f"{script}_pmi"] = t.pmi
        if t.counts is not None:
            arrays[f"{script}_counts"] = np.asarray(t.counts, np.int64)
        if t.support is not None:
            arrays[f"{script}_support"] = np.array([t.support[k] for k in SUPPORT], np.int64)
    np.savez_compressed(path, **arrays)


@lru_cache(maxsize=4)
def load(path: str = PATH) -> dict[str, Table]:
    """The tables of an .npz file; tables saved without counts or support (older files) judge
    every letter and count as thin (reference_pairs 0)."""
    if not os.path.exists(path):
        return {}
    with np.load(path) as z:
        scripts = {k.rsplit("_", 1)[0] for k in z.files}
        out = {}
        for s in scripts:
            sup = z[f"{s}_support"] if f"{s}_support" in z.files else None
            out[s] = Table(z[f"{s}_alphabet"], z[f"{s}_pmi"].astype(np.float32),
                           z[f"{s}_counts"] if f"{s}_counts" in z.files else None,
                           dict(zip(SUPPORT, map(int, sup))) if sup is not None else None)
        return out


def table(script: str, tables: dict | None = None) -> Table | None:
    """The table of a script (shipped tables unless `tables`), or None."""
    return (tables if tables is not None else load()).get(script)


def score(text: str, script: str, min_pairs: int = 100, tables: dict | None = None,
          min_letter_share: float = MIN_LETTER_SHARE) -> float | None:
    """Mean letter-pair PMI of a text under its script's table; None when the script has no
    table or the text has fewer than `min_pairs` letter pairs the table can judge (too short,
    or too many letters the table knows too little about: see the module docstring)."""
    t = table(script, tables)
    if t is None:
        return None
    alphabet, pmi = t.alphabet, t.pmi
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
    first, second = idx[:-1], idx[1:]
    known = _known(t, min_letter_share)
    judged = known[first] & known[second]
    n = int(judged.sum())
    if n < min_pairs or n < MIN_JUDGED_SHARE * len(first):
        return None
    return float(pmi[first[judged], second[judged]].mean())


def _known(t: Table, min_letter_share: float) -> np.ndarray:
    """Per table index: whether the reference text had enough of that letter to judge its pairs
    (the boundary always; "other letter" never)."""
    known = np.ones(len(t.alphabet) + 2, bool)
    known[1] = False
    if t.counts is not None:
        letters = (t.support or {}).get("letters") or int(np.sum(t.counts))
        known[2:] = t.counts >= max(MIN_LETTER_COUNT, min_letter_share * letters)
    return known


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
