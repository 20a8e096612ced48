"""Tokenizer: a Unigram (SentencePiece-style) tokenizer trained on the corpus shards.

Languages are mixed by the manifest's temperature weights: each language contributes
sentences in proportion to its sampling weight, so English does not decide the vocabulary.
Saved in Hugging Face format (`tokenizer.json` + config), loadable by `AutoTokenizer`.
"""

from __future__ import annotations

import hashlib
import heapq
import logging

from ..config import TokenizerConfig
from ..corpus.parallel import pair_paths
from ..corpus.shard import mixing_plan, shard_paths, verify_corpus
from ..storage import exists, folder_state, get_fs, join, local_dir, read_json, writable_dir

log = logging.getLogger(__name__)
# Special tokens per objective: BERT-style for the masked-LM encoder, Llama-style for the decoder.
SPECIALS = {
    "masked_lm": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"},
    "causal_lm": {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
}
BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]


class Sample:
    """A seeded uniform sample of a stream of texts, in bounded memory: the texts with the
    smallest keys (key: a seeded hash of the text, so the sample does not depend on the order
    the texts are read in, and a repeated text counts once), up to `count` texts and no more
    texts than it takes to reach `max_bytes` of UTF-8. Memory: `max_bytes` plus one text."""

    def __init__(self, count: int, max_bytes: int, seed: int = 0):
        self.count, self.max_bytes, self.salt = count, max_bytes, seed.to_bytes(8, "little", signed=True)
        self.heap: list[tuple[int, str, int]] = []  # (-key, text, bytes): the largest key on top
        self.seen: set[int] = set()
        self.bytes = 0

    def add(self, text: str) -> None:
        data = text.encode()
        key = int.from_bytes(hashlib.blake2b(data, digest_size=8, key=self.salt).digest(), "little")
        if key in self.seen or (self._full() and key > -self.heap[0][0]):
            return
        heapq.heappush(self.heap, (-key, text, len(data)))
        self.seen.add(key)
        self.bytes += len(data)
        while len(self.heap) > self.count or (len(self.heap) > 1 and self.bytes - self.heap[0][2] >= self.max_bytes):
            k, _, n = heapq.heappop(self.heap)
            self.seen.discard(-k)
            self.bytes -= n

    def _full(self) -> bool:
        return len(self.heap) >= self.count or self.bytes >= self.max_bytes

    def texts(self) -> list[str]:
        """The sample in key order (a seeded random order)."""
        return [t for _, t, _ in sorted(self.heap, reverse=True)]


def _stream_texts(uri: str, columns: list[str]):
    """Record batches of a Parquet file, row group by row group (never the whole file)."""
    import pyarrow.parquet as pq

    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(columns=columns, batch_size=1024)


def sample_texts(manifest: dict, corpus_dir: str, max_sentences: int, seed: int = 0,
                 alpha: float | None = None, max_bytes: int = 200_000_000) -> dict[str, list[str]]:
    """Per language, training texts drawn in proportion to the manifest weights (or to the
    temperature `alpha` given here), read as a stream with a budget per language of texts
    (its share of `max_sentences`) and of bytes (its share of `max_bytes`): `Sample`, so memory
    is bounded by `max_bytes` whatever the corpus size. A language with fewer texts than its
    share is repeated up to it. Then the sentences of the training translation pairs, so that
    a language met only in pairs has pieces of its own (up to an equal share per language,
    documents counted first)."""
    available = sum(v.get("train_rows", 0) for v in manifest["languages"].values())
    plan = mixing_plan(manifest, min(max_sentences, available), alpha)
    total = max(1, sum(plan.values()))
    out: dict[str, list[str]] = {}
    for lang, budget in plan.items():
        budget, byte_budget = max(1, budget), max(1, int(max_bytes * budget / total))
        sample = Sample(budget, byte_budget, seed)
        for uri in shard_paths(manifest, corpus_dir, "train", [lang]):
            for batch in _stream_texts(uri, ["text"]):
                for t in batch.column(0).to_pylist():
                    sample.add(t)
        texts = sample.texts()
        if texts and len(texts) < budget:  # a small language repeated up to its share (texts and bytes)
            times = max(1, min(budget // len(texts), byte_budget // max(1, sample.bytes)))
            rest = budget - len(texts) * times if times == budget // len(texts) else 0
            texts = texts * times + texts[:rest]  # texts are in a seeded random order: a prefix is a sample
        out[lang] = texts
    section = manifest.get("parallel") or {}
    pair_langs = {lang for k in section.get("pairs", {}) for lang in k.split("-", 1)}
    if pair_langs:  # languages the model meets in translation pairs get their share of the vocabulary
        n = max(1, len(set(out) | pair_langs))
        share, byte_share = max(1, max_sentences // n), max(1, max_bytes // n)
        samples = {lang: Sample(max(0, share - len(out.get(lang, []))), byte_share, seed) for lang in pair_langs}
        for uri in pair_paths(manifest, corpus_dir, "train"):
            for batch in _stream_texts(uri, ["src_lang", "tgt_lang", "src_text", "tgt_text"]):
                cols = batch.to_pydict()
                for side in ("src", "tgt"):
                    for lang, text in zip(cols[f"{side}_lang"], cols[f"{side}_text"]):
                        if lang in samples and samples[lang].count:
                            samples[lang].add(text)
        for lang in sorted(samples):
            out.setdefault(lang, []).extend(samples[lang].texts())
    return out


SCORE_DECIMALS = 4
STEP_TOLERANCE = 1e-7  # scores this close are one (the trainer's summation noise is ~1e-11)


def _canonical_unigram(tok, texts: list[str], specials: list[str], unk: str, byte_fallback: bool):
    """Rebuild a trained Unigram model so that the same texts give the same tokenizer, byte
    for byte. The `tokenizers` trainer iterates Rust hash sets and maps, whose order is random
    per process: (a) the characters of the texts that EM did not keep are appended with scores
    min, min + 1e-4, min + 2e-4, ... in that random order (SentencePiece gives them in order of
    frequency); (b) its other scores carry ~1e-11 of summation-order noise, so pieces of near
    equal score come out in either order. Here (a) those scores are dealt out again in order of
    frequency in the texts, then text, and
    (b) scores are rounded to `SCORE_DECIMALS` decimals (log-probabilities: far finer than any
    difference that decides a segmentation), pieces after the special tokens ordered by score,
    then text. With `byte_fallback` the 256 UTF-8 byte pieces are added as SentencePiece does:
    a character the vocabulary lacks becomes its bytes, never [UNK]."""
    import json
    from collections import Counter

    from tokenizers import models

    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    head = [v for v in vocab if v[0] in specials]
    rest = [v for v in vocab if v[0] not in specials]
    if rest:
        # (a) the trainer's min_score is the lowest score; appended characters sit at it and at
        # exact steps of 1e-4 above (its own float arithmetic). Pieces EM kept may share the
        # lowest score exactly, so which character took it is unknown: the characters at the
        # lowest score and on the steps share those scores, the most frequent the highest.
        # "At" a score means within STEP_TOLERANCE of it: EM's pieces at the lowest score carry the
        # summation noise (b) too (~1e-11: some land exactly on it, others just above, and which
        # do changes from run to run), far below the 1e-4 steps.
        floor = min(score for _, score in rest)
        singles: dict[float, list[str]] = {}
        for piece, score in rest:
            if len(piece) == 1:
                singles.setdefault(score, []).append(piece)
        group, scores, step = [], [], 0
        while True:
            at = [s for s in singles if abs(s - (floor + step * 0.0001)) < STEP_TOLERANCE]
            if not at:
                break
            for s in sorted(at):
                group += singles[s]
                scores += [s] * len(singles[s])
            step += 1
        if len(group) > 1:
            freq = Counter(ch for t in texts for ch in t)
            order = sorted(group, key=lambda ch: (freq[ch], ch), reverse=True)
            score_of = dict(zip(order, sorted(scores, reverse=True)))
            rest = [(piece, score_of.get(piece, score) if len(piece) == 1 else score) for piece, score in rest]
    rest = sorted(((piece, round(score, SCORE_DECIMALS)) for piece, score in rest), key=lambda v: (-v[1], v[0]))
    vocab = head + rest
    if byte_fallback:
        low = round(min(score for _, score in vocab) - 1.0, SCORE_DECIMALS)
        have = {piece for piece, _ in vocab}
        vocab += [(b, low) for b in BYTE_PIECES if b not in have]
    tok.model = models.Unigram(vocab, unk_id=[p for p, _ in vocab].index(unk), byte_fallback=byte_fallback)
    return tok


TRAINED_ON = "babelforge_tokenizer.json"


def train_tokenizer(manifest: dict, corpus_dir: str, out_dir: str, cfg: TokenizerConfig,
                    objective: str = "masked_lm"):
    """Train (or copy from `cfg.pretrained_dir`) the tokenizer and save it in HF format, with
    what it was made from (`babelforge_tokenizer.json`: digest of the corpus manifest, settings). A
    tokenizer already in `out_dir` made from the same is kept as it is: a retried run gets the
    identical tokenizer (and pretraining its identical lineage) without training it again."""
    import hashlib
    import json
    from pathlib import Path

    from transformers import AutoTokenizer

    verify_corpus(manifest, corpus_dir)
    made_from = {"manifest": hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest(),
                 "objective": objective, "tokenizer": cfg.model_dump(mode="json")}
    marker = join(out_dir, TRAINED_ON)
    if exists(marker) and read_json(marker) == made_from and folder_state(out_dir) == "complete":
        fast = AutoTokenizer.from_pretrained(local_dir(out_dir), local_files_only=True)
        log.info("tokenizer: %s already made from this corpus and settings; kept (%d pieces)", out_dir, len(fast))
        return fast
    with writable_dir(out_dir) as d:  # a new folder, switched in whole (local) or marked whole last (s3://)
        fast = _make_tokenizer(manifest, corpus_dir, d, cfg, objective)
        Path(d, TRAINED_ON).write_text(json.dumps(made_from, indent=2, sort_keys=True))
    return fast


def _make_tokenizer(manifest: dict, corpus_dir: str, out_dir: str, cfg: TokenizerConfig, objective: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if cfg.pretrained_dir:
        fast = AutoTokenizer.from_pretrained(local_dir(cfg.pretrained_dir), local_files_only=True)
        missing = [k for k in SPECIALS[objective] if getattr(fast, k) is None and k != "unk_token"]
        if missing:
            raise ValueError(f"tokenizer.pretrained_dir {cfg.pretrained_dir}: no {', '.join(missing)} for {objective}")
        tag = manifest.get("synthetic_tag")
        if tag and tag not in fast.get_vocab():
            raise ValueError(f"tokenizer.pretrained_dir {cfg.pretrained_dir} has no token {tag!r} for the corpus's "
                             "synthetic_tag (corpus.augment.tag): use one of its reserved tokens as the tag, or none")
        fast.save_pretrained(out_dir)
        log.info("tokenizer: using %s (%d pieces) -> %s", cfg.pretrained_dir, len(fast), out_dir)
        return fast
    specials = SPECIALS[objective]
    per_lang = sample_texts(manifest, corpus_dir, cfg.max_sentences, alpha=cfg.alpha, max_bytes=cfg.max_bytes)
    texts = [t for lang in sorted(per_lang) for t in per_lang[lang]]
    if not texts:
        raise ValueError(f"{corpus_dir}: the manifest lists no training text to train a tokenizer on")
    # the corpus's tag of synthetic documents (tagged back-translation) is one reserved token
    special_list = list(dict.fromkeys([*specials.values(), *([manifest["synthetic_tag"]] if manifest.get("synthetic_tag")
                                                              else [])]))
    if cfg.model == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None if cfg.byte_fallback else specials["unk_token"]))
        tok.normalizer = normalizers.NFC()
        if cfg.byte_fallback:  # byte-level BPE: every string is spelled in the 256 byte symbols
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=special_list,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        else:
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=special_list)
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()]) if cfg.byte_fallback \
            else decoders.Metaspace()
        # Unigram keeps every character seen as a piece: the vocabulary holds at least those
        n_chars = len({ch for t in texts for ch in t if not ch.isspace()})
        room = cfg.vocab_size - (len(BYTE_PIECES) if cfg.byte_fallback else 0)
        if room < n_chars + len(special_list) + 1:
            log.warning("tokenizer: vocab_size %d leaves too little room for %d distinct characters%s; using %d "
                        "unigram pieces", cfg.vocab_size, n_chars, " + 256 byte pieces" if cfg.byte_fallback else "",
                        n_chars + len(special_list) + 50)
            room = n_chars + len(special_list) + 50
        trainer = trainers.UnigramTrainer(
            vocab_size=room, special_tokens=special_list,
            unk_token=specials["unk_token"], shrinking_factor=0.75, max_piece_length=16,
        )
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        tok = _canonical_unigram(tok, texts, special_list, specials["unk_token"], cfg.byte_fallback)
    if objective == "masked_lm":
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    else:  # a document starts with <s>; </s> is added where documents are packed together
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    fast.save_pretrained(out_dir)
    log.info("tokenizer: %s%s, %d pieces from %d texts in %d languages -> %s", cfg.model,
             " + byte fallback" if cfg.byte_fallback else "", len(fast), len(texts), len(per_lang), out_dir)
    return fast


def fertility(tokenizer, texts_by_lang: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per language: tokens per character and per whitespace word, and the share of tokens
    that are [UNK] or byte pieces (characters the vocabulary does not cover). High values show
    the languages the vocabulary serves badly."""
    vocab = tokenizer.get_vocab()
    byte_ids = {vocab[b] for b in BYTE_PIECES if b in vocab}
    out = {}
    for lang, texts in sorted(texts_by_lang.items()):
        if not texts:
            continue
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        n_tokens = sum(len(ids) for ids in encoded)
        n_unk = sum(ids.count(tokenizer.unk_token_id) for ids in encoded) if tokenizer.unk_token_id is not None else 0
        n_bytes = sum(1 for ids in encoded for i in ids if i in byte_ids)
        n_chars = sum(len(t) for t in texts)
        n_words = sum(len(t.split()) for t in texts)
        out[lang] = {
            "tokens_per_char": round(n_tokens / max(n_chars, 1), 4),
            "tokens_per_word": round(n_tokens / max(n_words, 1), 4),
            "unk_rate": round(n_unk / max(n_tokens, 1), 5),
            "byte_fallback_rate": round(n_bytes / max(n_tokens, 1), 5),
        }
    return out
