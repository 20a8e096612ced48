"""Cleaning: formatters that repair text, filters that drop documents, exact dedup.

- `normalize`: mojibake repair (ftfy), Unicode normalisation, control characters, whitespace,
  line-level boilerplate removal. It runs before language ID, which is more accurate on
  repaired text. A document left empty by it is rejected (`empty_after_cleaning`).
- `filter_quality`: minimum characters and words; words are counted per script, so Chinese,
  Japanese, Thai... (no spaces) are not dropped as "one word".
- `dedup_exact`: one document per normalised-text hash (case, punctuation and whitespace
  folded); the first in input order is kept, the others name it in `detail`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pyarrow as pa

from .config import CleanConfig
from .schema import rejects_from_docs, split

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
# Scripts written without spaces between words: count characters, not whitespace tokens.
UNSEGMENTED_SCRIPTS = {"Hani", "Jpan", "Kana", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}
CHARS_PER_WORD_UNSEGMENTED = 2.0


def _compile(patterns: list[str]) -> list[re.Pattern]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


def normalize_text(text: str, cfg: CleanConfig, boilerplate: list[re.Pattern]) -> tuple[str, int]:
    """Return the cleaned text and the number of boilerplate lines removed."""
    if cfg.fix_mojibake:
        import ftfy

        text = ftfy.fix_text(text, normalization=cfg.normalization)
    else:
        text = unicodedata.normalize(cfg.normalization, text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines, removed = [], 0
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        if not line:
            continue
        if any(p.search(line) for p in boilerplate):
            removed += 1
            continue
        lines.append(line)
    return "\n".join(lines), removed


def normalize(docs: pa.Table, cfg: CleanConfig) -> tuple[pa.Table, pa.Table]:
    boilerplate = _compile(cfg.boilerplate_patterns)
    texts, keep, details = [], [], []
    for text in docs["text"].to_pylist():
        cleaned, removed = normalize_text(text or "", cfg, boilerplate)
        texts.append(cleaned)
        keep.append(bool(cleaned))
        if not cleaned:
            details.append(f"{removed} boilerplate line(s) removed, nothing left")
    docs = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    kept, dropped = split(docs, keep)
    return kept, rejects_from_docs(dropped, "clean", ["empty_after_cleaning"] * dropped.num_rows, details)


def count_words(text: str, script: str | None) -> int:
    if script in UNSEGMENTED_SCRIPTS:
        letters = sum(1 for ch in text if ch.isalnum())
        return int(letters / CHARS_PER_WORD_UNSEGMENTED)
    return len(text.split())


def filter_quality(docs: pa.Table, cfg: CleanConfig) -> tuple[pa.Table, pa.Table]:
    reasons: list[str | None] = []
    details: list[str] = []
    for text, script in zip(docs["text"].to_pylist(), docs["script"].to_pylist()):
        n_chars = len(text)
        if n_chars < cfg.min_chars:
            reasons.append("too_short")
            details.append(f"{n_chars} chars < {cfg.min_chars}")
            continue
        n_words = count_words(text, script)
        if n_words < cfg.min_words:
            reasons.append("too_few_words")
            details.append(f"{n_words} words < {cfg.min_words}")
            continue
        reasons.append(None)
    kept, dropped = split(docs, [r is None for r in reasons])
    return kept, rejects_from_docs(dropped, "clean", [r for r in reasons if r], details)


_DEDUP_FOLD = re.compile(r"[\W_]+", re.UNICODE)


def dedup_key(text: str) -> str:
    folded = _DEDUP_FOLD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=16).hexdigest()


def dedup_exact(docs: pa.Table, seen: dict[str, str] | None = None) -> tuple[pa.Table, pa.Table]:
    """Keep the first document of each normalised text; `seen` (key -> kept id) may carry
    keys across calls so dedup spans the whole corpus."""
    seen = {} if seen is None else seen
    keep, details = [], []
    for doc_id, text in zip(docs["id"].to_pylist(), docs["text"].to_pylist()):
        key = dedup_key(text)
        first = seen.get(key)
        if first is None:
            seen[key] = doc_id
            keep.append(True)
        else:
            keep.append(False)
            details.append(f"duplicate of {first}")
    kept, dropped = split(docs, keep)
    return kept, rejects_from_docs(dropped, "dedup", ["exact_duplicate"] * dropped.num_rows, details)
