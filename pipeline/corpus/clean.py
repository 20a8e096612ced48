"""Cleaning stages: formatters that repair text, and the stage that runs the quality filters.

- `normalize`: mojibake repair (ftfy), Unicode normalisation, control characters, whitespace,
  line-level boilerplate removal, PII redaction (`redact_pii`: emails, IPs, phone numbers). It
  runs before language ID, which is more accurate on repaired text. A document left empty by
  it is rejected (`empty_after_cleaning`).
- `filter_quality`: minimum characters, then per-language Gopher quality / repetition and
  FineWeb line filters (`filters.py`); words come from each language's segmentation, so
  Chinese, Japanese, Thai... (no spaces) are not dropped as "one word".
"""

from __future__ import annotations

import re
import unicodedata

import pyarrow as pa

from ..config import CleanConfig
from ..language_codes import lookup
from ..schema import REJECT_SCHEMA, concat, rejects_from_docs, split
from . import filters

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
# line and paragraph breaks of other conventions: vertical tab, form feed, U+2028/2029 (a C1
# control such as NEL is left to ftfy, which reads it as the Windows-1252 character it usually is)
_BREAKS = str.maketrans({"\x0b": "\n", "\x0c": "\n", "\u2028": "\n", "\u2029": "\n\n"})
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")


# The signature of UTF-8 read as Latin-1 / Windows-1252 (a lead byte's character followed by
# continuation bytes' characters: "Ã©", "â€™", "Ð¿"), HTML entities, and U+FFFD. Only texts
# with one of these go through ftfy (2 in 4,000 clean held-out documents): ftfy on every
# text was the most expensive step of normalisation, and it also rewrote clean text
# (curly quotes made straight).
_MOJIBAKE = re.compile(
    "[\u00c2-\u00df][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2122]"
    "|[\u00e0-\u00ef][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2122]{2}"
    "|&#?[A-Za-z0-9]+;|\ufffd")


def _compile(patterns: list[str]) -> list[re.Pattern]:
    """The boilerplate patterns as one alternation (one scan of a line instead of one per
    pattern); one pattern each where they cannot be joined (a global inline flag)."""
    if not patterns:
        return []
    try:
        return [re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)]
    except re.error:
        return [re.compile(p, re.IGNORECASE) for p in patterns]


def normalize_text(text: str, cfg: CleanConfig, boilerplate: list[re.Pattern]) -> tuple[str, int]:
    """Return the cleaned text and the number of boilerplate lines removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_BREAKS)
    if cfg.fix_mojibake and _MOJIBAKE.search(text):
        import ftfy

        text = ftfy.fix_text(text, normalization=cfg.normalization)
    else:
        text = unicodedata.normalize(cfg.normalization, text)
    text = _CONTROL.sub("", text)
    lines, removed = [], 0
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        if not line:
            continue
        if any(p.search(line) for p in boilerplate):
            removed += 1
            continue
        lines.append(line)
    text = "\n".join(lines)
    if cfg.redact_pii:
        text, _ = redact_pii(text)
    return text, removed


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


def filter_quality(docs: pa.Table, cfg: CleanConfig) -> tuple[pa.Table, pa.Table]:
    """Minimum length (stage `clean`), then the per-language quality, repetition and line
    filters of `filters.py` (stage `quality`, reason per check)."""
    reasons: list[str | None] = []
    stages: list[str] = []
    details: list[str] = []
    for text, lang, script, score in zip(docs["text"].to_pylist(), docs["lang"].to_pylist(),
                                         docs["script"].to_pylist(), docs["lang_score"].to_pylist()):
        if len(text) < cfg.min_chars:
            reasons.append("too_short")
            stages.append("clean")
            details.append(f"{len(text)} chars < {cfg.min_chars}")
            continue
        hit = filters.check(text, lang or "", script or "Zyyy", lookup(cfg.languages, lang or ""),
                            1.0 if score is None else score)
        if hit:
            reasons.append(hit[1])
            stages.append("quality")
            details.append(f"{hit[0]}: {hit[2]}")
        else:
            reasons.append(None)
    kept, dropped = split(docs, [r is None for r in reasons])
    rejected = [r for r in reasons if r]
    parts = [rejects_from_docs(dropped.filter(pa.array([s == stage for s in stages], pa.bool_())), stage,
                               [r for r, s in zip(rejected, stages) if s == stage],
                               [d for d, s in zip(details, stages) if s == stage])
             for stage in ("clean", "quality")]
    return kept, concat(parts, REJECT_SCHEMA)


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,5}(?![\w])")


def redact_pii(text: str) -> tuple[str, int]:
    """Replace emails, IPv4 addresses and phone numbers with placeholders. A phone number has
    9-15 digits in separated groups (8 with a leading + or area code in parentheses), so
    dates (2026-11-22), times and scores are left alone."""
    n = 0

    def sub(placeholder):
        def f(m):
            nonlocal n
            if placeholder == "<PHONE>":
                digits = sum(ch.isdigit() for ch in m.group())
                if not (9 if m.group()[0] not in "+(" else 8) <= digits <= 15:
                    return m.group()
            n += 1
            return placeholder
        return f

    text = _EMAIL.sub(sub("<EMAIL>"), text)
    text = _IPV4.sub(sub("<IP>"), text)
    text = _PHONE.sub(sub("<PHONE>"), text)
    return text, n
