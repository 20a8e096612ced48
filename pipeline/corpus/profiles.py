"""Per-language cleaning profiles, as data, and word segmentation.

A profile is built from layered YAML files in `pipeline/corpus/lang_profiles/`:

    (built-in defaults)       the pydantic models below: every language
    _scripts.yaml             by script family (ISO 15924 of the document): Hani, Thai, Arab...
    _derived.yaml             per language-script label, thresholds measured on real clean text
                              (`babelforge profiles derive`, pipeline/corpus/profile_stats.py),
                              and _reference.yaml, how much clean text they were measured on
                              (`reference_docs`: checks that need more abstain)
    <lang>.yaml               one small file per configured language, named by its ISO 639-3
                              code (e.g. fra.yaml for fra_Latn; see pipeline/language_codes.py)
    CleanConfig.languages     run-time overrides from the pipeline config

Each layer overrides only the keys it names. A language nobody configured still gets sane
thresholds from its script family. To add a language, drop `<code>.yaml` in that folder
(see README "Adding a language").
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

PROFILE_DIR = Path(__file__).with_name("lang_profiles")
DERIVED = "_derived.yaml"  # thresholds measured on clean text per label (pipeline/corpus/profile_stats.py)
REFERENCE = "_reference.yaml"  # how much clean text each label's thresholds were measured on (same command)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QualityThresholds(_Strict):
    """Gopher-style quality heuristics, with multilingual defaults."""

    min_words: int = 5
    max_words: int = 100_000
    min_avg_word_length: float = 2.0
    max_avg_word_length: float = 15.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.6
    min_stopwords: int = 0
    stopword_check_min_words: int = Field(
        default=25, description="Shorter documents are too short to judge by stopwords.")
    stopword_min_lang_score: float = Field(
        default=0.65, description="Below this language-ID confidence the document may be in another "
        "language, and this language's stopword list says nothing about it.")
    min_letter_pair_pmi: float | None = Field(
        default=-0.5, description="Gibberish check (pipeline/corpus/letter_pairs.py): mean pointwise mutual "
        "information of adjacent letters under the script's table; clean text of every language we have "
        "scores > -0.25, random letters < -0.6. None: off.")
    letter_pair_min_pairs: int = Field(
        default=100, description="Shorter documents (fewer letter pairs the table can judge) are not judged "
        "by letter pairs.")
    letter_pair_min_letter_share: float = Field(
        default=1e-4, ge=0.0, description="Letters that made less than this share of the letters a script's "
        "table was derived from (counts recorded in _letter_pairs.npz) are too thin to judge: their pairs are "
        "not scored, and a document of mostly such letters is not judged.")
    letter_pair_min_reference_pairs: int = Field(
        default=20_000, ge=0, description="A script's table derived from fewer letter pairs of reference text "
        "(recorded in _letter_pairs.npz; ~ one UDHR translation) is thin: it judges only at "
        "min_letter_pair_pmi_thin, since clean text of a language or genre it has not seen can score "
        "near -0.5 under it.")
    min_letter_pair_pmi_thin: float | None = Field(
        default=-1.0, description="The gibberish threshold under a thin table (random letters of the thin "
        "scripts score -1.2 to -2.8 under their tables). None: thin tables do not judge.")


class RepetitionThresholds(_Strict):
    """Gopher-style repetition heuristics (fractions of lines, paragraphs or characters)."""

    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2
    top_ngram_char_frac: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    min_words: int = Field(default=20, description="n-gram checks need at least this many words.")


class LineThresholds(_Strict):
    """FineWeb-style line statistics."""

    min_line_punct_ratio: float = 0.12
    max_short_line_ratio: float = 0.67
    short_line_chars: int = 30
    max_newline_per_word: float = 0.3
    min_lines: int = Field(default=3, description="Line statistics need at least this many lines.")
    min_reference_docs: int = Field(
        default=60, ge=0, description="The line-punctuation check applies only to languages whose clean "
        "reference text had at least this many documents (`reference_docs`, recorded by `profiles derive`): "
        "the threshold rests on the 5th percentile of their punctuation share, which fewer than 3 / 0.05 "
        "documents cannot estimate; below it nothing says how the language ends its lines (Ewe, Oromo: 18 "
        "UDHR documents, news without final punctuation).")


class LangIdThresholds(_Strict):
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Language-ID score below which a document identified as this language counts as "
        "unidentified (und_<Script>); none: corpus.langid.min_score.")


class LanguageProfile(_Strict):
    scripts: list[str] = Field(
        default_factory=list,
        description="ISO 15924 scripts the language is written in; a document identified as this "
        "language in another script is rejected (script_mismatch). Empty: any script.")
    segmentation: Literal["whitespace", "chars", "jieba", "thai"] = "whitespace"
    terminal_punctuation: str = Field(
        default="", description="Characters that end a line in addition to every script's sentence-final "
        "and terminal punctuation (Unicode Sentence_Terminal / Terminal_Punctuation: . ! ? । ። ։ ؟ 。 ...), "
        "ellipses and closing quotes and brackets, e.g. Korean '다요'.")
    stopwords: list[str] = Field(default_factory=list)
    filters: list[Literal["quality", "repetition", "lines"]] = Field(
        default_factory=lambda: ["quality", "repetition", "lines"])
    langid: LangIdThresholds = Field(default_factory=LangIdThresholds)
    quality: QualityThresholds = Field(default_factory=QualityThresholds)
    repetition: RepetitionThresholds = Field(default_factory=RepetitionThresholds)
    lines: LineThresholds = Field(default_factory=LineThresholds)
    reference_docs: int = Field(
        default=0, ge=0, description="Documents (of 5 lines) of clean reference text this language's "
        "thresholds were measured on, from _reference.yaml (`babelforge profiles derive`); 0: none.")


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@lru_cache(maxsize=None)
def _yaml(name: str) -> dict:
    path = PROFILE_DIR / name
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a mapping")
    return data


def _language_file(lang: str) -> dict:
    """The profile file of a label's language ('fra_Latn' and 'fra' read fra.yaml)."""
    code = (lang or "").partition("_")[0]
    return _yaml(f"{code}.yaml") if re.fullmatch(r"[a-z]{3}", code) else {}


def declared_scripts(lang: str) -> list[str]:
    """The scripts a language's profile file lists (empty: not declared)."""
    return list(_language_file(lang).get("scripts") or [])


@lru_cache(maxsize=65536)
def profile_min_score(lang: str) -> float | None:
    """The language-ID threshold of a label's profile (its script's, then its language's)."""
    return profile(lang, lang.partition("_")[2] or "Zyyy").langid.min_score


def profile(lang: str, script: str, overrides: dict | None = None) -> LanguageProfile:
    """The merged profile of a language (canonical label, e.g. 'fra_Latn') written in a
    script (the detected ISO 15924 script of the document)."""
    # (no overrides: no YAML dump either; this is called per document and per translation)
    return _profile(lang, script, yaml.safe_dump(overrides, sort_keys=True) if overrides else "{}")


def base_profile(lang: str, script: str) -> LanguageProfile:
    """The profile without the derived layer (what `profile_stats.derive` compares against)."""
    return _profile(lang, script, "{}", derived=False)


@lru_cache(maxsize=4096)
def _profile(lang: str, script: str, overrides_yaml: str, derived: bool = True) -> LanguageProfile:
    merged = dict(_yaml("_scripts.yaml").get(script, {}))
    if derived:
        merged = _deep_merge(merged, _yaml(DERIVED).get(lang, {}))
        docs = (_yaml(REFERENCE).get(lang) or {}).get("docs")
        if docs is not None:
            merged["reference_docs"] = docs
    merged = _deep_merge(merged, _language_file(lang))
    merged = _deep_merge(merged, yaml.safe_load(overrides_yaml) or {})
    try:
        return LanguageProfile.model_validate(merged)
    except Exception as e:  # name the layer files so the user knows where to look
        raise ValueError(f"language profile {lang}/{script} (from {PROFILE_DIR}): {e}") from e


@lru_cache(maxsize=1)
def line_end_characters() -> frozenset[str]:
    """Characters that end a sentence-like line in any script: Unicode's Sentence_Terminal and
    Terminal_Punctuation (danda, Armenian full stop, Ethiopic, Myanmar, Tibetan shad, Khmer,
    CJK and Arabic marks...), ellipses, closing brackets and quotes (categories Pe, Pf)."""
    import regex

    pattern = regex.compile(r"[\p{Sentence_Terminal}\p{Terminal_Punctuation}\p{Pe}\p{Pf}…\"'»]")
    return frozenset(chr(c) for c in range(0x30000) if pattern.match(chr(c)))


def last_character(line: str) -> str:
    """The last visible character of a line: trailing whitespace and invisible format characters
    (the left-to-right / right-to-left marks that Pashto or Sindhi text puts after its full stop,
    zero-width spaces) do not count. '' for an empty line. (A loop from the end, not a regex
    `[...]+$`, which would restart at every character of a long inner run: quadratic.)"""
    import unicodedata

    i = len(line)
    while i and (line[i - 1].isspace() or unicodedata.category(line[i - 1]) == "Cf"):
        i -= 1
    return line[i - 1 : i]


def _punctuation_class() -> str:
    """A regex character class of every punctuation and symbol character in the BMP."""
    import unicodedata

    chars = [chr(c) for c in range(0x10000) if unicodedata.category(chr(c))[0] in "PS"]
    return "[" + "".join(re.escape(c) for c in chars) + "]"


# Edge punctuation of a whitespace token; not \W, which would also strip the combining vowel
# signs of Devanagari, Bengali, Thai... (categories Mn/Mc are not "word" characters to `re`).
_EDGE = re.compile(f"{_punctuation_class()}+")


def _strip_edges(token: str) -> str:
    """`token` without its leading and trailing punctuation, in time linear in its length: two
    anchored matches (the second on the reversed token) instead of a search for `P+$`, which
    restarts at every character of a long punctuation run and is quadratic in it."""
    lead = _EDGE.match(token)
    i = lead.end() if lead else 0
    trail = _EDGE.match(token[::-1], 0, len(token) - i)
    return token[i:len(token) - (trail.end() if trail else 0)]


@lru_cache(maxsize=1)
def _thai():
    from pythainlp.tokenize import word_tokenize

    return word_tokenize


def segment(text: str, mode: str) -> list[str]:
    """Words of a text: whitespace tokens, or a real segmenter for scripts without spaces
    (rjieba for Chinese, pythainlp newmm for Thai), or single letters for other unsegmented
    scripts. Punctuation-only tokens are dropped."""
    if mode == "whitespace":  # also the Ethiopic word space (U+1361), which stands for a space
        tokens = [t if t[0].isalnum() and t[-1].isalnum() else _strip_edges(t)  # most need no regex
                  for t in text.replace("\u1361", " ").split()]
    elif mode == "jieba":
        import rjieba

        tokens = rjieba.cut(text)
    elif mode == "thai":
        tokens = _thai()(text, engine="newmm", keep_whitespace=False)
    else:  # chars
        tokens = [ch for ch in text if not ch.isspace()]
    return [t for t in tokens if any(ch.isalnum() for ch in t)]
