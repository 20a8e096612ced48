"""Quality control of machine-translated text, before the corpus's own filters and dedup see it.

Checks in order, the first failure is the reject reason: `translation_error` (the model failed
on a sentence), `empty_output`, `copy_of_source` (the output is the input: untranslated),
`length_ratio` (output vs input length in estimated tokens, beyond `max_length_ratio` either
way), `repetition_loop` (a hallucination loop: one 1- to 4-gram of words, or of characters in
unspaced scripts, repeated `max_repeats` times in a row; or, inside one word of a spaced
script, a 1- to 3-gram of letters repeated as often: `ققققق`, `انانانان`, the loops a subword
model makes within a word), `wrong_language` (language ID of the
output is not the target language), `roundtrip_chrf` (optional: chrF of the output translated
back against the source, below `min_roundtrip_chrf`)."""

from __future__ import annotations

from ..corpus.profiles import profile, segment
from .sentences import UNSPACED


def tokens(text: str, lang: str, script: str) -> list[str]:
    if script in UNSPACED:
        return [c for c in text if not c.isspace()]
    return segment(text, profile(lang, script).segmentation) or text.split()


def longest_loop(items: list[str], max_n: int = 4) -> tuple[int, str]:
    """The most times one n-gram (n <= max_n) repeats back to back, and that n-gram."""
    best, what = 1, ""
    for n in range(1, max_n + 1):
        for start in range(n):
            run = 1
            for i in range(start + n, len(items) - n + 1, n):
                if items[i : i + n] == items[i - n : i]:
                    run += 1
                    if run > best:
                        best, what = run, " ".join(items[i : i + n])
                else:
                    run = 1
    return best, what


def letter_loop(words: list[str], max_n: int = 3) -> tuple[int, str]:
    """The most times a 1- to `max_n`-gram of letters repeats back to back inside one word."""
    best, what = 1, ""
    for word in words:
        if len(word) < 4:
            continue
        run, gram = longest_loop(list(word), max_n)
        if run > best and gram.replace(" ", "").isalpha():
            best, what = run, gram.replace(" ", "")
    return best, what


def length(text: str, lang: str, script: str) -> int:
    return max(len(tokens(text, lang, script)), 1)


def check(source: str, output: str | None, src: tuple[str, str], tgt: tuple[str, str], *, max_length_ratio: float,
          max_repeats: int, error: str | None = None) -> tuple[str, str] | None:
    """(reason, detail) of the first failed check of one translated document; None: it passed.
    `src` / `tgt` are (label, script) of each side. Language ID and round trip are checked by
    the caller, in batches."""
    if error:
        return "translation_error", error
    if not output or not output.strip():
        return "empty_output", ""
    if output.strip().casefold() == source.strip().casefold():
        return "copy_of_source", ""
    a, b = length(source, *src), length(output, *tgt)
    ratio = max(a, b) / min(a, b)
    if ratio > max_length_ratio and max(a, b) >= 4:
        return "length_ratio", f"{b} vs {a} tokens: {ratio:.2f} > {max_length_ratio}"
    words = tokens(output, *tgt)[:2000]
    run, what = longest_loop(words)
    if run < max_repeats and tgt[1] not in UNSPACED:
        run, what = letter_loop(words)
    if run >= max_repeats:
        return "repetition_loop", f"{what!r} x{run}"
    return None


def roundtrip_chrf(sources: list[str], back: list[str | None]) -> list[float]:
    """sacrebleu chrF (0-100) of each back-translation against its source (0 where it failed)."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    return [chrf.sentence_score(b, [s]).score if b else 0.0 for s, b in zip(sources, back)]
