"""Per-language filter thresholds derived from real clean text (as FineWeb-2 derived its own).

    derive(inputs) -> {label: profile overrides}  ->  lang_profiles/_derived.yaml

For every language-script label with enough clean text (folders of `<label>.txt`, as for
`langid_train`), documents of `doc_lines` lines are measured the way the filters measure
them, and each threshold is set so that clean text of that language passes it with margin:

- `quality.max_avg_word_length` / `min_avg_word_length`: past the 0.5th / 99.5th percentile
  of the mean word length (agglutinative and polysynthetic languages have long words);
- `quality.min_alpha_words_ratio`: below the 0.5th percentile of the share of words with a
  letter;
- `lines.min_line_punct_ratio`: half the 5th percentile of the share of lines ending in
  sentence-final punctuation (0 for languages whose clean text rarely does);
- `langid.min_score`: 0.9 x the 5th percentile of the language-ID score of held-out documents
  identified correctly, within [0.1, corpus.langid.min_score] (the models are less sure of
  some languages than others; one cut drops the weak ones first).

Only values that differ from what the language would get anyway (built-in and script-family
defaults) are written. Hand-written `<code>.yaml` profiles and run config override them.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import numpy as np

from ..config import LangIdConfig, LidTrainConfig
from .profiles import base_profile, last_character, line_end_characters, profile, segment

log = logging.getLogger(__name__)


def measure(text: str, label: str, script: str) -> dict[str, float]:
    """The filter measures of one document, as `filters.py` computes them."""
    p = profile(label, script)
    words = segment(text, p.segmentation)
    lines = [l for l in text.split("\n") if l.strip()]
    ends = line_end_characters() | frozenset(p.terminal_punctuation)
    n = max(len(words), 1)
    return {
        "avg_word_length": sum(len(w) for w in words) / n,
        "alpha_words": sum(any(ch.isalpha() for ch in w) for w in words) / n,
        "line_punct": sum(last_character(l) in ends for l in lines) / max(len(lines), 1),
    }


def _round_down(x: float, step: float) -> float:
    return math.floor(x / step) * step


def _round_up(x: float, step: float) -> float:
    return math.ceil(x / step) * step


def derive(inputs: list[str], doc_lines: int = 5, min_docs: int = 10,
           langid_cfg: LangIdConfig | None = None) -> dict[str, dict]:
    """{label: overrides} for every label of the inputs with at least `min_docs` documents."""
    from . import langid, langid_train

    raw, texts = langid_train.read_labelled(inputs)
    labs = langid_train.canonical_labels(raw, texts)
    by_label: dict[str, list[str]] = defaultdict(list)
    for lab, text in zip(labs, texts):
        by_label[lab].append(text.strip())
    lid_cfg = langid_cfg or LangIdConfig()
    split_cfg = LidTrainConfig()
    out: dict[str, dict] = {}
    for lab, lines in sorted(by_label.items()):
        docs = ["\n".join(lines[i : i + doc_lines]) for i in range(0, len(lines) - doc_lines + 1, doc_lines)]
        if len(docs) < min_docs:
            continue
        from collections import Counter

        from .langid import detect_scripts

        script = Counter(detect_scripts(docs)).most_common(1)[0][0]  # as the pipeline sees it: Hani, not Hans
        base = base_profile(lab, script)
        m = {k: np.array(v) for k, v in _columns([measure(d, lab, script) for d in docs]).items()}
        q = base.quality
        over: dict[str, dict] = {}
        hi = _round_up(float(np.percentile(m["avg_word_length"], 99.5)) * 1.25, 0.5)
        lo = _round_down(float(np.percentile(m["avg_word_length"], 0.5)) * 0.8, 0.1)
        alpha = _round_down(float(np.percentile(m["alpha_words"], 0.5)) * 0.95, 0.05)
        quality = {}
        if hi > q.max_avg_word_length:
            quality["max_avg_word_length"] = hi
        if lo < q.min_avg_word_length:
            quality["min_avg_word_length"] = round(lo, 1)
        if alpha < q.min_alpha_words_ratio:
            quality["min_alpha_words_ratio"] = round(alpha, 2)
        if quality:
            over["quality"] = quality
        punct = _round_down(float(np.percentile(m["line_punct"], 5)) * 0.5, 0.01)
        if punct < base.lines.min_line_punct_ratio:
            over["lines"] = {"min_line_punct_ratio": round(punct, 2)}
        # language-ID threshold from documents of held-out lines (never trained on)
        held = [l for l in lines if langid_train._bucket(lab, langid_train._line(l)) < split_cfg.heldout_fraction]
        held_docs = [" ".join(held[i : i + 3]) for i in range(0, len(held) - 2, 3)]
        if len(held_docs) >= 5:
            pred, scores = langid.predict(held_docs, lid_cfg, lid_cfg.max_chars)
            right = [s for p, s in zip(pred, scores) if p == lab]
            if len(right) >= 5:
                cut = _round_down(float(np.percentile(right, 5)) * 0.9, 0.05)
                cut = min(max(cut, 0.1), lid_cfg.min_score)
                if cut < lid_cfg.min_score:
                    over["langid"] = {"min_score": round(cut, 2)}
        if over:
            out[lab] = over
    log.info("profiles: derived thresholds for %d of %d labels", len(out), len(by_label))
    return out


def reference_amounts(inputs: list[str], doc_lines: int = 5) -> dict[str, dict[str, int]]:
    """{label: {"docs", "lines", "characters"}}: how much clean text `derive` measures each label's
    thresholds on (documents of `doc_lines` lines, as there), written to _reference.yaml so that
    a check can abstain for a language whose reference text is too thin to set it
    (`lines.min_reference_docs`)."""
    from . import langid_train

    raw, texts = langid_train.read_labelled(inputs)
    labs = langid_train.canonical_labels(raw, texts)
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"docs": 0, "lines": 0, "characters": 0})
    for lab, text in zip(labs, texts):
        out[lab]["lines"] += 1
        out[lab]["characters"] += len(text.strip())
    for v in out.values():
        v["docs"] = v["lines"] // doc_lines
    return dict(sorted(out.items()))


def _columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
