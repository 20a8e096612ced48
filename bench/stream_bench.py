"""Training stream without a global shuffle vs. Ray Data's `random_shuffle`, same work.

    .venv/bin/python bench/stream_bench.py --corpus runs/xling-s5/corpus [--rows 130000] [--copies 1]

Both streams draw every language at its rate of the temperature plan from the corpus's
training shards and hand rows on in a seeded order; they differ in how the order is made:

    shuffle   read_parquet -> per-row resampling (map_batches) -> random_shuffle (all-to-all:
              every row is read and exchanged before the first comes out): the previous
              babelforge stream, and Ray Data's standard recipe
    chunks    pipeline.training.stream.mixed_stream: row groups in a seeded order, rows
              shuffled within windows of pretrain.shuffle_buffer (default 8,192)

Reports seconds to the first batch, seconds for the whole stream, rows/s, the number of
languages in the first batch of 16, and the driver's peak RSS. With --copies N the corpus's
training shards are repeated N times (new ids), to see how each grows with the corpus.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.corpus.shard import mixing_plan  # noqa: E402
from pipeline.training.stream import mixed_stream  # noqa: E402


def resample(batch: pa.Table, rates: dict, seed: int) -> pa.Table:
    if batch.num_rows == 0:
        return batch
    rng = np.random.default_rng([seed, zlib.crc32(str(batch["id"][0]).encode())])
    rate = np.array([rates.get(k, 0.0) for k in batch["lang"].to_pylist()])
    copies = np.floor(rate).astype(np.int64) + (rng.random(batch.num_rows) < rate - np.floor(rate))
    return batch.take(np.repeat(np.arange(batch.num_rows), copies))


def run(kind: str, files, rates, seed: int, buffer_rows: int) -> dict:
    import ray.data

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    t0 = time.perf_counter()
    if kind == "shuffle":
        ds = ray.data.read_parquet([f for f, _ in files], columns=["id", "text", "lang"])
        ds = ds.map_batches(resample, fn_kwargs={"rates": rates, "seed": seed}, batch_format="pyarrow")
        ds = ds.random_shuffle(seed=seed)
    else:
        ds = mixed_stream(files, rates, ["id", "text", "lang"], seed, buffer_rows)
    first, rows, langs = None, 0, 0
    for batch in ds.iter_batches(batch_size=16, batch_format="pyarrow"):
        if first is None:
            first = time.perf_counter() - t0
            langs = len(set(batch["lang"].to_pylist()))
        rows += batch.num_rows
    total = time.perf_counter() - t0
    return {"stream": kind, "first_batch_s": round(first, 2), "total_s": round(total, 2), "rows": rows,
            "rows_per_s": round(rows / total), "languages_in_first_batch": langs}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--rows", type=int, default=130_000, help="stream length (rows of the temperature plan)")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--buffer", type=int, default=8192)
    ap.add_argument("--only", choices=["shuffle", "chunks"])
    a = ap.parse_args()
    import ray

    manifest = json.loads(Path(a.corpus, "manifest.json").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    files = []
    for s in manifest["shards"]:
        if s["split"] != "train":
            continue
        src = Path(a.corpus, s["path"])
        if a.copies == 1:
            files.append((str(src), s["lang"]))
            continue
        t = pq.read_table(src)
        for c in range(a.copies):
            out = tmp / f"{c}-{src.parent.name}-{src.name}"
            ids = pa.array([f"{c}:{i}" for i in t["id"].to_pylist()])
            pq.write_table(t.set_column(t.schema.get_field_index("id"), "id", ids), out, row_group_size=1000)
            files.append((str(out), s["lang"]))
    langs = {k: {**v, "train_rows": v["train_rows"] * a.copies} for k, v in manifest["languages"].items()}
    plan = mixing_plan({**manifest, "languages": langs}, a.rows, a.alpha)
    rates = {k: n / langs[k]["train_rows"] for k, n in plan.items()}
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        results = [run(kind, files, rates, 0, a.buffer) for kind in ("shuffle", "chunks") if a.only in (None, kind)]
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    for r in results:
        r["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps({"corpus_train_rows": sum(v["train_rows"] for v in langs.values()), **r}))


if __name__ == "__main__":
    main()
