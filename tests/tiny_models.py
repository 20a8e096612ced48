"""Tiny models built offline, so tests exercise the real transformers code paths with no hub."""

from __future__ import annotations

import json
from pathlib import Path


def build_tiny_marian(out: Path, source_texts: list[str], target_texts: list[str], seed: int = 0) -> Path:
    """A MarianMT model (random weights, d_model 32, one layer per side) with real
    SentencePiece tokenizers trained on the given texts, saved with save_pretrained."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out = Path(out)
    work = out / "_spm"
    work.mkdir(parents=True, exist_ok=True)
    pieces: list[str] = []
    for side, texts in (("source", source_texts), ("target", target_texts)):
        corpus = work / f"{side}.txt"
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(work / side), vocab_size=120,
                                       hard_vocab_limit=False, character_coverage=1.0, model_type="unigram",
                                       bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=str(work / f"{side}.model"))
        pieces += [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {"</s>": 0, "<unk>": 1}
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    vocab["<pad>"] = len(vocab)
    (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = MarianTokenizer(source_spm=str(work / "source.model"), target_spm=str(work / "target.model"),
                          vocab=str(work / "vocab.json"))
    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=vocab["<pad>"],
                          eos_token_id=vocab["</s>"], decoder_start_token_id=vocab["<pad>"],
                          forced_eos_token_id=vocab["</s>"])
    MarianMTModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out
