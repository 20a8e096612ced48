"""Shard: Parquet shards per language and split, and the manifest that commits them.

Layout under the corpus directory:
    shards/<lang>/train-00000.parquet, shards/<lang>/heldout-00000.parquet, ...
    manifest.json   (written last: a shard not listed in it does not exist)

Per shard the manifest records rows, bytes and sha256; per language the totals and the
temperature-sampling weight q_i = p_i^alpha / sum_j p_j^alpha, where p_i is the language's
share of training text bytes.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from .config import ShardConfig
from .storage import join, remove, write_parquet

MANIFEST = "manifest.json"


MIN_DOCS_FOR_HELDOUT = 5


def heldout_mask(ids: list[str], fraction: float) -> list[bool]:
    """Deterministic held-out choice by a hash of the document id. A language with at least
    MIN_DOCS_FOR_HELDOUT documents always holds out one, so every language gets evaluated."""
    if fraction <= 0 or not ids:
        return [False] * len(ids)
    buckets = [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=4).digest(), "big") % 10_000 for i in ids]
    mask = [b < int(fraction * 10_000) for b in buckets]
    if not any(mask) and len(ids) >= MIN_DOCS_FOR_HELDOUT:
        mask[buckets.index(min(buckets))] = True
    return mask


def temperature_weights(sizes: dict[str, float], alpha: float) -> dict[str, float]:
    total = sum(sizes.values())
    if total <= 0:
        return {k: 0.0 for k in sizes}
    powered = {k: (v / total) ** alpha if v > 0 else 0.0 for k, v in sizes.items()}
    norm = sum(powered.values())
    return {k: v / norm for k, v in powered.items()}


def _text_bytes(table: pa.Table) -> int:
    if table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(pc.cast(table["text"], pa.binary()))).as_py() or 0)


def write_shards(docs: pa.Table, corpus_dir: str, cfg: ShardConfig) -> dict:
    """Write every language's shards; return the manifest body (not yet written)."""
    remove(join(corpus_dir, "shards"))  # a rerun rewrites every shard; stale files must not linger
    shards: list[dict] = []
    languages: dict[str, dict] = {}
    for lang in sorted(set(docs["lang"].to_pylist())):
        part = docs.filter(pc.equal(docs["lang"], lang))
        ids = part["id"].to_pylist()
        augmented = part["augmented"].to_pylist()
        held = [h and not a for h, a in zip(heldout_mask(ids, cfg.heldout_fraction), augmented)]
        held_arr = pa.array(held, pa.bool_())
        splits = {"train": part.filter(pc.invert(held_arr)), "heldout": part.filter(held_arr)}
        info = {"rows": part.num_rows, "augmented_rows": int(sum(augmented)), "shards": 0, "bytes": 0}
        for split_name, table in splits.items():
            info[f"{split_name}_rows"] = table.num_rows
            info[f"{split_name}_text_bytes"] = _text_bytes(table)
            for n, start in enumerate(range(0, table.num_rows, cfg.max_rows_per_shard)):
                chunk = table.slice(start, cfg.max_rows_per_shard)
                rel = f"shards/{lang}/{split_name}-{n:05d}.parquet"
                meta = write_parquet(join(corpus_dir, rel), chunk, compression=cfg.compression)
                shards.append({"path": rel, "lang": lang, "split": split_name, **meta})
                info["shards"] += 1
                info["bytes"] += meta["bytes"]
        languages[lang] = info
    weights = temperature_weights({k: v["train_text_bytes"] for k, v in languages.items()}, cfg.alpha)
    total_train = sum(v["train_text_bytes"] for v in languages.values()) or 1
    for lang, info in languages.items():
        info["share"] = round(info["train_text_bytes"] / total_train, 6)
        info["weight"] = round(weights[lang], 6)
    return {
        "alpha": cfg.alpha,
        "totals": {
            "rows": sum(v["rows"] for v in languages.values()),
            "bytes": sum(v["bytes"] for v in languages.values()),
            "shards": len(shards),
            "languages": len(languages),
        },
        "languages": languages,
        "shards": shards,
    }


def mixing_plan(manifest: dict, total_rows: int, alpha: float | None = None) -> dict[str, int]:
    """Rows to draw per language for a stream of `total_rows` training rows, by temperature
    sampling over the languages' training text (alpha from the manifest unless given).
    A language whose share exceeds its rows is repeated (upsampled); the others are subsampled."""
    langs = {k: v for k, v in manifest["languages"].items() if v.get("train_rows", 0) > 0}
    if alpha is None:
        weights = {k: v["weight"] for k, v in langs.items()}
    else:
        weights = temperature_weights({k: v["train_text_bytes"] for k, v in langs.items()}, alpha)
    plan = {k: int(w * total_rows) for k, w in weights.items()}
    # hand the rounding remainder to the largest weights, so the plan sums to total_rows
    for k in sorted(weights, key=lambda k: -weights[k])[: total_rows - sum(plan.values())]:
        plan[k] += 1
    return dict(sorted(plan.items()))


def shard_paths(manifest: dict, corpus_dir: str, split: str = "train", langs: list[str] | None = None) -> list[str]:
    return [
        join(corpus_dir, s["path"])
        for s in manifest["shards"]
        if s["split"] == split and (langs is None or s["lang"] in langs)
    ]
