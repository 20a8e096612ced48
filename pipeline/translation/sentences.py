"""Documents -> sentences -> documents, per script.

Translation models are trained on sentences; a whole document cut at the model's length
comes back truncated. A document is split into lines, each line into sentences after
sentence-final punctuation (Unicode Sentence_Terminal: `. ! ?`, `。！？`, danda `।`, Arabic
`؟ ۔`, Ethiopic `።`, Myanmar `။`, Khmer `។`, Tibetan `།`...). In spaced scripts a sentence
ends at such a mark followed by white space (so `3.5` and `e.g.x` stay whole); in scripts
written without spaces (Han, Japanese, Thai, Lao, Khmer, Myanmar, Tibetan) it ends right
after the mark, and in Thai, which marks sentence ends with a space rather than punctuation,
also at spaces. A sentence longer than the model's input budget is cut at clause punctuation,
else at a space, else between characters, near its middle, until every piece fits: it is
split, never truncated. `join` puts translated pieces back in order, with the target script's
separator (none for unspaced scripts) and the original line breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import regex

UNSPACED = {"Hani", "Hans", "Hant", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}
# at most 16 closing marks between a sentence's end and the split: an unbounded run made the
# lookbehind of _UNSPACED_END (tried at every character) rescan it each time, quadratic in it
_CLOSERS = r"[\p{Pe}\p{Pf}\"'»”’]{0,16}"
_SPACED_END = regex.compile(rf"(?<=\p{{Sentence_Terminal}}{_CLOSERS})\s+")
_UNSPACED_END = regex.compile(rf"(?<=\p{{Sentence_Terminal}}{_CLOSERS})\s*")
_CLAUSE = regex.compile(r"[,;:،؛、，；：–—]\s*")


@dataclass(frozen=True)
class Piece:
    """A piece of a document to translate: its text, and what followed it in the document:
    'sentence' (the next sentence), 'line' (a line break), 'cut' (a long sentence continues)
    or 'end'."""
    text: str
    after: str


def sentences(line: str, script: str) -> list[str]:
    """The sentences of one line of text in `script`."""
    line = line.strip()
    if not line:
        return []
    pattern = _UNSPACED_END if script in UNSPACED else _SPACED_END
    out = [s.strip() for s in pattern.split(line)]
    if script == "Thai":
        out = [p for s in out for p in s.split()]
    return [s for s in out if s]


def cut(sentence: str, fits: Callable[[str], bool], script: str) -> list[str]:
    """`sentence` in pieces that each fit (`fits(piece)`), cut near the middle at clause
    punctuation, else white space, else between characters."""
    if fits(sentence) or len(sentence) < 2:
        return [sentence]
    mid = len(sentence) // 2
    points = [m.end() for m in _CLAUSE.finditer(sentence) if 0 < m.end() < len(sentence)]
    if not points and script not in UNSPACED:
        points = [m.end() for m in regex.finditer(r"\s+", sentence) if 0 < m.end() < len(sentence)]
    at = min(points, key=lambda p: abs(p - mid)) if points else mid
    left, right = sentence[:at].strip(), sentence[at:].strip()
    if not left or not right:
        left, right = sentence[:mid], sentence[mid:]
    return cut(left, fits, script) + cut(right, fits, script)


def split(text: str, script: str, fits: Callable[[str], bool] = lambda s: True) -> list[Piece]:
    """A document as pieces to translate, in order."""
    pieces: list[Piece] = []
    for line in text.splitlines():
        for sentence in sentences(line, script):
            parts = cut(sentence, fits, script)
            pieces.extend(Piece(p, "cut") for p in parts[:-1])
            pieces.append(Piece(parts[-1], "sentence"))
        if pieces and pieces[-1].after == "sentence":
            pieces[-1] = Piece(pieces[-1].text, "line")
    if pieces:
        pieces[-1] = Piece(pieces[-1].text, "end")
    return pieces


@lru_cache(maxsize=1024)
def _separator(script: str) -> str:
    return "" if script in UNSPACED and script != "Thai" else " "


def join(translations: list[str], pieces: list[Piece], script: str) -> str:
    """Translated pieces back into one document in `script`, in the original order and lines."""
    out: list[str] = []
    for text, piece in zip(translations, pieces, strict=True):
        out.append(text.strip())
        if piece.after == "line":
            out.append("\n")
        elif piece.after != "end":
            out.append(_separator(script))
    return "".join(out).strip()
