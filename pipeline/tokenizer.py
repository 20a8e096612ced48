"""Tokenizer: a Unigram (SentencePiece-style) tokenizer trained on the corpus shards.

Languages are mixed by the manifest's temperature weights: each language contributes
sentences in proportion to its sampling weight, so English does not decide the vocabulary.
Saved in Hugging Face format (`tokenizer.json` + config), loadable by `AutoTokenizer`.
"""

from __future__ import annotations

import logging
import random

from .config import TokenizerConfig
from .shard import mixing_plan, shard_paths
from .storage import read_parquet

log = logging.getLogger(__name__)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sample_texts(manifest: dict, corpus_dir: str, max_sentences: int, seed: int = 0) -> dict[str, list[str]]:
    """Per language, training texts drawn in proportion to the manifest weights."""
    rng = random.Random(seed)
    available = sum(v.get("train_rows", 0) for v in manifest["languages"].values())
    plan = mixing_plan(manifest, min(max_sentences, available))
    out: dict[str, list[str]] = {}
    for lang, budget in plan.items():
        texts: list[str] = []
        for uri in shard_paths(manifest, corpus_dir, "train", [lang]):
            texts.extend(read_parquet(uri, ["text"])["text"].to_pylist())
        budget = max(1, budget)
        if len(texts) > budget:
            texts = rng.sample(texts, budget)
        elif texts:  # upsample a small language to its share of the mix
            texts = texts * (budget // len(texts)) + rng.sample(texts, budget % len(texts))
        out[lang] = texts
    return out


def train_tokenizer(manifest: dict, corpus_dir: str, out_dir: str, cfg: TokenizerConfig):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    per_lang = sample_texts(manifest, corpus_dir, cfg.max_sentences)
    texts = [t for lang in sorted(per_lang) for t in per_lang[lang]]
    if not texts:
        raise ValueError(f"{corpus_dir}: the manifest lists no training text to train a tokenizer on")
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=cfg.vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="[UNK]",
        shrinking_factor=0.75, max_piece_length=16,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )
    fast.save_pretrained(out_dir)
    log.info("tokenizer: %d pieces from %d texts in %d languages -> %s", fast.vocab_size, len(texts),
             len(per_lang), out_dir)
    return fast


def fertility(tokenizer, texts_by_lang: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Tokens per character and per whitespace word, per language."""
    out = {}
    for lang, texts in sorted(texts_by_lang.items()):
        if not texts:
            continue
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        n_tokens = sum(len(ids) for ids in encoded)
        n_unk = sum(ids.count(tokenizer.unk_token_id) for ids in encoded)
        n_chars = sum(len(t) for t in texts)
        n_words = sum(len(t.split()) for t in texts)
        out[lang] = {
            "tokens_per_char": round(n_tokens / max(n_chars, 1), 4),
            "tokens_per_word": round(n_tokens / max(n_words, 1), 4),
            "unk_rate": round(n_unk / max(n_tokens, 1), 5),
        }
    return out
