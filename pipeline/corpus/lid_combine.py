"""Combining language-ID models by measurement: a stacked classifier over their top-k answers.

Each document's *candidates* are the labels any member model puts in its top k (a
macrolanguage answer such as lid.176's `ar` or heliport's `msa` stands for its member
languages: it adds its score to every candidate of that macrolanguage, and is a candidate of its
own only when no member language is one). For each candidate, `features` describes what every
member says about it (its score, whether it is that member's first answer, whether the member
has a label for that language at all, and how sure the member is of its own first answer); a
logistic regression, fitted on documents of a genre the members were not trained on
(`lid_fit.fit_across_genres`, `fit`; `bench/langid_genres.py`), turns that into the probability that the candidate
is the document's language.

The best candidate is written when that probability reaches `abstain_below`; otherwise the
document is `und_<Script>` and keeps its candidates. Where the evidence points to a group of
close varieties without separating them (`lang_profiles/_varieties.yaml`: Arabic varieties,
the Hindi belt, Serbo-Croatian...), the group's written standard is written instead of `und`
when the group together reaches the bar (see README, "Close languages and varieties").

The fitted combiner is JSON (feature names, weights, the members it was fitted for, the
measured accuracy): nothing loaded from storage runs code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import yaml

from .. import language_codes
from ..language_codes import language

COMBINERS = os.path.join(os.path.dirname(__file__), "lid_models")
VARIETIES = os.path.join(os.path.dirname(__file__), "lang_profiles", "_varieties.yaml")
PER_MEMBER = ("score", "log_score", "first", "knows", "silent", "own_top", "gap", "first_precision", "recall",
              "measured")


@dataclass
class Candidates:
    """One document's candidates and, per member, what it said about each."""

    labels: list[str]
    scores: np.ndarray          # (members, candidates): member score for the candidate
    first: np.ndarray           # (members, candidates): 1 where it is the member's first answer
    knows: np.ndarray           # (members, candidates): 1 where the member has a label for it
    own_top: np.ndarray         # (members,): each member's score for its own first answer
    script_ok: np.ndarray       # (candidates,)


def _member_votes(answer: list[tuple[str, float]]) -> tuple[dict[str, float], dict[str, float], str | None]:
    """{individual label: score}, {macrolanguage: score}, and the first answer."""
    own: dict[str, float] = {}
    macro: dict[str, float] = {}
    for lab, p in answer:
        lang = language(lab)
        if language_codes.is_macrolanguage(lang):
            macro[lang] = macro.get(lang, 0.0) + p
        else:
            own[lab] = own.get(lab, 0.0) + p
    return own, macro, (answer[0][0] if answer else None)


def candidates(answers: list[list[tuple[str, float]]], knows: list, script: str) -> Candidates:
    """The candidates of one document from its members' top-k answers (canonical labels).
    `knows[i](lang3)`: whether member i has a label for a language."""
    from .langid import script_fits

    votes = [_member_votes(a) for a in answers]
    labels: list[str] = []
    for a in answers:
        for lab, _ in a:
            if not language_codes.is_macrolanguage(language(lab)) and lab not in labels:
                labels.append(lab)
    for a in answers:  # a macrolanguage with no member language among the candidates
        for lab, _ in a:
            lang = language(lab)
            if language_codes.is_macrolanguage(lang) and lab not in labels and not any(
                    language_codes.macrolanguage(language(c)) == lang for c in labels):
                labels.append(lab)
    m, n = len(answers), len(labels)
    scores, first, known = np.zeros((m, n)), np.zeros((m, n)), np.zeros((m, n))
    own_top = np.array([a[0][1] if a else 0.0 for a in answers])
    for i, (own, macro, top) in enumerate(votes):
        for j, lab in enumerate(labels):
            lang = language(lab)
            up = language_codes.macrolanguage(lang) if not language_codes.is_macrolanguage(lang) else None
            scores[i, j] = own.get(lab, 0.0) + macro.get(up, 0.0) + macro.get(lang, 0.0)
            first[i, j] = top is not None and (top == lab or language(top) in (lang, up))
            known[i, j] = knows[i](lang)
    script_ok = np.array([1.0 if script_fits(lab, script) else 0.0 for lab in labels])
    return Candidates(labels, np.minimum(scores, 1.0), first, known, own_top, script_ok)


def feature_names(members: list[str]) -> list[str]:
    names = [f"{m}:{f}" for m in members for f in PER_MEMBER]
    names += [f"{a}:score*{b}:silent" for a in members for b in members if a != b]
    names += [f"{a}:score*{b}:unknown" for a in members for b in members if a != b]
    return names + ["script_ok", "n_first"]


def null_feature_names(members: list[str]) -> list[str]:
    """Features of the document's 'none of these' option (abstention)."""
    return [f"{m}:own_top" for m in members] + ["agree", "n_candidates", "bias"]


def reliability(rows: list[tuple[Candidates, str]], m: int) -> list[dict[str, list[int]]]:
    """Per member, per label: [right when it is the member's first answer, times it is the first
    answer, times the member's first answer is it when it is the truth, times it is the truth]."""
    out: list[dict[str, list[int]]] = [dict() for _ in range(m)]
    for c, gold in rows:
        for i in range(m):
            firsts = [lab for lab, f in zip(c.labels, c.first[i]) if f]
            for lab in firsts:
                r = out[i].setdefault(lab, [0, 0, 0, 0])
                r[0] += lab == gold
                r[1] += 1
            g = out[i].setdefault(gold, [0, 0, 0, 0])
            g[2] += gold in firsts
            g[3] += 1
    return out


def _reliability_columns(c: Candidates, rel: list[dict[str, list[int]]] | None, i: int) -> list[np.ndarray]:
    """first_precision (smoothed precision of the member's first answer, where the candidate is
    it), recall (smoothed share of the candidate's documents the member names first), measured
    (whether the label was ever the truth in the fit data)."""
    n = len(c.labels)
    if not rel:
        return [np.zeros(n), np.full(n, 0.5), np.zeros(n)]
    table = rel[i]
    rows = [table.get(lab, (0, 0, 0, 0)) for lab in c.labels]
    prec = np.array([(r[0] + 1) / (r[1] + 2) for r in rows]) * c.first[i]
    rec = np.array([(r[2] + 1) / (r[3] + 2) for r in rows])
    return [prec, rec, np.array([float(r[3] > 0) for r in rows])]


def features(c: Candidates, rel: list[dict[str, list[int]]] | None = None) -> np.ndarray:
    """(candidates, features) matrix in `feature_names` order."""
    m, n = c.scores.shape
    cols = []
    silent = c.knows * (c.scores == 0)  # knows the language and did not name it
    for i in range(m):
        cols += [c.scores[i], np.log(c.scores[i] + 1e-3), c.first[i], c.knows[i], silent[i],
                 np.full(n, c.own_top[i]), c.own_top[i] - c.scores[i], *_reliability_columns(c, rel, i)]
    for i in range(m):
        for j in range(m):
            if i != j:
                cols.append(c.scores[i] * silent[j])
    for i in range(m):
        for j in range(m):
            if i != j:
                cols.append(c.scores[i] * (1 - c.knows[j]))
    cols += [c.script_ok, c.first.sum(axis=0)]
    return np.stack(cols, axis=1) if n else np.zeros((0, len(cols)))


def null_features(c: Candidates) -> np.ndarray:
    m, n = c.scores.shape
    agree = float(c.first.sum(axis=0).max()) / m if n else 0.0
    return np.array(list(c.own_top) + [agree, np.log1p(n), 1.0])


@dataclass
class Combiner:
    """A conditional-logit choice among a document's candidates and 'none of these': each
    option's utility is its features times the weights, the probabilities their softmax."""

    members: list[str]
    weights: np.ndarray
    null_weights: np.ndarray
    abstain_below: float = 0.5
    reliability: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def probabilities(self, c: Candidates) -> np.ndarray:
        """P(candidate is the document's language) for each candidate (the rest: none)."""
        if not c.labels:
            return np.zeros(0)
        u = np.append(features(c, self.reliability) @ self.weights, null_features(c) @ self.null_weights)
        e = np.exp(u - u.max())
        return (e / e.sum())[:-1]

    def to_json(self) -> dict:
        return {"members": self.members, "features": feature_names(self.members),
                "weights": [round(float(w), 6) for w in self.weights],
                "null_features": null_feature_names(self.members),
                "null_weights": [round(float(w), 6) for w in self.null_weights],
                "abstain_below": self.abstain_below,
                "reliability": [{lab: list(map(int, r)) for lab, r in sorted(t.items())} for t in self.reliability],
                **self.meta}

    @classmethod
    def from_json(cls, d: dict, where: str = "combiner") -> Combiner:
        members = d.get("members", [])
        if d.get("features") != feature_names(members) or d.get("null_features") != null_feature_names(members):
            raise ValueError(f"{where}: its features are not this version's for members {members}; refit it "
                             "(pipeline/corpus/lid_fit.py)")
        w, v = (np.asarray(d[k], dtype=np.float64) for k in ("weights", "null_weights"))
        if w.shape != (len(d["features"]),) or v.shape != (len(d["null_features"]),) \
                or not (np.isfinite(w).all() and np.isfinite(v).all()):
            raise ValueError(f"{where}: weights must be finite numbers, one per feature")
        rel = d.get("reliability", [])
        if len(rel) not in (0, len(members)) or not all(
                isinstance(t, dict) and all(isinstance(r, list) and len(r) == 4 and all(isinstance(x, int) for x in r)
                                            for r in t.values()) for t in rel):
            raise ValueError(f"{where}: reliability must be one table per member of label: [4 counts]")
        meta = {k: x for k, x in d.items() if k not in ("members", "features", "weights", "null_features",
                                                        "null_weights", "abstain_below", "reliability")}
        return cls(list(members), w, v, float(d.get("abstain_below", 0.5)), rel, meta)


def combiner_file(members: list[str]) -> str:
    """Where the shipped combiner for these members lives (`lid_models/combiner.<a>+<b>.json`)."""
    return os.path.join(COMBINERS, "combiner." + "+".join(members) + ".json")


@lru_cache(maxsize=8)
def load(path: str) -> Combiner:
    with open(path, encoding="utf-8") as f:
        return Combiner.from_json(json.load(f), path)


def fit(rows: list[tuple[Candidates, str]], members: list[str], l2: float = 1e-3,
        abstain_below: float | None = None, meta: dict | None = None) -> Combiner:
    """Maximum likelihood (L2-regularised, L-BFGS) of the documents' true labels among their
    candidates; a document whose language is no candidate teaches 'none of these'. The
    abstention bar: given, or chosen on the same documents (`choose_bar`)."""
    from scipy.optimize import minimize

    rows = [r for r in rows if r[0].labels]
    m = len(members)
    # cross-fitted: each half's reliability features come from the other half's counts
    halves = [reliability(rows[1::2], m), reliability(rows[0::2], m)]
    X, G, y, seg = [], [], [], []
    for d, (c, gold) in enumerate(rows):
        X.append(features(c, halves[d % 2]))
        G.append(null_features(c))
        hit = [lab == gold for lab in c.labels]
        y += hit + [not any(hit)]
        seg += [len(c.labels) + 1]
    X, G = np.concatenate(X), np.stack(G)
    y = np.asarray(y, dtype=np.float64)
    seg = np.asarray(seg)
    starts = np.concatenate([[0], np.cumsum(seg)[:-1]])
    is_null = np.zeros(len(y), dtype=bool)
    is_null[starts + seg - 1] = True
    doc = np.repeat(np.arange(len(seg)), seg)
    nf, ng = X.shape[1], G.shape[1]
    scale_x = np.maximum(np.abs(X).max(axis=0), 1e-9)
    scale_g = np.maximum(np.abs(G).max(axis=0), 1e-9)
    Xs, Gs = X / scale_x, G / scale_g
    n_docs = len(seg)

    def loss(theta):
        w, v = theta[:nf], theta[nf:]
        u = np.empty(len(y))
        u[~is_null] = Xs @ w
        u[is_null] = Gs @ v
        top = np.maximum.reduceat(u, starts)
        e = np.exp(u - top[doc])
        z = np.add.reduceat(e, starts)
        p = e / z[doc]
        nll = -(np.sum(y * (u - top[doc])) - np.sum(np.log(z))) / n_docs
        r = p - y
        gw = Xs.T @ r[~is_null] / n_docs + 2 * l2 * w
        gv = Gs.T @ r[is_null] / n_docs + 2 * l2 * v
        return nll + l2 * (w @ w + v @ v), np.concatenate([gw, gv])

    res = minimize(loss, np.zeros(nf + ng), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    w, v = res.x[:nf] / scale_x, res.x[nf:] / scale_g
    comb = Combiner(list(members), w, v, abstain_below, reliability(rows, m), dict(meta or {}))
    if abstain_below is None:
        comb.abstain_below = choose_bar(comb, rows)
    return comb


BARS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def choose_bar(comb: Combiner, rows: list[tuple[Candidates, str]]) -> float:
    """The abstention bar that maximises, over these documents, the mean over languages of
    (share labelled right - share labelled wrong): a wrong label costs what a right one gains,
    an abstention neither (a document of a language no member knows is best left `und`)."""
    return max(BARS, key=bar_values(comb, rows).__getitem__)


def bar_values(comb: Combiner, rows: list[tuple[Candidates, str]]) -> dict[float, float]:
    """{bar: mean over languages of (share right - share wrong)} of a combiner on documents."""
    best = []
    for c, gold in rows:
        p = comb.probabilities(c)
        j = int(np.argmax(p))
        best.append((gold, float(p[j]), c.labels[j] == gold))
    langs: dict[str, list[tuple[float, bool]]] = {}
    for gold, q, ok in best:
        langs.setdefault(gold, []).append((q, ok))

    def value(bar: float) -> float:
        return float(np.mean([sum((1 if ok else -1) for q, ok in v if q >= bar) / len(v) for v in langs.values()]))

    return {bar: value(bar) for bar in BARS}


@lru_cache(maxsize=1)
def varieties() -> dict[str, dict]:
    """{group: {members: [...], write: lang3}}: close varieties and what is written when the
    evidence points to the group without separating its members."""
    with open(VARIETIES, encoding="utf-8") as f:
        groups = yaml.safe_load(f) or {}
    return groups


@lru_cache(maxsize=4096)
def group_of(lang3: str) -> str | None:
    for name, g in varieties().items():
        if lang3 in g["members"]:
            return name
    return None


def decide(c: Candidates, p: np.ndarray, bar: float, script: str) -> tuple[str, float, bool]:
    """(label, its probability, whether it is a group's standard written for want of evidence).
    und_<Script> when nothing reaches `bar`."""
    if not c.labels:
        return f"{language_codes.UNKNOWN}_{script}", 0.0, False
    best = int(np.argmax(p))
    label = c.labels[best]
    if p[best] >= bar:
        return final_label(label, script), float(p[best]), False
    group = group_of(language(final_label(label, script)))
    if group is not None:
        total = sum(float(q) for lab, q in zip(c.labels, p)
                    if group_of(language(final_label(lab, script))) == group)
        if total >= bar:
            lang = varieties()[group]["write"]
            return language_codes.normalize(lang, script), min(total, 1.0), True
    return f"{language_codes.UNKNOWN}_{script}", float(p[best]), False


def final_label(label: str, script: str) -> str:
    """A candidate as the pipeline writes it: a macrolanguage becomes its standard individual
    language (`ara_Arab` -> `arb_Arab`, as `language_codes.normalize` does)."""
    lang = language(label)
    if language_codes.is_macrolanguage(lang):
        return language_codes.normalize(label.split("_")[0], label.partition("_")[2] or script)
    return label

