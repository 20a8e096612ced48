"""Models: a BERT-style encoder (masked LM) or a Llama-style decoder (causal LM) built from a
config or loaded from a local pretrained directory; masking, per-sequence losses, FLOPs."""

from __future__ import annotations

import torch

from ..config import ModelConfig


def bert_config(cfg: ModelConfig, tokenizer, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_length,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_mlm(cfg: ModelConfig, tokenizer):
    from transformers import BertForMaskedLM

    return BertForMaskedLM(bert_config(cfg, tokenizer, attn_implementation="sdpa"))


def build_clm(cfg: ModelConfig, tokenizer):
    """A Llama-style decoder (RMSNorm, rotary positions, SwiGLU, SDPA attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_length,
        attention_dropout=cfg.dropout, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def build_model(cfg: ModelConfig, tokenizer):
    """The configured architecture from scratch, or `cfg.pretrained_dir` when set."""
    if cfg.pretrained_dir:
        return load_model(cfg.pretrained_dir, cfg.objective)
    return build_mlm(cfg, tokenizer) if cfg.objective == "masked_lm" else build_clm(cfg, tokenizer)


def load_model(model_dir: str, objective: str):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if objective == "masked_lm" else AutoModelForCausalLM
    return auto.from_pretrained(model_dir, attn_implementation="sdpa", local_files_only=True)


def sequence_losses(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed cross-entropy and target count (labels -100 are ignored); causal
    models predict token t+1 from tokens <= t."""
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                             ignore_index=-100, reduction="none").view(labels.shape)
    targets = (labels != -100)
    return loss.sum(dim=1), targets.sum(dim=1)


def flops_per_token(model) -> float:
    """Training FLOPs per token, 6 x parameters (forward + backward; attention's extra
    FLOPs at short sequence lengths left out, as in the usual MFU estimate)."""
    return 6.0 * sum(p.numel() for p in model.parameters())


def encode(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def mask_tokens(input_ids: torch.Tensor, tokenizer, probability: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose `probability` of the non-special tokens; of those 80% [MASK],
    10% a random token, 10% unchanged. Returns (inputs, labels) with -100 where not chosen."""
    labels = input_ids.clone()
    inputs = input_ids.clone()
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for tid in tokenizer.all_special_ids:
        special |= input_ids == tid
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    # guarantee at least one target per sequence that has a real token
    none = ~chosen.any(dim=1) & (~special).any(dim=1)
    if none.any():
        first_real = (~special).float().argmax(dim=1)
        chosen[none, first_real[none]] = True
    labels[~chosen] = -100
    r = torch.rand(input_ids.shape, generator=generator)
    inputs[chosen & (r < 0.8)] = tokenizer.mask_token_id
    rand_pos = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rand_pos] = torch.randint(len(tokenizer), input_ids.shape, generator=generator)[rand_pos]
    return inputs, labels


def warmup_cosine(optimizer, warmup: int, total: int):
    """LR schedule: linear warmup, then cosine decay to 10% of the peak (transformers')."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total, min_lr_rate=0.1)
