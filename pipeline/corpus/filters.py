"""Document quality filters with per-language thresholds (see `languages.py`).

Three families, after datatrove / Gopher / FineWeb, each returning the first reason it finds:
- quality: word count, mean word length, symbol-to-word ratio, bullet and ellipsis lines,
  share of words with a letter, stopword presence (in the document's own language), gibberish
  (adjacent letters as independent as random ones: `letter_pairs.py`, no language needed);
- repetition: duplicate lines and paragraphs (by count and by characters), the most frequent
  2/3/4-gram's character share, the character share of duplicated 5..10-grams;
- lines: share of lines ending in punctuation, share of short lines, newlines per word.

Words come from the language's segmentation, so the same thresholds mean the same thing in
Chinese, Thai or French. Also a PII formatter that redacts emails, IP addresses and phone
numbers in place.
"""

from __future__ import annotations

import re
from collections import Counter

from . import letter_pairs
from .profiles import LanguageProfile, last_character, line_end_characters, profile, segment

_BULLETS = ("•", "‣", "◦", "⁃", "●", "▪", "-", "*", "·")
_ELLIPSIS = ("...", "…")
_PARAS = re.compile(r"\n{2,}")


def _dup_share(items: list[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of their characters)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup, dup_chars = 0, 0
    for it in items:
        if it in seen:
            dup += 1
            dup_chars += len(it)
        else:
            seen.add(it)
    return dup / len(items), dup_chars / max(sum(len(i) for i in items), 1)


def _top_ngram_share(words: list[str], n: int, total_chars: int) -> float:
    counts = Counter(zip(*(words[i:] for i in range(n))))
    if not counts:
        return 0.0
    gram, count = counts.most_common(1)[0]
    return 0.0 if count <= 1 else sum(len(w) for w in gram) * count / total_chars


def _all_distinct(words: list[str], n: int) -> bool:
    """Whether no n-gram occurs twice (checked in C; a repeated longer n-gram would contain a
    repeated n-gram, so longer ones are then distinct too)."""
    grams = list(zip(*(words[i:] for i in range(n))))
    return len(set(grams)) == len(grams)


def _dup_ngram_share(words: list[str], n: int, total_chars: int) -> float:
    """Characters inside n-grams that repeat an earlier n-gram (datatrove's find_all_duplicate)."""
    seen: set[tuple[str, ...]] = set()
    repeated, i = 0, 0
    while i < len(words) - n + 1:
        gram = tuple(words[i : i + n])
        if gram in seen:
            repeated += sum(len(w) for w in gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated / total_chars


def check_quality(text: str, words: list[str], lines: list[str], p: LanguageProfile,
                  lang_score: float = 1.0, script: str = "Zyyy") -> tuple[str, str] | None:
    q = p.quality
    n = len(words)
    if n < q.min_words:
        return "too_few_words", f"{n} words < {q.min_words}"
    if n > q.max_words:
        return "too_many_words", f"{n} words > {q.max_words}"
    avg = sum(len(w) for w in words) / n
    if not q.min_avg_word_length <= avg <= q.max_avg_word_length:
        return "avg_word_length", f"{avg:.2f} outside [{q.min_avg_word_length}, {q.max_avg_word_length}]"
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / n > q.max_symbol_word_ratio:
        return "symbol_ratio", f"{symbols / n:.2f} > {q.max_symbol_word_ratio}"
    if lines:
        bullets = sum(l.lstrip().startswith(_BULLETS) for l in lines) / len(lines)
        if bullets > q.max_bullet_lines_ratio:
            return "bullet_lines", f"{bullets:.2f} > {q.max_bullet_lines_ratio}"
        ellipsis = sum(l.rstrip().endswith(_ELLIPSIS) for l in lines) / len(lines)
        if ellipsis > q.max_ellipsis_lines_ratio:
            return "ellipsis_lines", f"{ellipsis:.2f} > {q.max_ellipsis_lines_ratio}"
    alpha = sum(any(ch.isalpha() for ch in w) for w in words) / n
    if alpha < q.min_alpha_words_ratio:
        return "alpha_words", f"{alpha:.2f} < {q.min_alpha_words_ratio}"
    if q.min_stopwords and p.stopwords and n >= q.stopword_check_min_words and lang_score >= q.stopword_min_lang_score:
        if p.segmentation == "chars":  # no word boundaries: count occurrences in the text
            found = sum(text.count(s) for s in p.stopwords)
        else:
            stop = set(p.stopwords)
            found = sum(w.lower() in stop for w in words)
        if found < q.min_stopwords:
            return "stopwords", f"{found} stopwords < {q.min_stopwords}"
    if q.min_letter_pair_pmi is not None:
        pmi = letter_pairs.score(text, script, q.letter_pair_min_pairs,
                                 min_letter_share=q.letter_pair_min_letter_share)
        if pmi is not None:
            bar, thin = letter_pair_bar(script, q)
            if bar is not None and pmi < bar:
                return "gibberish", f"letter-pair PMI {pmi:.2f} < {bar}" + (" (thin table)" if thin else "")
    return None


def letter_pair_bar(script: str, q, tables: dict | None = None) -> tuple[float | None, bool]:
    """(gibberish threshold, whether the script's table is thin): a table derived from fewer than
    `q.letter_pair_min_reference_pairs` letter pairs (recorded with it) falls back to the looser
    `q.min_letter_pair_pmi_thin`."""
    t = letter_pairs.table(script, tables)
    thin = t is not None and t.reference_pairs < q.letter_pair_min_reference_pairs
    if not thin or q.min_letter_pair_pmi_thin is None:
        return (None if thin else q.min_letter_pair_pmi), thin
    return min(q.min_letter_pair_pmi_thin, q.min_letter_pair_pmi), thin  # never stricter than a thick table


def check_repetition(text: str, words: list[str], lines: list[str], p: LanguageProfile,
                     lang_score: float = 1.0, script: str = "Zyyy") -> tuple[str, str] | None:
    r = p.repetition
    para_dup, para_chars = _dup_share([x.strip() for x in _PARAS.split(text.strip()) if x.strip()])
    if para_dup > r.dup_para_frac:
        return "duplicate_paragraphs", f"{para_dup:.2f} > {r.dup_para_frac}"
    if para_chars > r.dup_para_char_frac:
        return "duplicate_paragraph_chars", f"{para_chars:.2f} > {r.dup_para_char_frac}"
    line_dup, line_chars = _dup_share(lines)
    if line_dup > r.dup_line_frac:
        return "duplicate_lines", f"{line_dup:.2f} > {r.dup_line_frac}"
    if line_chars > r.dup_line_char_frac:
        return "duplicate_line_chars", f"{line_chars:.2f} > {r.dup_line_char_frac}"
    if len(words) < r.min_words:
        return None
    total = sum(len(w) for w in words)
    for n, limit in sorted(r.top_ngram_char_frac.items()):
        if _all_distinct(words, n):  # then so are all longer n-grams: every share below is 0
            break
        share = _top_ngram_share(words, n, total)
        if share > limit:
            return f"top_{n}gram", f"{share:.2f} > {limit}"
    for n, limit in sorted(r.dup_ngram_char_frac.items()):
        if _all_distinct(words, n):
            break
        share = _dup_ngram_share(words, n, total)
        if share > limit:
            return f"duplicate_{n}grams", f"{share:.2f} > {limit}"
    return None


def check_lines(text: str, words: list[str], lines: list[str], p: LanguageProfile,
                lang_score: float = 1.0, script: str = "Zyyy") -> tuple[str, str] | None:
    li = p.lines
    if len(lines) < li.min_lines:
        return None
    if li.min_line_punct_ratio > 0 and p.reference_docs >= li.min_reference_docs:
        ends = line_end_characters() | frozenset(p.terminal_punctuation)
        punct = sum(last_character(l) in ends for l in lines) / len(lines)
        if punct < li.min_line_punct_ratio:
            return "lines_without_punctuation", f"{punct:.2f} < {li.min_line_punct_ratio}"
    short = sum(len(l.strip()) <= li.short_line_chars for l in lines) / len(lines)
    if short > li.max_short_line_ratio:
        return "short_lines", f"{short:.2f} > {li.max_short_line_ratio}"
    per_word = text.count("\n") / max(len(words), 1)
    if per_word > li.max_newline_per_word:
        return "too_many_newlines", f"{per_word:.2f} > {li.max_newline_per_word}"
    return None


CHECKS = {"quality": check_quality, "repetition": check_repetition, "lines": check_lines}


def check(text: str, lang: str, script: str, overrides: dict | None = None,
          lang_score: float = 1.0) -> tuple[str, str, str] | None:
    """(filter, reason, detail) of the first failing check for this document, or None."""
    p = profile(lang, script, overrides)
    words = segment(text, p.segmentation)
    lines = [l for l in text.split("\n") if l.strip()]
    for name in p.filters:
        hit = CHECKS[name](text, words, lines, p, lang_score, script)
        if hit:
            return name, hit[0], hit[1]
    return None
