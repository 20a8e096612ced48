"""Our language labels (`<ISO 639-3>_<Script>`, FLORES-200 style) in each translation model's
own codes, found in the model's vocabulary rather than assumed:

- NLLB: FLORES-200 codes as tokens (`swh_Latn`, `zho_Hans`, `arb_Arab`): our label, or the
  same language under its macrolanguage / individual-language name;
- M2M100: ISO 639-1 where one exists, as `__sw__` tokens;
- MarianMT: one language pair per model, or a multi-target model whose vocabulary holds
  `>>xxx<<` target tokens (ISO 639-3, 639-1, or with a script: `>>zho_Hans<<`), written before
  the source text.

A language the model does not have is an error naming the model and the codes it does have
for that language family, never a silent fallback to the wrong language token."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import language_codes as lc

_NLLB = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")
_M2M = re.compile(r"^__([a-z]{2,3})__$")
_MARIAN = re.compile(r"^>>([A-Za-z_]{2,12})<<$")


class LanguageNotSupported(ValueError):
    """The model has no code for a language."""


@dataclass(frozen=True)
class ModelCodes:
    """The language tokens of one model."""
    family: str              # nllb | m2m100 | marian
    tokens: frozenset[str]   # the model's language tokens as they appear in its vocabulary
    name: str                # the model, for messages

    def _names(self, label: str) -> list[str]:
        """ISO 639 names of a label's language, most specific first: the label's own code, the
        two-letter code, the macrolanguage or its FLORES individual language."""
        lang = lc.language(label)
        try:
            lang = lc.language_code(lang)  # 'fr' -> 'fra': any ISO 639 form
        except ValueError:
            pass
        names = [lang] + [b for macro, individual in lc.MACRO.items()
                          for a, b in ((individual, macro), (macro, individual)) if lang == a]
        import langcodes

        for name in list(names):
            try:
                short = langcodes.Language.get(name).language
            except (LookupError, ValueError):
                continue
            if short and short not in names:
                names.append(short)
        return list(dict.fromkeys(names))

    def source(self, label: str) -> str | None:
        """The token to set as the source language (None: the model takes no source token)."""
        return None if self.family == "marian" else self._find(label)

    def set_source(self, tokenizer, label: str) -> None:
        """Make `tokenizer` encode text as `label` (its source-language token before the text:
        `src_lang` is the token for NLLB, the bare code for M2M100)."""
        token = self.source(label)
        if token is not None:
            tokenizer.src_lang = token.strip("_") if self.family == "m2m100" else token

    def target(self, label: str) -> str | None:
        """The target-language token: forced first token (NLLB, M2M100) or the `>>xx<<` text
        prefix of a multi-target Marian (None for a single-pair Marian)."""
        if self.family == "marian" and not self.tokens:
            return None
        return self._find(label)

    def _find(self, label: str) -> str:
        script = label.partition("_")[2]
        names = self._names(label)
        if self.family == "nllb":
            wanted = [f"{n}_{script}" for n in names if script] + \
                     [t for n in names for t in sorted(self.tokens) if t.startswith(f"{n}_")]
        elif self.family == "m2m100":
            wanted = [f"__{n}__" for n in names]
        else:
            wanted = [f">>{n}_{script}<<" for n in names if script] + [f">>{n}<<" for n in names]
        for token in wanted:
            if token in self.tokens:
                return token
        near = sorted(t for t in self.tokens if any(n[:2] in t for n in names))[:10]
        raise LanguageNotSupported(
            f"{self.name} ({self.family}) has no language code for {label} (tried {', '.join(wanted)}); "
            f"its codes for similar names: {', '.join(near) or 'none'}")


def _tokens(tokenizer) -> set[str]:
    """Every token a tokenizer knows: its vocabulary, added and special tokens, and the language
    tokens some tokenizers keep outside the vocabulary (M2M100's `lang_token_to_id`)."""
    tokens = set(tokenizer.get_vocab())
    for attr in ("lang_token_to_id", "lang_code_to_id"):
        tokens |= set(getattr(tokenizer, attr, None) or {})
    for attr in ("additional_special_tokens", "extra_special_tokens", "all_special_tokens"):
        value = getattr(tokenizer, attr, None) or []
        tokens |= {str(t) for t in (value.values() if isinstance(value, dict) else value)}
    return tokens


def model_codes(tokenizer, name: str = "model") -> ModelCodes:
    """The family and language tokens of a translation model, from its tokenizer."""
    kind = type(tokenizer).__name__.lower()
    tokens = _tokens(tokenizer)
    for family, pattern in (("nllb", _NLLB), ("m2m", _M2M), ("marian", _MARIAN)):
        if family in kind:
            return ModelCodes("m2m100" if family == "m2m" else family,
                              frozenset(t for t in tokens if pattern.match(t)), name)
    raise ValueError(f"{name}: tokenizer {type(tokenizer).__name__} is not a MarianMT, M2M100 or NLLB tokenizer")
