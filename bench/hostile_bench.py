"""Hostile input against the targets of issue 31 (item 3): "a 2 MB token and a 1 MB id: their
unit finishes within 2x its normal time; a 200 MB one-line file: peak memory of its task under
2x the configured batch bytes plus models".

    .venv/bin/python bench/hostile_bench.py [--docs 4000] [--normal-mb 64] [--line-mb 200]

Normal text: `--docs` documents of 6 random real sentences of one of 75 languages
(../shared/data/lingua-sentences, ~0.9 KB a document), seeded. Every case runs in a fresh
process (`--child`) that first runs the same stages on a small warm-up file (language-ID
models, segmenters and imports loaded), so its figures are the case's own; the corpus config
is the default (`CorpusConfig()`, in-process engine) unless the row says otherwise.

  token  the normal file, and the same with one more document holding a 2 MB token (`-` between
         two letters: the input on which `P+$` restarted at every character), through `run_unit`
         (one work unit: ingest, normalise, language ID, filters, MinHash). With the default
         limits that document is rejected at ingest (document_too_long); with max_document_chars
         raised to 4M it goes through every unit stage (the worst case for the text handling).
  id     the same with one more document under a 1 MB id of `~1` suffixes (the input on which
         `(~\\d+)+$` restarted at every `~`), through the whole `prepare` (ids are used by dedup,
         after the units). Default: id_too_long at ingest; max_id_chars raised to 2M: the id goes
         through dedup's id stage and into the shards.
  line   one file of a single 200 MB line, a normal unit of `--normal-mb` MB (64 MB is
         `unit_bytes`, the largest unit a normal file is cut into) and a unit of one document
         (the fixed cost of any unit), through `run_unit`: peak RSS of the process during the
         unit over its RSS before it (models loaded: /proc VmHWM reset through
         /proc/self/clear_refs), against 2 x `batch_bytes`.
  old    the replaced regular expressions timed on 8k, 16k and 32k-character inputs and
         extrapolated quadratically to 2 MB / 1 MB (they cannot be run to the end), against the
         linear code on the full size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINGUA = ROOT.parent / "shared" / "data" / "lingua-sentences"
WORK = Path(os.environ.get("BENCH_DIR", "/tmp/babelforge-hostile"))
TOKEN = "x" + "-" * (2 << 20) + "y."
HOSTILE_ID = "d" + "~1" * (1 << 19)  # 1 MB


def normal_docs(n: int, seed: int = 0) -> list[dict]:
    pools = {f.stem: [l.strip() for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
             for f in sorted(LINGUA.glob("*.txt"))}
    langs, rng = sorted(pools), random.Random(seed)
    return [{"id": f"n{j}", "text": " ".join(rng.sample(pools[langs[j % len(langs)]], 6))} for j in range(n)]


def write_jsonl(path: Path, docs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return path


def write_line(path: Path, mb: int) -> Path:
    """A .jsonl of one `mb` MB line (a JSON document), written in 1 MB chunks."""
    chunk = ("Bonjour " * (1 << 17)).encode()
    with open(path, "wb") as f:
        f.write(b'{"id": "big", "text": "')
        for _ in range(mb):
            f.write(chunk)
        f.write(b'"}\n')
    return path


def _status(key: str) -> int:
    """A /proc/self/status figure in KB (VmRSS, VmHWM)."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def child(mode: str, uri: str, out: str, overrides: str, result: str) -> None:
    """One case in this process: warm up on a small file, then the unit (`run_unit`) or the
    whole `prepare` on `uri`, timed, with the peak RSS over the RSS before it."""
    import gc

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.config import CorpusConfig
    from pipeline.corpus import ingest
    from pipeline.corpus.prepare import prepare, run_unit

    cfg = CorpusConfig()
    cfg.engine = "local"
    for key, value in json.loads(overrides).items():
        setattr(cfg.ingest, key, value)
    warm = write_jsonl(Path(out + "-warm") / "warm.jsonl", normal_docs(150, seed=9))  # every language twice
    prepare([str(warm)], out + "-warm-out", cfg) if mode == "prepare" else \
        run_unit(ingest.Part(str(warm)), out + "-warm-out", cfg.model_dump(mode="json"))
    gc.collect()
    pa.default_memory_pool().release_unused()
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
    before = _status("VmRSS")
    t = time.perf_counter()
    if mode == "prepare":
        report = prepare([uri], out, cfg)
        reasons, kept, n_input = report["rejected_by_reason"], report["kept"], report["input"]
    else:
        info = run_unit(ingest.Part(uri), out, cfg.model_dump(mode="json"))
        rejects = pq.read_table(f"{info['dir']}/rejects.parquet", columns=["reason"])["reason"].to_pylist()
        reasons = {r: rejects.count(r) for r in sorted(set(rejects))}
        kept, n_input = info["kept"], info["input"]
    wall = time.perf_counter() - t
    Path(result).write_text(json.dumps({"wall": wall, "peak_mb": (_status("VmHWM") - before) / 1024,
                                        "rss_before_mb": before / 1024, "kept": kept, "input": n_input,
                                        "rejected": reasons, "batch_mb": cfg.ingest.batch_bytes / 2**20}))


def run_case(name: str, mode: str, path: Path, overrides: dict | None = None) -> dict:
    import shutil

    out = WORK / f"out-{name}"
    for p in (out, Path(f"{out}-warm-out")):
        shutil.rmtree(p, ignore_errors=True)
    result = WORK / f"{name}.json"
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(path), str(out), json.dumps(overrides or {}),
                           str(result)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        sys.exit(f"{name}: {proc.stderr[-4000:]}")
    r = json.loads(result.read_text())
    print(name, json.dumps(r), flush=True)
    return r


def old_regexes() -> list[tuple[str, list[float], float, float]]:
    """(input, old times at 8k/16k/32k, old extrapolated to the full size, new at the full size)."""
    from pipeline.corpus import dedup_partitioned, profiles

    punct = profiles._punctuation_class()
    old_edges, old_suffix = re.compile(f"^{punct}+|{punct}+$"), re.compile(r"(~\d+)+$")

    def timed(f, *args) -> float:
        t = time.perf_counter()
        f(*args)
        return time.perf_counter() - t

    rows = []
    for label, old, new, make, full in (
        ("2 MB token, edge punctuation", lambda s: old_edges.sub("", s), profiles._strip_edges,
         lambda n: "x" + "-" * n + "y.", len(TOKEN)),
        ("1 MB id, `~N` family", lambda s: old_suffix.sub("", s), dedup_partitioned._family,
         lambda n: "d" + "~1" * (n // 2) + "x", len(HOSTILE_ID)),
    ):
        sizes = (8192, 16384, 32768)
        times = [timed(old, make(n)) for n in sizes]
        rows.append((label, times, times[-1] * (full / sizes[-1]) ** 2, timed(new, make(full))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=4000)
    ap.add_argument("--normal-mb", type=int, default=64)
    ap.add_argument("--line-mb", type=int, default=200)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    docs = normal_docs(args.docs)
    extra = normal_docs(1, seed=5)[0]
    files = {
        "normal": write_jsonl(WORK / "normal.jsonl", docs),
        "token": write_jsonl(WORK / "token.jsonl", [*docs, {"id": "hostile", "text": f"{extra['text']} {TOKEN}"}]),
        "id": write_jsonl(WORK / "id.jsonl", [*docs, {"id": HOSTILE_ID, "text": extra["text"]}]),
    }
    rows = {
        "token": [("normal", run_case("token-normal", "unit", files["normal"])),
                  ("+ 2 MB token", run_case("token", "unit", files["token"])),
                  ("+ 2 MB token, max_document_chars 4M", run_case("token-raised", "unit", files["token"],
                                                                   {"max_document_chars": 4_000_000}))],
        "id": [("normal", run_case("id-normal", "prepare", files["normal"])),
               ("+ 1 MB id", run_case("id", "prepare", files["id"])),
               ("+ 1 MB id, max_id_chars 2M", run_case("id-raised", "prepare", files["id"], {"max_id_chars": 2_000_000}))],
    }
    n_normal = int(args.normal_mb * 2**20 / 900)
    normal_unit = write_jsonl(WORK / "normal-unit.jsonl", normal_docs(n_normal, seed=3))
    line = write_line(WORK / "line.jsonl", args.line_mb)
    one_doc = write_jsonl(WORK / "one-doc.jsonl", normal_docs(1, seed=4))
    rows["line"] = [(f"normal unit, {normal_unit.stat().st_size / 2**20:.0f} MB", run_case("line-normal", "unit", normal_unit)),
                    ("one normal document (what any unit costs: its writers, tables)", run_case("one-doc", "unit", one_doc)),
                    (f"one {line.stat().st_size / 2**20:.0f} MB line", run_case("line", "unit", line))]
    old = old_regexes()

    print(f"\n{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.docs} normal documents ({files['normal'].stat().st_size / 2**20:.1f} MB)")
    for case, what in (("token", "`run_unit`"), ("id", "`prepare`")):
        base = rows[case][0][1]["wall"]
        print(f"\n| {case} case ({what}) | input rows | kept | rejected | seconds | x normal |\n|---|---:|---:|---|---:|---:|")
        for label, r in rows[case]:
            print(f"| {label} | {r['input']} | {r['kept']} | {r['rejected']} | {r['wall']:.1f} | {r['wall'] / base:.2f} |")
    print("\n| line case (`run_unit`) | seconds | peak RSS over the warm process MB | 2 x batch_bytes MB | rejected |"
          "\n|---|---:|---:|---:|---|")
    for label, r in rows["line"]:
        print(f"| {label} | {r['wall']:.1f} | {r['peak_mb']:.1f} | {2 * r['batch_mb']:.0f} | {r['rejected']} |")
    print("\n| input | old regex at 8k / 16k / 32k chars s | old, extrapolated to full size | linear code, full size s |"
          "\n|---|---|---:|---:|")
    for label, times, extrapolated, new in old:
        print(f"| {label} | {' / '.join(f'{t:.3f}' for t in times)} | {extrapolated / 3600:.1f} h | {new:.4f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:7])
    else:
        main()
