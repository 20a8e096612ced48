"""Training streams without a global shuffle: shuffled chunk order plus a local shuffle window.

The corpus is written as Parquet shards per language (documents) or per language pair
(translation pairs), in row groups of ~1,000 rows. A training stream must mix languages in
every batch, follow the temperature plan (each key drawn at its rate: a rate of 2.5 repeats a
row 2.5 times on average, 0.3 keeps it with probability 0.3) and be the same on every run, so
that a resumed run skips exactly what it trained on. A global `random_shuffle` gives all that
but reads and moves the whole stream before the first batch (an all-to-all exchange whose
memory and time grow with the corpus). Here, as in WebDataset / MosaicML streaming:

1. **chunks**: every row group of every shard is a chunk (path, row group, rows, key), read
   from the Parquet footers: the driver holds one small record per ~1,000 rows, no text;
2. **visits**: a chunk whose key has rate r is visited ceil(r) times, each visit keeping a row
   with probability r / ceil(r) (seeded by the chunk and the visit, so the choice does not
   depend on anything else); the visits are put in a seeded random order, so the copies of an
   upsampled row land far apart and every language appears all along the stream;
3. **windows**: consecutive visits are grouped until a window holds about `buffer_rows` rows;
   one Ray Data task per window reads its row groups and shuffles the rows among them (seeded
   by the window): the local shuffle buffer. A batch mixes the ~`buffer_rows / 1000` chunks
   of its window, i.e. that many languages or language pairs at once.

Memory: the driver holds the chunk list; a read task one window; nothing holds the stream.
The output is a pure function of (shards, rates, seed, buffer_rows): Ray Data keeps the window
order (`preserve_order`) and Ray Train's equal split deals blocks out by rows, so each worker
sees the same batches on every run, and a resume at step s skips exactly s batches.
"""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..storage import get_fs


def chunks(files: list[tuple[str, str]], root: str = "") -> list[dict]:
    """(uri, key) of each shard -> one record per row group: uri, row group, rows, key, and
    the shard's name (its uri below `root`, the corpus folder) that seeds the rows it keeps:
    the stream does not depend on where the corpus lies (one node's disk or a bucket)."""
    out = []
    for uri, key in files:
        name = uri[len(root):].lstrip("/") if root and uri.startswith(root) else uri
        fs, path = get_fs(uri)
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        out += [{"uri": uri, "name": name, "rg": g, "rows": meta.row_group(g).num_rows, "key": key}
                for g in range(meta.num_row_groups) if meta.row_group(g).num_rows]
    return out


def windows(chunk_list: list[dict], rates: dict[str, float], seed: int, buffer_rows: int) -> list[list[dict]]:
    """Visits of the chunks (ceil(rate) each, keep probability rate / ceil(rate)) in a seeded
    random order, grouped into windows of about `buffer_rows` expected rows."""
    visits = []
    for c in chunk_list:
        rate = rates.get(c["key"], 0.0)
        n = math.ceil(rate)
        visits += [{**c, "visit": v, "keep": rate / n} for v in range(n)]
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(visits))
    out, cur, rows = [], [], 0.0
    for i in order:
        cur.append(visits[i])
        rows += visits[i]["rows"] * visits[i]["keep"]
        if rows >= buffer_rows:
            out.append(cur)
            cur, rows = [], 0.0
    if cur:
        out.append(cur)
    return out


def read_window(visits: list[dict], columns: list[str], seed: int, window: int) -> pa.Table:
    """The rows a window's visits keep, shuffled among themselves."""
    parts = []
    for v in visits:
        fs, path = get_fs(v["uri"])
        with fs.open(path, "rb") as f:
            t = pq.ParquetFile(f).read_row_group(v["rg"], columns=columns)
        if v["keep"] < 1.0:
            rng = np.random.default_rng([seed, zlib.crc32(v["name"].encode()), v["rg"], v["visit"]])
            t = t.filter(pa.array(rng.random(t.num_rows) < v["keep"]))
        parts.append(t)
    table = pa.concat_tables(parts)
    return table.take(np.random.default_rng([seed, window]).permutation(table.num_rows))


def _read_windows(batch: dict, columns: list[str], seed: int) -> pa.Table:
    return pa.concat_tables([read_window(json.loads(v), columns, seed, int(w))
                             for w, v in zip(batch["window"], batch["visits"])])


def mixed_stream(files: list[tuple[str, str]], rates: dict[str, float], columns: list[str], seed: int,
                 buffer_rows: int, root: str = ""):
    """A Ray Dataset of the rows of `files` ((uri, key) pairs) drawn at their key's rate, in
    shuffled chunk order with a local shuffle window of ~`buffer_rows` rows (module docstring)."""
    import ray.data

    # blocks are otherwise handed on in completion order, which changes the stream run to run
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    groups = windows(chunks(files, root), rates, seed, buffer_rows)
    items = [{"window": i, "visits": json.dumps(w)} for i, w in enumerate(groups)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return ds.map_batches(_read_windows, batch_size=1, batch_format="numpy",
                          fn_kwargs={"columns": columns, "seed": seed})
