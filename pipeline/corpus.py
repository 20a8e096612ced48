"""The corpus phase: ingest -> normalise -> language ID -> quality filter -> exact dedup
-> MinHash near dedup -> back-translation -> shards + manifest, with rejects and a per-language report.

Output layout under `out_dir` (a local path or URI):
    shards/<lang>/{train,heldout}-NNNNN.parquet
    rejects/<stage>.parquet        one row per rejected document: id, stage, reason, detail, text...
    report.json                    input = kept + rejected, per language and reason
    report.png                     the same per language, as a chart
    manifest.json                  written last; the commit point of the corpus

A rerun with the same inputs and config finds the committed manifest (same fingerprint) and
does no work; any other state is recomputed from the inputs, so a crash never leaves a
half-written corpus visible.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import augment as augment_mod
from . import charts, clean, dedup, ingest, langid
from .config import CorpusConfig
from .schema import DOC_SCHEMA, REJECT_SCHEMA, UNKNOWN_LANG, concat, rejects_from_docs, split
from .shard import MANIFEST, write_shards
from .storage import (absolute, exists, expand, get_fs, join, read_json, read_parquet, remove, sha256_file,
                      write_json, write_parquet)

log = logging.getLogger(__name__)
VERSION = 1


class AccountingError(RuntimeError):
    """input != kept + rejected: a row was lost or duplicated."""


def fingerprint(files: list[str], cfg: CorpusConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    h.update(str(VERSION).encode())
    for uri in files:
        fs, path = get_fs(uri)
        h.update(uri.encode())
        h.update(str(fs.ukey(path)).encode())
    return h.hexdigest()


def build_report(n_input: int, kept: pa.Table, rejects: pa.Table, timings: dict) -> dict:
    original = rejects.filter(pc.invert(rejects["augmented"]))
    synthetic = rejects.filter(rejects["augmented"])
    kept_orig = kept.filter(pc.invert(kept["augmented"]))
    langs: dict[str, dict] = defaultdict(lambda: {"input": 0, "kept": 0, "rejected": {}})
    for lang, n in Counter(kept_orig["lang"].to_pylist()).items():
        langs[lang]["kept"] = n
    for (lang, reason), n in sorted(Counter(zip(original["lang"].to_pylist(), original["reason"].to_pylist())).items(),
                                    key=lambda kv: (str(kv[0][0]), kv[0][1])):
        langs[lang or UNKNOWN_LANG]["rejected"][reason] = n
    for info in langs.values():
        info["input"] = info["kept"] + sum(info["rejected"].values())
    aug_kept = Counter(kept.filter(kept["augmented"])["lang"].to_pylist())
    aug_rej = Counter(synthetic["lang"].to_pylist())
    report = {
        "input": n_input,
        "kept": kept_orig.num_rows,
        "rejected": original.num_rows,
        "rejected_by_stage": dict(sorted(Counter(original["stage"].to_pylist()).items())),
        "rejected_by_reason": dict(sorted(Counter(original["reason"].to_pylist()).items())),
        "languages": dict(sorted(langs.items())),
        "augmented": {
            "generated": sum(aug_kept.values()) + sum(aug_rej.values()),
            "kept": sum(aug_kept.values()),
            "rejected": sum(aug_rej.values()),
            "languages": {l: {"kept": aug_kept.get(l, 0), "rejected": aug_rej.get(l, 0)}
                          for l in sorted(set(aug_kept) | set(aug_rej))},
        },
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    if report["input"] != report["kept"] + report["rejected"]:
        raise AccountingError(f"input {report['input']} != kept {report['kept']} + rejected {report['rejected']}")
    return report


def unit_fingerprint(uri: str, cfg: CorpusConfig) -> str:
    """What a work unit's output depends on: the file (URI + size/mtime/etag) and the config
    of the per-unit stages."""
    fs, path = get_fs(uri)
    h = hashlib.sha256()
    unit_cfg = {k: cfg.model_dump(mode="json")[k] for k in ("ingest", "langid", "clean", "dedup")}
    h.update(json.dumps(unit_cfg, sort_keys=True).encode())
    h.update(f"{VERSION}|{uri}|{fs.ukey(path)}".encode())
    return h.hexdigest()[:20]


def process_unit(uri: str, cfg: CorpusConfig) -> tuple[pa.Table, pa.Table, dict]:
    """A work unit, pure: one input file through ingest -> normalise -> language ID ->
    quality filters; each kept row also carries its exact-dedup key and MinHash signature,
    so the global dedup step needs no text."""
    timings: Counter[str] = Counter()
    t = time.monotonic()
    docs, rej = ingest.read_file(uri, cfg.ingest.text_field, cfg.ingest.id_field)
    n_input = docs.num_rows + rej.num_rows
    rejects = [rej]
    timings["ingest"] += time.monotonic() - t
    model_path = cfg.langid.model_path
    for name, step in (
        ("normalize", lambda d: clean.normalize(d, cfg.clean)),
        ("langid", lambda d: langid.identify(d, model_path, cfg.langid.min_score, cfg.langid.languages,
                                             cfg.langid.min_score_per_language)),
        ("filter", lambda d: clean.filter_quality(d, cfg.clean)),
    ):
        t = time.monotonic()
        docs, rej = step(docs)
        rejects.append(rej)
        timings[name] += time.monotonic() - t
    t = time.monotonic()
    keys = pa.array([clean.dedup_key(x) for x in docs["text"].to_pylist()], pa.string())
    width = cfg.dedup.bands * cfg.dedup.rows_per_band if cfg.dedup.near else 0
    sigs = dedup.signatures(docs, cfg.dedup) if cfg.dedup.near else np.zeros((docs.num_rows, 0), np.uint32)
    docs = docs.append_column("dedup_key", keys).append_column(
        "minhash", pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), width))
    timings["minhash"] += time.monotonic() - t
    return docs, concat(rejects, REJECT_SCHEMA), {"input": n_input, "seconds": dict(timings)}


def run_unit(uri: str, out_dir: str, cfg_json: dict) -> dict:
    """Process a unit unless its committed result exists (resume); `done.json` is written
    last and is the unit's commit point. Runs in-process or as a Ray task."""
    cfg = CorpusConfig.model_validate(cfg_json)
    unit = join(out_dir, "_units", unit_fingerprint(uri, cfg))
    done = join(unit, "done.json")
    if exists(done):
        return {**read_json(done), "resumed": True}
    docs, rejects, info = process_unit(uri, cfg)
    write_parquet(join(unit, "docs.parquet"), docs)
    write_parquet(join(unit, "rejects.parquet"), rejects)
    info = {"uri": uri, "dir": unit, "kept": docs.num_rows, **info}
    write_json(done, info)
    return {**info, "resumed": False}


def run_units(files: list[str], out_dir: str, cfg: CorpusConfig) -> list[dict]:
    """All work units, in-process or on Ray (`cfg.engine`); results in input order."""
    payload = cfg.model_dump(mode="json")
    start, done, n_docs = time.monotonic(), 0, 0
    results: list[dict] = []

    def progress(info: dict) -> None:
        nonlocal done, n_docs
        done += 1
        n_docs += info["input"]
        elapsed = time.monotonic() - start
        log.info("prepare [%d/%d] %s: %d of %d kept%s; %.0f docs/s, ETA %.0fs", done, len(files), info["uri"],
                 info["kept"], info["input"], " (resumed)" if info["resumed"] else "",
                 n_docs / max(elapsed, 1e-9), elapsed / done * (len(files) - done))

    if cfg.engine == "ray":
        import ray

        from .config import RayConfig
        from .raytrain import init_ray

        init_ray(RayConfig())
        task = ray.remote(run_unit)
        refs = [task.remote(uri, absolute(out_dir), payload) for uri in files]
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            progress(ray.get(ready[0]))
        return ray.get(refs)
    for uri in files:
        results.append(run_unit(uri, out_dir, payload))
        progress(results[-1])
    return results


def global_dedup(units: list[dict], cfg: CorpusConfig) -> dict[int, tuple[str, int, str]]:
    """Exact, then near-duplicate decisions over every unit, from keys and signatures only.
    Returns {global row: (reason, global row of the document kept instead, detail)}."""
    cols = ["id", "lang", "dedup_key", "minhash"]
    table = pa.concat_tables([read_parquet(join(u["dir"], "docs.parquet"), cols) for u in units])
    decisions: dict[int, tuple[str, int, str]] = {}
    first: dict[str, int] = {}
    ids = table["id"].to_pylist()
    for row, key in enumerate(table["dedup_key"].to_pylist()):
        if key in first:
            decisions[row] = ("exact_duplicate", first[key], f"duplicate of {ids[first[key]]}")
        else:
            first[key] = row
    if cfg.dedup.near and first:
        rows = np.array(sorted(first.values()))
        width = cfg.dedup.bands * cfg.dedup.rows_per_band
        sigs = table["minhash"].combine_chunks().flatten().to_numpy().reshape(-1, width)[rows]
        langs = [table["lang"][int(r)].as_py() for r in rows]
        roots, similarity, _ = dedup.clusters(langs, sigs, cfg.dedup)
        for i in np.flatnonzero(roots != np.arange(len(rows))):
            kept_row = int(rows[roots[i]])
            decisions[int(rows[i])] = ("near_duplicate", kept_row,
                                       f"near duplicate of {ids[kept_row]} (estimated Jaccard {similarity[i]:.2f})")
    return decisions


def apply_dedup(units: list[dict], decisions: dict[int, tuple[str, int, str]]) -> tuple[pa.Table, pa.Table]:
    """Stream the units again: drop the duplicates as rejects naming the document kept, and
    record on each kept row the size of its duplicate cluster."""
    def final(row: int) -> int:
        while row in decisions:
            row = decisions[row][1]
        return row

    cluster = Counter(final(r) for r in decisions)
    kept_parts, reject_parts, offset, ids = [], [], 0, {}
    for u in units:
        docs = read_parquet(join(u["dir"], "docs.parquet")).drop_columns(["dedup_key", "minhash"])
        for i, doc_id in enumerate(docs["id"].to_pylist()):
            ids[offset + i] = doc_id
        rows = range(offset, offset + docs.num_rows)
        drop = [r in decisions for r in rows]
        kept, dropped = split(docs, [not d for d in drop])
        sizes = pa.array([1 + cluster.get(r, 0) for r, d in zip(rows, drop) if not d], pa.int32())
        kept_parts.append(kept.set_column(kept.schema.get_field_index("cluster_size"), "cluster_size", sizes))
        hits = [decisions[r] for r, d in zip(rows, drop) if d]
        # the document kept always comes earlier in input order, so its id is known here
        reject_parts.append(rejects_from_docs(dropped, "dedup", [h[0] for h in hits], [h[2] for h in hits],
                                              [ids[h[1]] for h in hits]))
        offset += docs.num_rows
    return concat(kept_parts, DOC_SCHEMA), concat(reject_parts, REJECT_SCHEMA)


def prepare(inputs: list[str], out_dir: str, cfg: CorpusConfig | None = None) -> dict:
    """Run the corpus phase; return the report (with `manifest_sha256`).

    Work units (one per input file) are committed under `out_dir/_units/` as they finish; a
    run killed midway and started again redoes only the units without a commit, and writes
    the same manifest as an uninterrupted run."""
    cfg = cfg or CorpusConfig()
    files = expand(inputs)
    fp = fingerprint(files, cfg)
    manifest_uri = join(out_dir, MANIFEST)
    if exists(manifest_uri) and read_json(manifest_uri).get("fingerprint") == fp:
        log.info("prepare: %s already committed for these inputs and config; nothing to do", manifest_uri)
        report = read_json(join(out_dir, "report.json"))
        report["manifest_sha256"] = sha256_file(manifest_uri)
        return report
    remove(manifest_uri)  # from here on the old corpus (if any) is no longer committed
    langid.load_model(cfg.langid.model_path)  # fail early on a bad model path

    units = run_units(files, out_dir, cfg)
    timings: Counter[str] = Counter()
    for u in units:
        timings.update(u["seconds"])
    t = time.monotonic()
    decisions = global_dedup(units, cfg)
    kept, dedup_rejects = apply_dedup(units, decisions)
    timings["dedup"] += time.monotonic() - t
    unit_rejects = [read_parquet(join(u["dir"], "rejects.parquet")) for u in units]

    t = time.monotonic()
    synthetic, synthetic_rej = augment_mod.augment(kept, cfg.augment, cfg.langid.model_path)
    timings["augment"] += time.monotonic() - t
    kept = concat([kept, synthetic], DOC_SCHEMA)
    rejects = concat(unit_rejects + [dedup_rejects, synthetic_rej], REJECT_SCHEMA)

    report = build_report(sum(u["input"] for u in units), kept, rejects, timings)
    t = time.monotonic()
    body = write_shards(kept, out_dir, cfg.shard)
    remove(join(out_dir, "rejects"))
    for stage in sorted(set(rejects["stage"].to_pylist())):
        write_parquet(join(out_dir, "rejects", f"{stage}.parquet"),
                      rejects.filter(pc.equal(rejects["stage"], stage)))
    report["seconds"]["shard"] = round(time.monotonic() - t, 3)
    write_json(join(out_dir, "report.json"), report)
    charts.corpus_chart(report, join(out_dir, "report.png"))
    manifest = {"version": VERSION, "fingerprint": fp, "inputs": files, **body}
    write_json(manifest_uri, manifest)  # commit point
    report["manifest_sha256"] = sha256_file(manifest_uri)
    log.info("prepare: %d input, %d kept, %d rejected, %d languages -> %s", report["input"], report["kept"],
             report["rejected"], len(body["languages"]), out_dir)
    return report
