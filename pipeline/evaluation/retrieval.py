"""Sentence retrieval on held-out translation pairs (XTREME's Tatoeba / BUCC-style task): for
each language pair, every source sentence's vector is compared by cosine similarity with the
vectors of all target sentences of that pair's held-out set, and it counts as found when its
own translation is the nearest; both directions, per language pair. Sentence vectors are the
mean of a layer's token vectors (the last by default, as the contrastive objective trains
them), so an encoder trained without any alignment objective is measured the same way.

Candidates are the held-out pairs of the language pair (`corpus.parallel.heldout_fraction`
of it, never trained on); chance is 1 / candidates, reported next to the accuracy.

Beside the plain cosine criterion (XTREME's Tatoeba task) each pair is also scored by the
ratio margin of Artetxe & Schwenk (2019), the criterion LASER and LaBSE mine bitext with: a
candidate's cosine divided by the mean cosine of both sides' k nearest neighbours (k = 4, the
paper's). It discounts "hubs", vectors that are near everything, which cosine nearest-neighbour
search keeps returning; the gap between the two figures shows how much of a model's retrieval
error is hubness rather than missing alignment. `accuracy` and `macro_accuracy` stay the cosine
figures; the margin ones are `margin_accuracy` and `macro_margin_accuracy`.

Pairs from different collections are different test sets (XTREME keeps Tatoeba apart from
BUCC): short conversational sentences and long legal paragraphs are not one candidate pool.
A pair's collection is the folder its file came from (`tatoeba`, `udhr`); with one collection
the report has one section, `retrieval`, and with several one per collection,
`retrieval_<collection>` (`retrieval_sections`).
"""

from __future__ import annotations

import logging
import posixpath
import re

import torch

from ..corpus.parallel import read_pairs
from ..storage import local_dir
from ..training.alignment import pool, special_ids

log = logging.getLogger(__name__)


def load_encoder(model_dir: str):
    """The model's body (no LM head) and tokenizer from a saved masked- or causal-LM directory."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(local_dir(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(local_dir(model_dir), local_files_only=True).eval()
    return model, tok


@torch.inference_mode()
def embed(model, tok, texts: list[str], max_length: int, causal: bool, pooling: str = "mean", layer: int = -1,
          batch_size: int = 64) -> torch.Tensor:
    """L2-normalised sentence vectors, each sentence framed as in training ([CLS] s [SEP])."""
    start, end = special_ids(tok, causal)
    ids = tok(list(texts), add_special_tokens=False, truncation=True, max_length=max_length - 2)["input_ids"]
    out = []
    for b in range(0, len(ids), batch_size):
        rows = [[start, *x, end] for x in ids[b : b + batch_size]]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
        mask = (input_ids != tok.pad_token_id).long()
        hidden = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
        out.append(torch.nn.functional.normalize(pool(hidden, mask, pooling).float(), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 1)


MARGIN_K = 4  # neighbours in the ratio margin (Artetxe & Schwenk 2019, and LASER's mining, use 4)


def ratio_margin(sim: torch.Tensor, k: int = MARGIN_K) -> torch.Tensor:
    """Ratio-margin scores of a cosine matrix (rows: side a, columns: side b): cos(x, y) over
    (mean of x's k best cosines on side b + mean of y's k best on side a) / 2, k capped at the
    candidates there are. The denominator is floored at 1e-6 (nearest neighbours' cosines are
    positive for any sentence encoder; the floor only keeps a degenerate matrix finite)."""
    near_a = sim.topk(min(k, sim.shape[1]), dim=1).values.mean(1, keepdim=True)
    near_b = sim.topk(min(k, sim.shape[0]), dim=0).values.mean(0, keepdim=True)
    return sim / ((near_a + near_b) / 2).clamp(min=1e-6)


BLOCK_CELLS = 1 << 24  # similarities held at once by `accuracy` (64 MB of float32)


def accuracy(za: torch.Tensor, zb: torch.Tensor, margin: bool = False,
             block_cells: int = BLOCK_CELLS) -> tuple[float, float]:
    """(a->b, b->a) share of rows whose best row on the other side is their own: by cosine, or
    by ratio margin (`margin`). Computed a block of query rows against all candidates at a
    time (about `block_cells` similarities), never the n x n matrix (100k pairs: 40 GB, twice
    with the margin): a->b takes each block's row maxima, b->a keeps each column's best row so
    far (the first on ties, as argmax does), and the margin's neighbour means come from a first
    pass (rows' k best per block, columns' k best merged across blocks). The figures are those
    of the whole matrix (`ratio_margin`)."""
    n, m = len(za), len(zb)
    step = max(1, block_cells // max(m, 1))
    blocks = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    if margin:
        k_a, k_b = min(MARGIN_K, m), min(MARGIN_K, n)
        near_a, top_b = [], None
        for lo, hi in blocks:
            sim = za[lo:hi] @ zb.T
            near_a.append(sim.topk(k_a, dim=1).values.mean(1, keepdim=True))
            top = sim.topk(min(k_b, hi - lo), dim=0).values
            if top_b is not None:  # the columns' k best so far and this block's
                top = torch.cat([top_b, top]).topk(min(k_b, len(top_b) + len(top)), dim=0).values
            top_b = top
        near_a, near_b = torch.cat(near_a), top_b.mean(0, keepdim=True)
    hits_ab = []
    best = torch.full((m,), -torch.inf)
    best_row = torch.zeros(m, dtype=torch.long)
    for lo, hi in blocks:
        sim = za[lo:hi] @ zb.T
        if margin:
            sim = sim / ((near_a[lo:hi] + near_b) / 2).clamp(min=1e-6)
        hits_ab.append(sim.argmax(1) == torch.arange(lo, hi))
        rows = sim.argmax(0)
        value = sim.gather(0, rows[None])[0]
        better = value > best
        best, best_row = torch.where(better, value, best), torch.where(better, rows + lo, best_row)
    hits_ab = torch.cat(hits_ab) if hits_ab else torch.zeros(0, dtype=torch.bool)
    return float(hits_ab.float().mean()), float((best_row == torch.arange(n)).float().mean())


def evaluate_retrieval(model_dir: str, manifest: dict, corpus_dir: str, max_length: int, causal: bool = False,
                       pooling: str = "mean", layer: int = -1, min_pairs: int = 10, pairs=None, encoder=None) -> dict:
    """Per language pair: held-out pairs, accuracy both ways, their mean, chance. The overall
    figure is the macro average over language pairs with at least `min_pairs` pairs. `pairs`:
    a table of pairs to test on instead of the corpus's held-out split (a dev split); `encoder`:
    (model, tokenizer) already loaded from `model_dir`."""
    section = manifest.get("parallel") or {}
    if not section.get("pairs"):
        return {}
    model, tok = encoder or load_encoder(model_dir)
    by_key: dict[str, list[dict]] = {}
    table = read_pairs(manifest, corpus_dir, "heldout") if pairs is None else pairs
    for r in table.select(["src_lang", "tgt_lang", "src_text", "tgt_text"]).to_pylist():
        by_key.setdefault("-".join(sorted((r["src_lang"], r["tgt_lang"]))), []).append(r)
    out: dict[str, dict] = {}
    for key in sorted(section["pairs"]):
        a, b = key.split("-", 1)
        rows = by_key.get(key, [])
        if len(rows) < min_pairs:
            continue
        # orient every pair a -> b (labels in key order), whatever direction its file had
        side_a = [r["src_text"] if r["src_lang"] == a else r["tgt_text"] for r in rows]
        side_b = [r["tgt_text"] if r["src_lang"] == a else r["src_text"] for r in rows]
        za = embed(model, tok, side_a, max_length, causal, pooling, layer)
        zb = embed(model, tok, side_b, max_length, causal, pooling, layer)
        ab, ba = accuracy(za, zb)
        mab, mba = accuracy(za, zb, margin=True)
        out[key] = {"pairs": len(rows), f"{a}->{b}": round(ab, 4), f"{b}->{a}": round(ba, 4),
                    "accuracy": round((ab + ba) / 2, 4), "margin_accuracy": round((mab + mba) / 2, 4),
                    "chance": round(1 / len(rows), 4)}
    macro = sum(v["accuracy"] for v in out.values()) / len(out) if out else 0.0
    macro_margin = sum(v["margin_accuracy"] for v in out.values()) / len(out) if out else 0.0
    log.info("retrieval: macro accuracy %.3f by cosine, %.3f by ratio margin, over %d language pairs (%d held-out "
             "pairs, both directions)", macro, macro_margin, len(out), table.num_rows)
    return {"pooling": pooling, "layer": layer, "macro_accuracy": round(macro, 4),
            "macro_margin_accuracy": round(macro_margin, 4), "margin_k": MARGIN_K, "pairs": out}


def language_of(key: str, pivot: str | None = None) -> str:
    """The language a pair stands for in per-language tables: the side that is not the pivot."""
    a, b = key.split("-", 1)
    return b if a == pivot else a if b == pivot else key


def collection_of(source: str) -> str:
    """The collection a pair belongs to: the name of the folder its file came from."""
    name = posixpath.basename(posixpath.dirname(source.replace("\\", "/"))) or "pairs"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def retrieval_sections(model_dir: str, manifest: dict, corpus_dir: str, max_length: int, causal: bool = False,
                       pooling: str = "mean", layer: int = -1) -> dict[str, dict]:
    """Retrieval per collection of held-out pairs: {"retrieval": ...} for one collection,
    {"retrieval_<collection>": ...} for each of several (each with its `collection`)."""
    import pyarrow as pa

    if not (manifest.get("parallel") or {}).get("pairs"):
        return {}
    table = read_pairs(manifest, corpus_dir, "heldout")
    names = [collection_of(x) for x in table["source"].to_pylist()]
    collections = sorted(set(names))
    encoder = load_encoder(model_dir)
    out = {}
    for name in collections:
        part = table if len(collections) == 1 else table.filter(pa.array([n == name for n in names]))
        result = evaluate_retrieval(model_dir, manifest, corpus_dir, max_length, causal, pooling, layer, pairs=part,
                                    encoder=encoder)
        if result.get("pairs"):
            out["retrieval" if len(collections) == 1 else f"retrieval_{name}"] = {**result, "collection": name}
    return out


def sections_of(report: dict) -> list[tuple[str, dict]]:
    """The retrieval sections of an evaluation report, in name order."""
    return [(k, v) for k, v in sorted(report.items()) if (k == "retrieval" or k.startswith("retrieval_"))
            and isinstance(v, dict) and v.get("pairs")]


def collection_suffix(name: str, section: dict) -> str:
    """' (udhr)' for a section of one of several collections, '' for the only one."""
    return f" ({section['collection']})" if name != "retrieval" else ""
