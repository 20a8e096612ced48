"""Tiny models built offline, so tests exercise the real transformers code paths with no hub."""

from __future__ import annotations

import json
from pathlib import Path


def build_tiny_marian(out: Path, source_texts: list[str], target_texts: list[str], seed: int = 0,
                      d_model: int = 32, max_positions: int = 128, language_tokens: tuple[str, ...] = ()) -> Path:
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
    for p in language_tokens:  # multi-target Marian: `>>xxx<<` target tokens written before the source text
        vocab[p] = len(vocab)
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    vocab["<pad>"] = len(vocab)
    (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = MarianTokenizer(source_spm=str(work / "source.model"), target_spm=str(work / "target.model"),
                          vocab=str(work / "vocab.json"))
    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=len(vocab), d_model=d_model, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                          decoder_ffn_dim=2 * d_model, max_position_embeddings=max_positions, pad_token_id=vocab["<pad>"],
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


def _tiny_seq2seq_config(config_cls, vocab_size: int, tokenizer, max_positions: int = 128, **extra):
    return config_cls(vocab_size=vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                      max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.eos_token_id, **extra)


def build_tiny_m2m100(out: Path, texts: list[str], seed: int = 0, max_positions: int = 128) -> Path:
    """An M2M100 model (random weights, d_model 32) with its real tokenizer class: a
    SentencePiece model trained on `texts` plus the 100 `__xx__` language tokens."""
    import sentencepiece as spm
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    out = Path(out)
    work = out / "_spm"
    work.mkdir(parents=True, exist_ok=True)
    (work / "text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(work / "text.txt"), model_prefix=str(work / "spm"), vocab_size=200,
                                   hard_vocab_limit=False, character_coverage=1.0, model_type="unigram",
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(work / "spm.model"))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = M2M100Tokenizer(vocab_file=str(work / "vocab.json"), spm_file=str(work / "spm.model"))
    torch.manual_seed(seed)
    size = max(tok.convert_tokens_to_ids(t) for t in tok.lang_token_to_id) + tok.num_madeup_words + 1
    config = _tiny_seq2seq_config(M2M100Config, size, tok, max_positions)
    M2M100ForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_nllb(out: Path, texts: list[str], seed: int = 0, max_positions: int = 128) -> Path:
    """An NLLB model (M2M100 architecture, random weights, d_model 32) with the NLLB tokenizer:
    a BPE trained on `texts` plus the 202 FLORES-200 language tokens."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    out = Path(out)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = NllbTokenizer(vocab=state["vocab"], merges=merges)
    torch.manual_seed(seed)
    config = _tiny_seq2seq_config(M2M100Config, len(tok), tok, max_positions)
    M2M100ForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def train_tiny_marian(out: Path, pairs: list[tuple[str, str]], steps: int = 250, seed: int = 0,
                      max_positions: int = 128, language_tokens: tuple[str, ...] = ()) -> Path:
    """A tiny MarianMT that has learnt `pairs` by heart (full-batch AdamW from random weights):
    it translates those sentences as a real model would, so tests can check what comes out
    (language, order, reassembly), not only that something does. Saved with save_pretrained."""
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    strip = [p + " " for p in language_tokens]

    def bare(text: str) -> str:
        return next((text[len(p):] for p in strip if text.startswith(p)), text)

    out = build_tiny_marian(Path(out), [bare(s) for s, _ in pairs] * 3, [t for _, t in pairs] * 3, seed=seed,
                            d_model=64, max_positions=max_positions, language_tokens=language_tokens)
    tok = MarianTokenizer.from_pretrained(out)
    model = MarianMTModel.from_pretrained(out)
    torch.manual_seed(seed)
    batch = tok([s for s, _ in pairs], text_target=[t for _, t in pairs], return_tensors="pt", padding=True)
    batch["labels"][batch["labels"] == tok.pad_token_id] = -100
    # Marian's sinusoidal position tables are fixed and never saved: keep them out of training
    # (transformers 5.24's from_pretrained leaves them requires_grad=True, so the trained model
    # would depend on positions a reload recomputes)
    for name, param in model.named_parameters():
        if "embed_positions" in name:
            param.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out)
    return out
