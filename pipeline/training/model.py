"""Models: a BERT-style encoder (masked LM) or a Llama-style decoder (causal LM) built from a
config or loaded from a local pretrained directory; masking, per-sequence losses, FLOPs."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..storage import local_dir


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


def check_pretrained(cfg: ModelConfig):
    """The config of `cfg.pretrained_dir`, checked against what the run asks of it: a head for
    the objective, and positions for `max_length` (absolute position embeddings stop there)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    config = AutoConfig.from_pretrained(local_dir(cfg.pretrained_dir), local_files_only=True)
    encoder = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)
    fits = encoder if cfg.objective == "masked_lm" else (config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
                                                          and not encoder)
    if not fits:
        raise ValueError(f"model.pretrained_dir {cfg.pretrained_dir}: a {config.model_type} model is not trained "
                         f"for {cfg.objective}; set model.objective to the one it was trained with")
    rotary = any(getattr(config, a, None) is not None for a in ("rope_parameters", "rope_theta", "rope_scaling"))
    if not rotary and getattr(config, "max_position_embeddings", None):  # learned absolute positions
        from .alignment import position_offset

        positions = config.max_position_embeddings - position_offset(config)
        if cfg.max_length > positions:
            raise ValueError(f"model.max_length {cfg.max_length} is longer than the {positions} positions of "
                             f"model.pretrained_dir {cfg.pretrained_dir}; set model.max_length <= {positions}")
    return config


def load_model(model_dir: str, objective: str, weights: bool = True):
    """A model directory in HF format; `weights=False`: its architecture only (config.json),
    for a sharded checkpoint whose weights `torch.distributed.checkpoint` loads afterwards."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if objective == "masked_lm" else AutoModelForCausalLM
    model_dir = local_dir(model_dir)  # a checkpoint or model on s3:// is read from a local copy
    if not weights:
        return auto.from_config(AutoConfig.from_pretrained(model_dir, local_files_only=True), attn_implementation="sdpa")
    return auto.from_pretrained(model_dir, attn_implementation="sdpa", local_files_only=True)


class SelectiveLM(torch.nn.Module):
    """A masked- or causal-LM model whose forward returns the body's last hidden states and the
    LM head's logits at the selected positions only. Masked LM predicts ~15% of the tokens and
    the contrastive objective none: computing the vocabulary projection everywhere (what the
    model's own forward does) was most of a small model's training time. Wrapped before DDP /
    FSDP, so one forward through the wrapper is what the gradient reduction sees."""

    def __init__(self, model, length_buckets: int = 1):
        super().__init__()
        self.model = model
        self.length_buckets = length_buckets
        heads = [name for name, _ in model.named_children() if name != model.base_model_prefix]
        if len(heads) != 1:
            raise ValueError(f"{type(model).__name__}: expected a body ({model.base_model_prefix}) and one LM head, "
                             f"found {heads}")
        self.head_name = heads[0]

    @property
    def config(self):
        return self.model.config

    @property
    def base_model(self):
        return self.model.base_model

    def forward(self, groups: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Each group (rows of one kind, e.g. documents, TLM pairs, contrastive sides, trimmed to
        their own width) through the body; the head on its `select`ed positions (None: no
        logits). One call, so DDP sees one forward whatever the number of groups."""
        out = []
        for g in groups:
            hidden = self._body({k: v for k, v in g.items() if k != "select"})
            select = g.get("select")
            out.append((hidden, getattr(self.model, self.head_name)(hidden[select]) if select is not None else None))
        return out

    def _body(self, inputs: dict) -> torch.Tensor:
        """Last hidden states of a group of rows (right-padded, `attention_mask` 1 on tokens). With
        `length_buckets` > 1 the rows go through the body in buckets of similar length, each
        trimmed to its own longest row, and come back in their order at the group's width (zeros
        at the padding, which no loss reads): sentences of mixed length padded to the longest
        were two thirds padding (Tatoeba pairs, 256 rows)."""
        mask = inputs["attention_mask"]
        rows = mask.size(0)
        buckets = min(self.length_buckets, rows // 8)
        if buckets <= 1:
            return self.model.base_model(**inputs).last_hidden_state
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        parts = []
        for idx in torch.tensor_split(order, buckets):
            width = max(1, int(lengths[idx].max()))
            part = {k: v[idx, :width] for k, v in inputs.items()}
            parts.append(torch.nn.functional.pad(self.model.base_model(**part).last_hidden_state,
                                                 (0, 0, 0, mask.size(1) - width)))
        return torch.cat(parts)[torch.argsort(order)]


def lm_targets(labels: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions whose logits are needed, their target ids): the labelled positions, or for a
    causal model the positions before them (token t predicts t + 1)."""
    if causal:
        select = torch.zeros_like(labels, dtype=torch.bool)
        select[:, :-1] = labels[:, 1:] != -100
        return select, labels[:, 1:][labels[:, 1:] != -100]
    select = labels != -100
    return select, labels[select]


def selected_losses(logits: torch.Tensor, targets: torch.Tensor, select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed cross-entropy and target count from the logits of the selected
    positions (`SelectiveLM`), as `sequence_losses` gives them from full logits."""
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    rows = select.nonzero()[:, 0]
    n_rows = select.size(0)
    seq_loss = torch.zeros(n_rows, dtype=loss.dtype, device=loss.device).index_add(0, rows, loss)
    return seq_loss, select.sum(dim=1)


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
