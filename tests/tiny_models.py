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


def build_tiny_pretrained(out: Path, arch: str, texts: list[str], seed: int = 0) -> Path:
    """A tiny "pretrained" multilingual checkpoint as a user would have it on disk: XLM-R
    (SentencePiece unigram, <s> <pad> </s> <unk> ... <mask>, positions from padding_idx + 1, one
    segment type), mBERT (WordPiece, [CLS] [SEP] [MASK], two segment types) or Llama (BPE with
    byte fallback, <s> </s>), each with its own tokenizer class and a vocabulary unlike the one
    babelforge would train; random weights."""
    import torch
    from tokenizers import BertWordPieceTokenizer, SentencePieceBPETokenizer, SentencePieceUnigramTokenizer
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertTokenizerFast,
        LlamaConfig,
        LlamaForCausalLM,
        LlamaTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaForMaskedLM,
        XLMRobertaTokenizerFast,
    )

    out = Path(out)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(seed)
    if arch == "mbert":
        wp = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
        wp.train_from_iterator(texts, vocab_size=800, min_frequency=1)
        tok = BertTokenizerFast(vocab=wp.get_vocab(), do_lower_case=False, strip_accents=False)
        model = BertForMaskedLM(BertConfig(vocab_size=len(tok), max_position_embeddings=64,
                                           pad_token_id=tok.pad_token_id, **small))
    elif arch == "xlm-roberta":
        sp = SentencePieceUnigramTokenizer()
        sp.train_from_iterator(texts, vocab_size=800, special_tokens=["<unk>"], unk_token="<unk>")
        pieces = [tuple(p) for p in json.loads(sp.to_str())["model"]["vocab"] if p[0] != "<unk>"]
        vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces, ("<mask>", 0.0)]
        tok = XLMRobertaTokenizerFast(vocab=vocab)
        model = XLMRobertaForMaskedLM(XLMRobertaConfig(
            vocab_size=len(tok), max_position_embeddings=64 + tok.pad_token_id + 1, type_vocab_size=1,
            pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **small))
    elif arch == "llama":
        bpe = SentencePieceBPETokenizer()
        bpe.train_from_iterator(texts, vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"])
        spec = json.loads(bpe.to_str())["model"]
        tok = LlamaTokenizerFast(vocab=spec["vocab"], merges=[tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                                                               for m in spec["merges"]])
        tok.pad_token = tok.unk_token  # as Llama checkpoints are commonly padded
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), max_position_embeddings=64, num_key_value_heads=1, pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **small))
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
