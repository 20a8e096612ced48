"""The one document schema every stage takes and returns, and the rejects schema.

Stages are pure functions of Arrow tables: `stage(docs) -> (kept, rejects)`. A rejected row
keeps its id, text, source and language with the stage and reason that dropped it, so
rows in = rows kept + rows rejected holds at every step and per language.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

DOC_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        pa.field("lang_top", pa.list_(pa.struct([("lang", pa.string()), ("score", pa.float32())]))),
        pa.field("script", pa.string()),
        pa.field("source", pa.string()),
        pa.field("augmented", pa.bool_()),
        pa.field("origin_id", pa.string()),
        pa.field("cluster_size", pa.int32()),  # documents this row stands for after dedup
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("text", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("source", pa.string()),
        pa.field("augmented", pa.bool_()),
        pa.field("duplicate_of", pa.string()),  # dedup: the id of the document kept instead
    ]
)

# Translation pairs (pipeline/corpus/parallel.py): one row per pair, each side with its language
# (canonical label), language-ID score and script.
PAIR_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("src_lang", pa.string()),
        pa.field("tgt_lang", pa.string()),
        pa.field("src_text", pa.string()),
        pa.field("tgt_text", pa.string()),
        pa.field("src_score", pa.float32()),
        pa.field("tgt_score", pa.float32()),
        pa.field("src_script", pa.string()),
        pa.field("tgt_script", pa.string()),
        pa.field("source", pa.string()),
        pa.field("synthetic", pa.bool_()),  # machine-made (back-translation): never a held-out pair
        pa.field("origin_id", pa.string()),  # synthetic: the document it was translated from
    ]
)

PAIR_REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("src_lang", pa.string()),
        pa.field("tgt_lang", pa.string()),
        pa.field("src_text", pa.string()),
        pa.field("tgt_text", pa.string()),
        pa.field("source", pa.string()),
        pa.field("synthetic", pa.bool_()),
    ]
)

UNKNOWN_LANG = "und"


def empty_docs() -> pa.Table:
    return DOC_SCHEMA.empty_table()


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def make_docs(
    ids: list[str],
    texts: list[str],
    sources: list[str],
    *,
    lang: list[str | None] | None = None,
    augmented: bool = False,
    origin_ids: list[str | None] | None = None,
) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "text": pa.array(texts, pa.string()),
            "lang": pa.array(lang if lang is not None else [None] * n, pa.string()),
            "lang_score": pa.nulls(n, pa.float32()),
            "lang_top": pa.nulls(n, DOC_SCHEMA.field("lang_top").type),
            "script": pa.nulls(n, pa.string()),
            "source": pa.array(sources, pa.string()),
            "augmented": pa.array([augmented] * n, pa.bool_()),
            "origin_id": pa.array(origin_ids if origin_ids is not None else [None] * n, pa.string()),
            "cluster_size": pa.array([1] * n, pa.int32()),
        },
        schema=DOC_SCHEMA,
    )


def rejects_from_docs(docs: pa.Table, stage: str, reasons: list[str], details: list[str | None] | None = None,
                      duplicate_of: list[str] | None = None) -> pa.Table:
    """Turn rejected document rows into reject rows with a stage and a reason per row."""
    n = docs.num_rows
    return pa.table(
        {
            "id": docs["id"],
            "stage": pa.array([stage] * n, pa.string()),
            "reason": pa.array(reasons, pa.string()),
            "detail": pa.array(details if details is not None else [None] * n, pa.string()),
            "text": docs["text"],
            "lang": docs["lang"],
            "source": docs["source"],
            "augmented": docs["augmented"],
            "duplicate_of": pa.array(duplicate_of if duplicate_of is not None else [None] * n, pa.string()),
        },
        schema=REJECT_SCHEMA,
    )


def make_rejects(rows: list[dict]) -> pa.Table:
    """Reject rows built outside a document table (ingest errors): dicts with schema keys."""
    if not rows:
        return empty_rejects()
    cols = {f.name: [r.get(f.name) for r in rows] for f in REJECT_SCHEMA}
    cols["augmented"] = [bool(v) for v in cols["augmented"]]
    return pa.table(cols, schema=REJECT_SCHEMA)


def split(docs: pa.Table, keep_mask: list[bool] | pa.Array) -> tuple[pa.Table, pa.Table]:
    """Split a table by a boolean mask into (kept, dropped)."""
    mask = pa.array(keep_mask, pa.bool_()) if not isinstance(keep_mask, pa.Array) else keep_mask
    return docs.filter(mask), docs.filter(pc.invert(mask))


def concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t for t in tables if t is not None and t.num_rows]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.cast(schema) for t in tables])
