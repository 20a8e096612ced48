"""The corpus phase: ingest -> normalise -> language ID -> quality filter -> exact dedup
-> MinHash near dedup -> back-translation -> shards + manifest, with rejects and a per-language report.

Output layout under `out_dir` (a local path or URI):
    shards/<lang>/{train,heldout}-NNNNN.parquet
    rejects/<stage>.parquet        one row per rejected document: id, stage, reason, detail, text...
    report.json                    input = kept + rejected, per language and reason
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
from . import clean, dedup, ingest, langid
from .config import CorpusConfig
from .schema import DOC_SCHEMA, REJECT_SCHEMA, UNKNOWN_LANG, concat, rejects_from_docs
from .shard import MANIFEST, write_shards
from .storage import exists, expand, get_fs, join, read_json, remove, sha256_file, write_json, write_parquet

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


def near_dedup(kept: pa.Table, sigs: np.ndarray, cfg: CorpusConfig) -> tuple[pa.Table, pa.Table]:
    """Global MinHash LSH step over the signatures of every work unit."""
    roots, similarity, _ = dedup.clusters(kept["lang"].to_pylist(), sigs, cfg.dedup)
    keep = roots == np.arange(kept.num_rows)
    ids = kept["id"].to_pylist()
    drop = np.flatnonzero(~keep)
    rejects = rejects_from_docs(kept.filter(pa.array(~keep)), "dedup", ["near_duplicate"] * len(drop),
                                [f"near duplicate of {ids[roots[i]]} (estimated Jaccard {similarity[i]:.2f})" for i in drop],
                                [ids[roots[i]] for i in drop])
    return kept.filter(pa.array(keep)), rejects


def with_cluster_sizes(kept: pa.Table, rejects: pa.Table) -> pa.Table:
    """cluster_size = 1 + every dedup reject that ends, through chains of `duplicate_of`, at
    this row (an exact copy of a document that was itself a near duplicate counts for the
    document finally kept)."""
    dedup_rows = rejects.filter(pc.equal(rejects["stage"], "dedup"))
    parent = dict(zip(dedup_rows["id"].to_pylist(), dedup_rows["duplicate_of"].to_pylist()))

    def final(i: str) -> str:
        while i in parent:
            i = parent[i]
        return i

    counts = Counter(final(i) for i in parent)
    sizes = pa.array([1 + counts.get(i, 0) for i in kept["id"].to_pylist()], pa.int32())
    return kept.set_column(kept.schema.get_field_index("cluster_size"), "cluster_size", sizes)


def prepare(inputs: list[str], out_dir: str, cfg: CorpusConfig | None = None) -> dict:
    """Run the corpus phase; return the report (with `manifest_sha256`)."""
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

    timings: Counter[str] = Counter()
    model_path = cfg.langid.model_path
    langid.load_model(model_path)  # fail early on a bad model path
    seen: dict[str, str] = {}
    kept_parts, reject_parts, sig_parts, n_input = [], [], [], 0
    start = time.monotonic()
    for i, uri in enumerate(files, start=1):
        t = time.monotonic()
        docs, rej = ingest.read_file(uri, cfg.ingest.text_field, cfg.ingest.id_field)
        n_input += docs.num_rows + rej.num_rows
        reject_parts.append(rej)
        timings["ingest"] += time.monotonic() - t
        for name, step in (
            ("normalize", lambda d: clean.normalize(d, cfg.clean)),
            ("langid", lambda d: langid.identify(d, model_path, cfg.langid.min_score, cfg.langid.languages,
                                                           cfg.langid.min_score_per_language)),
            ("filter", lambda d: clean.filter_quality(d, cfg.clean)),
            ("dedup", lambda d: clean.dedup_exact(d, seen)),
        ):
            t = time.monotonic()
            docs, rej = step(docs)
            reject_parts.append(rej)
            timings[name] += time.monotonic() - t
        if cfg.dedup.near:
            t = time.monotonic()
            sig_parts.append(dedup.signatures(docs, cfg.dedup))
            timings["minhash"] += time.monotonic() - t
        kept_parts.append(docs)
        elapsed = time.monotonic() - start
        log.info("prepare [%d/%d] %s: %d kept; %d docs in %.1fs (%.0f docs/s), ETA %.0fs", i, len(files), uri,
                 docs.num_rows, n_input, elapsed, n_input / max(elapsed, 1e-9), elapsed / i * (len(files) - i))
    kept = concat(kept_parts, DOC_SCHEMA)
    if cfg.dedup.near and kept.num_rows:
        t = time.monotonic()
        kept, near_rejects = near_dedup(kept, np.concatenate(sig_parts), cfg)
        reject_parts.append(near_rejects)
        timings["near_dedup"] += time.monotonic() - t
    kept = with_cluster_sizes(kept, concat(reject_parts, REJECT_SCHEMA))

    t = time.monotonic()
    synthetic, synthetic_rej = augment_mod.augment(kept, cfg.augment, model_path)
    timings["augment"] += time.monotonic() - t
    kept = concat([kept, synthetic], DOC_SCHEMA)
    rejects = concat(reject_parts + [synthetic_rej], REJECT_SCHEMA)

    report = build_report(n_input, kept, rejects, timings)
    t = time.monotonic()
    body = write_shards(kept, out_dir, cfg.shard)
    remove(join(out_dir, "rejects"))
    for stage in sorted(set(rejects["stage"].to_pylist())):
        write_parquet(join(out_dir, "rejects", f"{stage}.parquet"),
                      rejects.filter(pc.equal(rejects["stage"], stage)))
    timings["shard"] += time.monotonic() - t
    report["seconds"]["shard"] = round(timings["shard"], 3)
    write_json(join(out_dir, "report.json"), report)
    manifest = {"version": VERSION, "fingerprint": fp, "inputs": files, **body}
    write_json(manifest_uri, manifest)  # commit point
    report["manifest_sha256"] = sha256_file(manifest_uri)
    log.info("prepare: %d input, %d kept, %d rejected, %d languages -> %s", report["input"], report["kept"],
             report["rejected"], len(body["languages"]), out_dir)
    return report
