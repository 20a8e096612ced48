"""Two translation backends behind one interface (`Backend.translate`):

- `hf`: transformers `generate` on the actor's device (CPU or CUDA);
- `ct2`: CTranslate2, the model converted once from the local Hugging Face directory and
  cached by the directory's content hash (`<cache>/<sha256[:16]>/`); int8 on CPU,
  int8_float16 on GPU by default (`compute_type`).

Both take sentences in our language labels, set the model's source-language token (NLLB,
M2M100) or target prefix (`>>xx<<` of multi-target MarianMT), force the target-language token
as the first generated token (NLLB, M2M100), cut batches by a token budget over
length-sorted sentences, respect the model's own maximum length, and decode with a seed
derived from the batch's content (the same sentences give the same output wherever and
whenever they run). A batch that fails is retried sentence by sentence; a sentence that still
fails is returned as an error (its document becomes a reject), never an exception that stops
the corpus.
"""

from __future__ import annotations

import logging
import os
import zlib
from abc import ABC, abstractmethod
from pathlib import Path

from .codes import ModelCodes, model_codes

log = logging.getLogger(__name__)


def device_of(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Backend(ABC):
    """Common part: tokenizer, language codes, length limits, batching, error isolation; a
    backend implements `generate` (one batch of sentences -> their translations)."""

    name = "base"

    def __init__(self, model_dir: str, *, max_input_tokens: int = 256, max_new_tokens: int = 256,
                 batch_tokens: int = 4096, num_beams: int = 1, sample_top_k: int = 0, seed: int = 0,
                 device: str = "auto", threads: int = 0):
        from transformers import AutoConfig, AutoTokenizer

        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.codes: ModelCodes = model_codes(self.tokenizer, model_dir)
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        positions = getattr(config, "max_position_embeddings", None) or 1024
        limit = min(positions, getattr(self.tokenizer, "model_max_length", positions) or positions)
        self.max_input_tokens = max(8, min(max_input_tokens, limit))
        self.max_new_tokens = max(8, min(max_new_tokens, limit))
        self.batch_tokens, self.num_beams, self.sample_top_k = batch_tokens, num_beams, sample_top_k
        self.seed, self.device, self.threads = seed, device_of(device), threads
        self._lang_ids = {i for i in self.tokenizer.convert_tokens_to_ids(sorted(self.codes.tokens)) if i is not None}

    # -- text <-> model input ------------------------------------------------------------
    def _prefixed(self, texts: list[str], tgt: str) -> list[str]:
        if self.codes.family == "marian":
            prefix = self.codes.target(tgt)
            if prefix:
                return [f"{prefix} {t}" for t in texts]
        return texts

    def lengths(self, texts: list[str], src: str, tgt: str) -> list[int]:
        """Input tokens of each text as the model will see it (language tokens included)."""
        self.codes.set_source(self.tokenizer, src)
        return [len(ids) for ids in self.tokenizer(self._prefixed(texts, tgt))["input_ids"]]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if int(i) not in self._lang_ids]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def _batch_seed(self, texts: list[str]) -> int:
        return (self.seed * 1_000_003 + zlib.crc32("\x1f".join(texts).encode())) % (2**31 - 1)

    # -- the interface -------------------------------------------------------------------
    def translate(self, texts: list[str], src: str, tgt: str, progress=None,
                  lengths: list[int] | None = None) -> tuple[list[str | None], dict[int, str]]:
        """Translations of `texts` (in order; None where it failed) and {index: error};
        `lengths`: their `self.lengths`, when the caller has them already."""
        out: list[str | None] = [None] * len(texts)
        errors: dict[int, str] = {}
        if not texts:
            return out, errors
        for idx in self.batches(lengths or self.lengths(texts, src, tgt)):
            self._run(idx, texts, src, tgt, out, errors)
            if progress:
                progress(len(idx))
        return out, errors

    def batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices cut into batches over length-sorted inputs (longest first), each within the
        token budget: (longest input in the batch) x (rows) <= batch_tokens."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        batches, batch, longest = [], [], 0
        for i in order:
            longest_if = max(longest, lengths[i])
            if batch and longest_if * (len(batch) + 1) > self.batch_tokens:
                batches.append(batch)
                batch, longest_if = [], lengths[i]
            batch.append(i)
            longest = longest_if
        if batch:
            batches.append(batch)
        return batches

    def _run(self, idx: list[int], texts: list[str], src: str, tgt: str, out: list, errors: dict) -> None:
        batch = [texts[i] for i in idx]
        try:
            for i, text in zip(idx, self.generate(batch, src, tgt, self._batch_seed(batch)), strict=True):
                out[i] = text
        except Exception as e:  # noqa: BLE001 - isolate the failing sentence, keep the rest
            if len(idx) == 1:
                errors[idx[0]] = f"{type(e).__name__}: {e}"[:500]
                log.warning("translate %s->%s: a sentence failed (%s)", src, tgt, errors[idx[0]])
                return
            for i in idx:
                self._run([i], texts, src, tgt, out, errors)

    @abstractmethod
    def generate(self, texts: list[str], src: str, tgt: str, seed: int) -> list[str]:
        """Translations of one batch, decoded with `seed`."""


class HFBackend(Backend):
    """transformers `generate` on CPU or CUDA."""

    name = "hf"

    def __init__(self, model_dir: str, **kw):
        super().__init__(model_dir, **kw)
        import torch
        from transformers import AutoModelForSeq2SeqLM

        if self.threads:
            torch.set_num_threads(self.threads)
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
        self.model.to(self.device).eval()

    def generate(self, texts: list[str], src: str, tgt: str, seed: int) -> list[str]:
        import torch

        self.codes.set_source(self.tokenizer, src)
        enc = self.tokenizer(self._prefixed(texts, tgt), return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_input_tokens).to(self.device)
        gen = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
        if self.sample_top_k and self.num_beams == 1:
            gen.update(do_sample=True, top_k=self.sample_top_k)
        if self.codes.family != "marian":
            gen["forced_bos_token_id"] = self.tokenizer.convert_tokens_to_ids(self.codes.target(tgt))
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen)
        return [self.decode(row) for row in out.tolist()]


def _m2m100_loader():
    """CTranslate2 4.x reads an M2M100 vocabulary from `special_tokens_map[...additional...]`,
    which transformers 5 no longer fills: the converted model would miss its 100 language
    tokens and fail validation. Vocabulary by id from the tokenizer's own maps instead."""
    from ctranslate2.converters import transformers as ct2t

    class M2M100Vocabulary(ct2t.M2M100Loader):
        def get_vocabulary(self, model, tokenizer):
            by_id = {i: t for t, i in tokenizer.get_vocab().items()}
            for token, i in (getattr(tokenizer, "lang_token_to_id", None) or {}).items():
                by_id.setdefault(i, token)
            return [by_id.get(i, f"madeupword{i}") for i in range(model.config.vocab_size)]

    ct2t._MODEL_LOADERS["M2M100Config"] = M2M100Vocabulary()


def convert_ct2(model_dir: str, cache_dir: str | None = None) -> str:
    """The CTranslate2 conversion of a local HF model directory, made once and cached by the
    directory's content (sha256 of its files): a changed model gets a new conversion."""
    import shutil
    import tempfile

    import ctranslate2

    from ..storage import sha256_dir

    cache = Path(cache_dir or os.environ.get("BABELFORGE_CT2_CACHE") or Path.home() / ".cache/babelforge/ctranslate2")
    out = cache / sha256_dir(model_dir)[:16]
    if (out / "model.bin").exists():
        return str(out)
    cache.mkdir(parents=True, exist_ok=True)
    _m2m100_loader()
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache))
    try:
        ctranslate2.converters.TransformersConverter(model_dir).convert(str(tmp / "model"), quantization=None,
                                                                      force=True)
        try:
            os.replace(tmp / "model", out)  # atomic: a concurrent actor converting the same model loses the race
        except OSError:
            if not (out / "model.bin").exists():
                raise
        log.info("ctranslate2: converted %s -> %s", model_dir, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


class CT2Backend(Backend):
    """CTranslate2 (int8 on CPU, int8_float16 on GPU unless `compute_type` says otherwise)."""

    name = "ct2"

    def __init__(self, model_dir: str, *, compute_type: str = "auto", cache_dir: str | None = None, **kw):
        super().__init__(model_dir, **kw)
        import ctranslate2

        if compute_type == "auto":
            compute_type = "int8_float16" if self.device.startswith("cuda") else "int8"
        self.compute_type = compute_type
        self.translator = ctranslate2.Translator(convert_ct2(model_dir, cache_dir), device=self.device.split(":")[0],
                                                 compute_type=compute_type, intra_threads=self.threads or 0)

    def generate(self, texts: list[str], src: str, tgt: str, seed: int) -> list[str]:
        import ctranslate2

        self.codes.set_source(self.tokenizer, src)
        ids = self.tokenizer(self._prefixed(texts, tgt), truncation=True, max_length=self.max_input_tokens)["input_ids"]
        source = [self.tokenizer.convert_ids_to_tokens(row) for row in ids]
        prefix = None if self.codes.family == "marian" else [[self.codes.target(tgt)]] * len(texts)
        sampling = self.sample_top_k if self.sample_top_k and self.num_beams == 1 else 1
        ctranslate2.set_random_seed(seed)
        results = self.translator.translate_batch(
            source, target_prefix=prefix, beam_size=self.num_beams, sampling_topk=sampling,
            max_decoding_length=self.max_new_tokens, max_input_length=self.max_input_tokens, max_batch_size=0)
        return [self.decode(self.tokenizer.convert_tokens_to_ids(r.hypotheses[0])) for r in results]


BACKENDS = {"hf": HFBackend, "ct2": CT2Backend}


def load(backend: str, model_dir: str, **kw) -> Backend:
    if backend not in BACKENDS:
        raise ValueError(f"translation backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return BACKENDS[backend](model_dir, **kw)
