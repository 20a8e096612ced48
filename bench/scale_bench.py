"""The corpus phase at 1x, 10x and 100x its input, and with 1, 2 and 4 Ray workers (issue 13).

    .venv/bin/python bench/scale_bench.py scales  [--base 6000] [--scales 1 10 100] [--workers 2]
    .venv/bin/python bench/scale_bench.py workers [--scale 10] [--workers 1 2 4]
    .venv/bin/python bench/scale_bench.py unit    [--docs 60000]
    .venv/bin/python bench/scale_bench.py dedup   [--scale 1]

Input: real text. `--base` (3,000) original documents of 6 random sentences of one language
of ../shared/data/lingua-sentences (75 languages, ~0.9 KB a document); the Nx corpus holds 2N
copies of them (x1: 6,000 documents), in files of 2,000 documents, every copy perturbed
document by document (seeded): a quarter are exact repeats of the original under a new id, a
quarter near copies (one of the six sentences replaced by another of the language), half new
documents (six other sentences), so dedup has work at every scale and the kept set grows with
the input.

Every run is `babelforge prepare` in a fresh driver process (`--child`), which writes its own
peak RSS (getrusage of that process alone); Ray's worker processes (`ray::*`) are sampled
every 0.2 s with psutil (peak RSS per worker, the maximum reported). Spill bytes, partitions
and stage seconds of the out-of-core dedup come from the report.

`unit`: one input file of `--docs` documents, one work unit (`run_unit`, what a Ray task
runs) in a fresh process, its peak RSS over that of a 200-document unit in the same languages:
what a unit costs per byte of its text, read in `ingest.batch_bytes` batches or in one. `dedup`: the committed units of the Nx corpus deduplicated by the in-memory reference
(`dedup.unique_ids` + `dedup.global_dedup`) and by the partitioned stages (local, and Ray
tasks), timed, with the decisions compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINGUA = ROOT.parent / "shared" / "data" / "lingua-sentences"
WORK = Path(os.environ.get("BENCH_DIR", "/tmp/babelforge-scale"))
PER_FILE = 2000


def pools() -> dict[str, list[str]]:
    return {f.stem: [l.strip() for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
            for f in sorted(LINGUA.glob("*.txt"))}


def build(out: Path, base: int, copies: int, seed: int = 0) -> tuple[int, int]:
    """The Nx corpus (module docstring); returns (documents, bytes of text)."""
    if (out / "_built.json").exists():
        meta = json.loads((out / "_built.json").read_text())
        return meta["docs"], meta["bytes"]
    out.mkdir(parents=True, exist_ok=True)
    p = pools()
    langs = sorted(p)
    rng = random.Random(seed)
    originals = []
    for _ in range(base):
        lang = rng.choice(langs)
        originals.append((lang, rng.sample(range(len(p[lang])), 6)))
    n, nbytes, f, k_file = 0, 0, None, 0
    for c in range(copies):
        crng = random.Random(seed * 1_000_003 + c)
        for j, (lang, sents) in enumerate(originals):
            r = crng.random()
            if r < 0.5:
                sents = crng.sample(range(len(p[lang])), 6)
            elif r < 0.75:
                sents = list(sents)
                sents[crng.randrange(6)] = crng.randrange(len(p[lang]))
            text = " ".join(p[lang][s] for s in sents)
            if n % PER_FILE == 0:
                if f:
                    f.close()
                f = open(out / f"part-{k_file:05d}.jsonl", "w", encoding="utf-8")
                k_file += 1
            line = json.dumps({"id": f"c{c}-d{j}", "text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            n += 1
            nbytes += len(text.encode())
    f.close()
    (out / "_built.json").write_text(json.dumps({"docs": n, "bytes": nbytes}))
    return n, nbytes


class WorkerRSS(threading.Thread):
    """Peak RSS of every Ray worker process (`ray::...`) seen while running."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        self.interval, self.peak, self.stop = interval, {}, threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            for proc in psutil.process_iter(["name", "cmdline"]):
                try:
                    title = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or ""
                    if title.startswith("ray::"):
                        rss = proc.memory_info().rss
                        self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.stop.wait(self.interval)


def child(argv: list[str], rss_file: str) -> None:
    """The driver: the real CLI in this process, then its own peak RSS."""
    from flows.cli import main

    rc = main(argv)
    Path(rss_file).write_text(json.dumps({"rc": rc, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def prepare(inputs: Path, out: Path, sets: list[str]) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    rss_file = str(out) + ".rss.json"
    argv = ["prepare", f"{inputs}/*.jsonl", "--out", str(out)] + [x for s in sets for x in ("--set", s)]
    sampler = WorkerRSS()
    sampler.start()
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", rss_file, *argv], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    sampler.stop.set()
    sampler.join()
    if proc.returncode:
        sys.exit(proc.stderr[-4000:])
    report = json.loads((out / "report.json").read_text())
    driver = json.loads(Path(rss_file).read_text())
    workers = sorted(sampler.peak.values(), reverse=True)
    return {"wall": round(wall, 1), "input": report["input"], "kept": report["kept"],
            "driver_mb": round(driver["peak_kb"] / 1024), "worker_mb": round(workers[0] / 2**20) if workers else None,
            "workers_seen": len(workers), "dedup": report.get("dedup", {}),
            "rejected_by_reason": report.get("rejected_by_reason", {}),
            "seconds": report.get("seconds", {})}


def ray_sets(workers: int, cpus: int = 4) -> list[str]:
    """A local Ray of `cpus` logical CPUs whose unit and dedup tasks reserve cpus/workers each:
    at most `workers` at a time."""
    return ["corpus.engine=ray", f"ray.local_num_cpus={cpus}", f"corpus.cpus_per_unit={cpus / workers}"]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def cmd_scales(args) -> None:
    rows = []
    for s in args.scales:
        docs, nbytes = build(WORK / f"in-x{s}", args.base, 2 * s)
        r = prepare(WORK / f"in-x{s}", WORK / f"out-x{s}", ray_sets(args.workers))
        r.update(scale=s, docs=docs, text_mb=nbytes / 1e6)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{machine()}; local Ray, {args.workers} workers (tasks of one work unit = one file of {PER_FILE} documents)")
    print("| input | documents | text MB | kept | wall s | docs/s | driver peak RSS MB | worker peak RSS MB "
          "| dedup partitions | spill MB | dedup s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d = r["dedup"]
        print(f"| x{r['scale']} | {r['docs']:,} | {r['text_mb']:.0f} | {r['kept']:,} | {r['wall']:.0f} | "
              f"{r['docs'] / r['wall']:.0f} | {r['driver_mb']} | {r['worker_mb']} | {d.get('partitions')} | "
              f"{d.get('spill_bytes', 0) / 1e6:.0f} | {d.get('seconds', {}).get('total', 0):.0f} |")
    for a, b in zip(rows, rows[1:]):
        per_doc = (b["driver_mb"] - a["driver_mb"]) * 2**20 / (b["docs"] - a["docs"])
        print(f"x{a['scale']} -> x{b['scale']}: driver peak RSS {b['driver_mb'] / a['driver_mb']:.2f}x, "
              f"{per_doc:.0f} bytes per added document")


def cmd_workers(args) -> None:
    docs, _ = build(WORK / f"in-x{args.scale}", args.base, 2 * args.scale)
    rows = []
    for w in args.workers:
        r = prepare(WORK / f"in-x{args.scale}", WORK / f"out-w{w}", ray_sets(w))
        r.update(workers=w)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{machine()}; x{args.scale} ({docs:,} documents), local Ray of 4 logical CPUs")
    print("| workers | wall s | docs/s | vs 1 worker | units s (sum) | dedup s | driver peak RSS MB | worker peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        unit_s = sum(v for k, v in r["seconds"].items() if k not in ("dedup", "shard", "augment", "parallel"))
        print(f"| {r['workers']} | {r['wall']:.0f} | {docs / r['wall']:.0f} | {rows[0]['wall'] / r['wall']:.2f}x | "
              f"{unit_s:.0f} | {r['dedup'].get('seconds', {}).get('total', 0):.0f} | {r['driver_mb']} | {r['worker_mb']} |")


def unit_child(uri: str, out: str, batch_bytes: int, result: str) -> None:
    """One work unit (`run_unit`, what a Ray task of `prepare` runs) in this fresh process,
    then its peak RSS."""
    from pipeline.config import CorpusConfig
    from pipeline.corpus import ingest
    from pipeline.corpus.prepare import run_unit

    cfg = CorpusConfig()
    cfg.ingest.batch_bytes = batch_bytes
    t = time.perf_counter()
    info = run_unit(ingest.Part(uri), out, cfg.model_dump(mode="json"))
    Path(result).write_text(json.dumps({"kept": info["kept"], "input": info["input"], "wall": time.perf_counter() - t,
                                        "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def cmd_unit(args) -> None:
    """Peak RSS of a process running one work unit of `--docs` documents vs. one of 200
    documents in the same languages (models and segmenters loaded alike): what a unit costs
    per byte of its text, with `corpus.ingest.batch_bytes` batches and in one batch."""
    import shutil

    p = pools()
    langs = sorted(p)
    rng = random.Random(1)
    rows = []
    for label, n in (("small", 200), ("unit", args.docs)):
        d = WORK / f"unit-{label}"
        d.mkdir(parents=True, exist_ok=True)
        nbytes = 0
        with open(d / "one.jsonl", "w", encoding="utf-8") as f:
            for j in range(n):
                lang = langs[j % len(langs)]
                text = " ".join(rng.sample(p[lang], 6))
                nbytes += len(text.encode())
                f.write(json.dumps({"id": f"{label}-{j}", "text": text}, ensure_ascii=False) + "\n")
        file_mb = (d / "one.jsonl").stat().st_size / 2**20
        for batch in args.batch_bytes:
            out = WORK / f"unit-out-{label}-{batch}"
            shutil.rmtree(out, ignore_errors=True)
            res = str(out) + ".json"
            proc = subprocess.run([sys.executable, __file__, "--unit-child", str(d / "one.jsonl"), str(out), str(batch), res],
                                  capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if proc.returncode:
                sys.exit(proc.stderr[-4000:])
            r = json.loads(Path(res).read_text())
            rows.append((label, n, nbytes / 2**20, file_mb, batch, r))
            print(label, n, batch, json.dumps(r), flush=True)
    base = {b: r["peak_kb"] / 1024 for label, _, _, _, b, r in rows if label == "small"}
    print(f"\n{machine()}; one work unit (`run_unit`) in a fresh process")
    print("| unit | documents | text MB | file MB | batches | seconds | peak RSS MB | over the 200-document unit MB | x text |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for label, n, text_mb, file_mb, b, r in rows:
        mb = r["peak_kb"] / 1024
        batches = f"{b >> 20} MB" if b < 1 << 30 else "one (whole unit)"
        over = f"{mb - base[b]:.0f} | {(mb - base[b]) / text_mb:.2f}" if label == "unit" else "- | -"
        print(f"| {label} | {n:,} | {text_mb:.2f} | {file_mb:.2f} | {batches} | {r['wall']:.1f} | {mb:.0f} | {over} |")


def reference_extras(units, decisions, renames, fraction):
    """What the in-memory path did besides `global_dedup` before the partitioned stages took
    over (the same outputs `dedup_partitioned` gives): cluster sizes of the kept documents
    and the forced held-out ids, from a pass over every unit's ids and languages."""
    from collections import Counter

    from pipeline.corpus.shard import ForcedHeldout
    from pipeline.storage import join, read_parquet

    def final(row):
        while row in decisions:
            row = decisions[row][1]
        return row

    sizes = Counter(final(r) for r in decisions)
    forced, offset = ForcedHeldout(fraction), 0
    for u in units:
        t = read_parquet(join(u["dir"], "docs.parquet"), ["id", "lang"])
        ids = [renames.get(offset + i, x) for i, x in enumerate(t["id"].to_pylist())]
        keep = [offset + i not in decisions for i in range(t.num_rows)]
        forced.add([l for l, k in zip(t["lang"].to_pylist(), keep) if k], [i for i, k in zip(ids, keep) if k])
        offset += t.num_rows
    return sizes, forced.ids


def cmd_dedup(args) -> None:
    """In-memory reference vs. partitioned stages on the same committed units."""
    import tempfile

    sys.path.insert(0, str(ROOT))
    from pipeline.config import CorpusConfig, RayConfig
    from pipeline.corpus import dedup, dedup_partitioned
    from pipeline.corpus.prepare import run_units
    from pipeline.storage import expand

    docs, _ = build(WORK / f"in-x{args.scale}", args.base, 2 * args.scale)
    out = WORK / f"dedup-x{args.scale}"
    cfg = CorpusConfig()
    cfg.engine = "local"
    units = run_units(expand([f"{WORK / f'in-x{args.scale}'}/*.jsonl"]), str(out), cfg)  # committed once, then reused
    cfg.dedup.partitions = args.partitions
    from pipeline.training.raytrain import init_ray

    init_ray(RayConfig())
    import ray

    @ray.remote
    def warm() -> int:  # in `prepare` the workers are warm from the units: import as they have
        import pipeline.corpus.dedup_partitioned  # noqa: F401

        return os.getpid()

    ray.get([warm.remote() for _ in range(8)])
    best: dict[str, float] = {}
    removed: dict[str, int] = {}
    for _ in range(args.repeat):  # interleaved, the fastest of each kept: this machine's noise is ~20%
        t = time.perf_counter()
        renames = dedup.unique_ids(units)
        ref = dedup.global_dedup(units, cfg, renames)
        reference_extras(units, ref, renames, cfg.shard.heldout_fraction)
        name = "in-memory (`unique_ids` + `global_dedup` + held-out + sizes)"
        best[name] = min(best.get(name, 1e9), time.perf_counter() - t)
        removed[name] = len(ref)
        ref = {r: (d[0], d[3]) for r, d in ref.items()}
        for engine in ("local", "ray"):
            spill = tempfile.mkdtemp(prefix="spill-", dir=WORK)
            res = dedup_partitioned.dedup(units, cfg, spill, engine, cfg.shard.heldout_fraction)
            got = {r: (d[0], d[3]) for r, d in res.as_dict().items()}
            assert got == ref, f"{engine}: decisions differ from the in-memory reference"
            where = "in-process" if engine == "local" or res.stats["partitions"] == 1 else "Ray tasks"
            name = (f"partitioned, engine {engine}: {where} ({res.stats['partitions']} partitions, "
                    f"{res.stats['spill_bytes'] / 1e6:.0f} MB spilled)")
            best[name] = min(best.get(name, 1e9), res.stats["seconds"]["total"])
            removed[name] = len(got)
            res.cleanup()
            os.rmdir(spill)
    rows = [(name, best[name], removed[name]) for name in best]
    print(f"\n{machine()}; x{args.scale}: {docs:,} documents, {sum(u['kept'] for u in units):,} after the unit stages")
    print("| dedup | seconds (best of {}) | vs in-memory | documents removed | same decisions |".format(args.repeat))
    print("|---|---:|---:|---:|---|")
    for name, s, n in rows:
        print(f"| {name} | {s:.2f} | {s / rows[0][1]:.2f}x | {n:,} | {'reference' if n == rows[0][2] and name.startswith('in') else 'yes'} |")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--unit-child":
        sys.path.insert(0, str(ROOT))
        return unit_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        return child(sys.argv[3:], sys.argv[2])
    if not LINGUA.is_dir():
        sys.exit(f"needs {LINGUA}")
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("scales")
    p.add_argument("--base", type=int, default=3000)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--workers", type=int, default=2)
    p = sub.add_parser("workers")
    p.add_argument("--base", type=int, default=3000)
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p = sub.add_parser("unit")
    p.add_argument("--docs", type=int, default=60000)
    p.add_argument("--batch-bytes", type=int, nargs="+", default=[8 << 20, 2 << 20, 1 << 40])
    p = sub.add_parser("dedup")
    p.add_argument("--base", type=int, default=3000)
    p.add_argument("--scale", type=int, default=1)
    p.add_argument("--partitions", type=int, default=0, help="0: from corpus.dedup.partition_rows")
    p.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    {"scales": cmd_scales, "workers": cmd_workers, "unit": cmd_unit, "dedup": cmd_dedup}[args.cmd](args)


if __name__ == "__main__":
    main()
