"""Cross-lingual alignment objectives on translation pairs, mixed into pretraining.

- TLM (translation language modelling, Conneau & Lample 2019, XLM): a pair is one sequence,
  `[CLS] src [SEP] tgt [SEP]` for an encoder (`<s> src </s> tgt </s>` for a decoder), with
  positions reset at the start of each side so that position cannot tell the model which
  side it reads; segment ids 0/1 mark the sides where the architecture has segment
  embeddings (BERT/mBERT: type_vocab_size 2; XLM-R has one type, so nothing is added there).
  An encoder predicts masked tokens of both sides, and can look across to the translation
  to do it; a decoder predicts the target from the source (and the source from nothing).
- Contrastive sentence alignment (InfoNCE with in-batch negatives, as in LaBSE and the
  "explicit alignment" line of work): each side is encoded alone, mean-pooled over its
  tokens (or its first token, `pooling: cls`), L2-normalised; the similarity matrix of
  sources against targets, divided by a temperature, is a classification of which target
  translates each source, in both directions. Under DDP the pooled vectors of every worker are
  gathered with gradients (`all_gather_tensor_autograd`: the backward sums each row's
  gradients from every worker back to its owner), so each worker's
  pairs meet the negatives of all workers: the loss equals the one-worker loss on the whole
  global batch (tested), and the negatives grow with the number of workers.

The pair stream is a Ray Dataset like the document stream: each language pair drawn at its
rate of the temperature plan (`corpus.parallel.alpha` unless `pretrain.pair_alpha`), in
shuffled chunk order with a local shuffle window (`stream`), tokenised on CPU workers.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import torch

from ..corpus.shard import plan_rows, temperature_weights
from ..storage import join

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- data (Ray Data, CPU)


def pair_plan(manifest: dict, total_rows: int, alpha: float | None = None) -> dict[str, int]:
    """Rows to draw per language pair for a stream of `total_rows` pairs (temperature sampling
    over the pairs' estimated training tokens)."""
    section = manifest.get("parallel") or {}
    pairs = {k: v for k, v in section.get("pairs", {}).items() if v.get("train_rows", 0) > 0}
    if not pairs:
        return {}
    if alpha is None:
        weights = {k: v["weight"] for k, v in pairs.items()}
    else:
        weights = temperature_weights({k: v["train_tokens"] for k, v in pairs.items()}, alpha)
    return plan_rows(weights, total_rows)


def _pair_keys(batch: pa.Table) -> list[str]:
    return ["-".join(sorted(p)) for p in zip(batch["src_lang"].to_pylist(), batch["tgt_lang"].to_pylist())]


def special_ids(tok, causal: bool) -> tuple[int, int]:
    """(start, end) token of a side: [CLS]/[SEP] (BERT), <s>/</s> (XLM-R, Llama)."""
    if causal:
        return tok.bos_token_id, tok.eos_token_id
    start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    return start, end


def tokenize_pairs(batch: pa.Table, tokenizer_dir: str, objective: str, seq_len: int) -> dict[str, np.ndarray]:
    """Pairs -> fixed-length rows: `tlm_ids` / `tlm_pos` / `tlm_seg` (the pair as one sequence,
    positions reset per side, segment 0/1), `a_ids` / `b_ids` (each side alone), `pair`."""
    from .pretrain import _tokenizer

    tok = _tokenizer(tokenizer_dir)
    start, end = special_ids(tok, objective == "causal_lm")
    pad = tok.pad_token_id
    src = tok(batch["src_text"].to_pylist(), add_special_tokens=False)["input_ids"]
    tgt = tok(batch["tgt_text"].to_pylist(), add_special_tokens=False)["input_ids"]
    n = len(src)
    tlm = np.full((n, seq_len), pad, np.int32)
    pos = np.zeros((n, seq_len), np.int32)
    seg = np.zeros((n, seq_len), np.int8)
    a = np.full((n, seq_len), pad, np.int32)
    b = np.full((n, seq_len), pad, np.int32)
    budget = seq_len - 3  # start, end of the source, end of the target
    for i, (s, t) in enumerate(zip(src, tgt)):
        # a long pair is cut to fit: each side gets half, a shorter side lends the other its rest
        n_s = min(len(s), max(budget // 2, budget - len(t)))
        left, right = [start, *s[:n_s]], [*t[: min(len(t), budget - n_s)], end]
        left.append(end)
        row = left + right
        tlm[i, : len(row)] = row
        pos[i, : len(left)] = np.arange(len(left))
        pos[i, len(left) : len(row)] = np.arange(len(right))
        seg[i, len(left) : len(row)] = 1
        for out, side in ((a, s), (b, t)):
            ids = [start, *side[: seq_len - 2], end]
            out[i, : len(ids)] = ids
    return {"tlm_ids": tlm, "tlm_pos": pos, "tlm_seg": seg, "a_ids": a, "b_ids": b,
            "pair": np.array(_pair_keys(batch), dtype=object)}


def pair_stream(manifest: dict, corpus_dir: str, total_rows: int, alpha: float | None, seed: int,
                tokenizer_dir: str, objective: str, seq_len: int, buffer_rows: int = 8192):
    """The whole pair stream of a run as one Ray Dataset (one pass is the run): each language
    pair drawn at its rate, shuffled chunk order, local shuffle window (`stream`)."""
    from .stream import mixed_stream

    plan = pair_plan(manifest, total_rows, alpha)
    files = [(join(corpus_dir, f["path"]), f["pair"]) for f in (manifest.get("parallel") or {}).get("files", [])
             if f["split"] == "train"]
    if not plan or not files:
        raise ValueError(f"{corpus_dir}: alignment objectives need translation pairs, and the manifest lists none "
                         f"(set corpus.parallel.inputs and prepare the corpus again)")
    pairs = manifest["parallel"]["pairs"]
    rates = {k: n / pairs[k]["train_rows"] for k, n in plan.items()}
    log.info("pretrain: pair mix for %d pairs over %d language pairs", total_rows, len(plan))
    ds = mixed_stream(files, rates, ["id", "src_lang", "tgt_lang", "src_text", "tgt_text"], seed + 1, buffer_rows,
                      corpus_dir)
    return ds.map_batches(tokenize_pairs, batch_size=256, batch_format="pyarrow",
                          fn_kwargs={"tokenizer_dir": tokenizer_dir, "objective": objective, "seq_len": seq_len})


# ---------------------------------------------------------------- objectives (training worker)


def position_offset(config) -> int:
    """First position id of the architecture: RoBERTa / XLM-R count from padding_idx + 1."""
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"):
        return config.pad_token_id + 1
    return 0


def uses_segments(config) -> bool:
    return getattr(config, "type_vocab_size", 0) >= 2


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Sentence vectors: mean of the token vectors under `mask`, or the first token's."""
    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def gather(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every worker's rows, in rank order, with gradients flowing back to their owners; and
    the offset of this worker's rows in the result. One worker: z itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, 0
    from torch.distributed._functional_collectives import all_gather_tensor_autograd, wait_tensor

    gathered = wait_tensor(all_gather_tensor_autograd(z.contiguous(), 0, dist.group.WORLD))
    return gathered, dist.get_rank() * z.size(0)


_KEY_WEIGHTS = torch.randint(1, 2**31 - 1, (4096,), generator=torch.Generator().manual_seed(12345))


def row_keys(ids: torch.Tensor) -> torch.Tensor:
    """A 64-bit key per row of token ids (equal rows, equal keys): tells identical sentences apart
    from different ones in a batch."""
    return (ids.long() * _KEY_WEIGHTS[: ids.size(1)].to(ids.device)).sum(dim=1)


def _gather_plain(x: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def contrastive_losses(za: torch.Tensor, zb: torch.Tensor, temperature: float, gather_negatives: bool = True,
                       keys_a: torch.Tensor | None = None, keys_b: torch.Tensor | None = None,
                       margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bidirectional InfoNCE per pair (mean of a->b and b->a cross-entropy over the global
    batch), and whether each pair's own translation scored highest (a->b).

    `margin` > 0 is LaBSE's additive margin softmax (Yang et al. 2019): the translation's cosine
    must beat every negative's by `margin`, not only reach it.

    With `keys_a` / `keys_b` (`row_keys` of the two sides), a candidate that is no negative is
    left out: one from a pair that shares a sentence with this pair, on either side (English-
    centric pairs repeat their English sentences: the French and the German translation of
    one English sentence are both right), which would otherwise teach the model to push apart
    correct translations, or the same sentence from itself."""
    za = torch.nn.functional.normalize(za.float(), dim=-1)
    zb = torch.nn.functional.normalize(zb.float(), dim=-1)
    all_a, offset = gather(za) if gather_negatives else (za, 0)
    all_b, _ = gather(zb) if gather_negatives else (zb, 0)
    target = torch.arange(za.size(0), device=za.device) + offset
    ab = za @ all_b.T / temperature
    ba = zb @ all_a.T / temperature
    if keys_a is not None and keys_b is not None:
        all_ka = _gather_plain(keys_a) if gather_negatives else keys_a
        all_kb = _gather_plain(keys_b) if gather_negatives else keys_b
        ka, kb = keys_a[:, None], keys_b[:, None]
        same = (ka == all_ka) | (kb == all_kb) | (ka == all_kb) | (kb == all_ka)  # pairs sharing a sentence
        same[torch.arange(za.size(0)), target] = False
        ab = ab.masked_fill(same, float("-inf"))
        ba = ba.masked_fill(same, float("-inf"))
    correct = ab.argmax(dim=1) == target
    if margin:
        own = torch.zeros_like(ab)
        own[torch.arange(za.size(0), device=za.device), target] = margin / temperature
        ab, ba = ab - own, ba - own
    ce = torch.nn.functional.cross_entropy
    loss = 0.5 * (ce(ab, target, reduction="none") + ce(ba, target, reduction="none"))
    return loss, correct
