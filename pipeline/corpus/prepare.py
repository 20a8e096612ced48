"""The corpus phase: ingest -> normalise -> language ID -> quality filter -> exact dedup
-> MinHash near dedup -> back-translation -> shards + manifest, with rejects and a per-language report.

Output layout under `out_dir` (a local path or URI):
    shards/<lang>/{train,heldout}-NNNNN.parquet
    rejects/<stage>.parquet        one row per rejected document: id, stage, reason, detail, text...
    unidentified/und_<Script>/     documents language ID was unsure of, with their candidates
    report.json                    input = kept + unidentified + rejected, per language and reason
    report.png                     the same per language, as a chart
    _units/<fingerprint>/          committed work units (docs, rejects, done.json), reused on resume
    manifest.json                  written last; the commit point of the corpus

A rerun with the same inputs and config finds the committed manifest (same fingerprint) and
does no work; otherwise committed units are reused and the rest recomputed, so a crash never
leaves a half-written corpus visible and never costs finished units.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import time
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import charts
from ..allowed_roots import check as check_allowed
from ..config import CorpusConfig, LockConfig, RayConfig
from ..language_codes import is_unidentified
from ..lock import check_leases, hold, lease_settings
from ..redact import object_uri, redact_uri, refuse_redacted
from ..schema import DOC_SCHEMA, PAIR_REJECT_SCHEMA, REJECT_SCHEMA, UNKNOWN_LANG, rejects_from_docs, split
from ..storage import (
    absolute,
    exists,
    expand,
    get_fs,
    is_remote,
    join,
    put_local,
    read_json,
    read_parquet,
    remove,
    sha256_file,
    write_json,
)
from . import augment as augment_mod
from . import clean, dedup, dedup_partitioned, ingest, langid, parallel
from .shard import MANIFEST, RollingParquet, ShardSink

log = logging.getLogger(__name__)
VERSION = 4  # bump when the unit output changes (2: lang_top, cluster_size; 3: ISO 639-3 labels; 4: und_<Script>)


# settings of how the corpus is computed, not of what it is: outside the fingerprints
HOW = {"engine": True, "cpus_per_unit": True, "unit_cache": True, "ingest": {"batch_bytes", "allowed_roots"},
       "dedup": {"partitions", "partition_rows", "spill_dir"}}


class AccountingError(RuntimeError):
    """input != kept + rejected: a row was lost or duplicated."""


def config_key(cfg: CorpusConfig) -> dict:
    """The config as the fingerprints hash it: without the settings of how it is computed (HOW),
    its inputs as the objects they name (`object_uri`: a presigned URL signed again, with
    another signature, date and expiry, is the same input; a local path is itself)."""
    dump = cfg.model_dump(mode="json", exclude=HOW)
    dump["ingest"]["inputs"] = [object_uri(u) for u in cfg.ingest.inputs]
    return dump


def fingerprint(files: list[str], cfg: CorpusConfig) -> str:
    h = hashlib.sha256()
    # where the units run does not change the corpus: a rerun on Ray reuses a local result
    h.update(json.dumps(config_key(cfg), sort_keys=True).encode())
    h.update(str(VERSION).encode())
    h.update(langid.models_digest(cfg.langid.models).encode())
    for m in cfg.augment.models:  # a retrained translation model under the same path changes the corpus
        h.update(augment_mod.model_digest(m.model_dir).encode())
    for uri in files:
        h.update(object_uri(uri).encode())
        h.update(version_key(uri).encode())
    return h.hexdigest()


def version_key(uri: str) -> str:
    """The store's version key of an input: fsspec's `ukey` (ETag on S3; size and modification
    time for local files), except over HTTP(S), where fsspec's is the URL itself, so a presigned
    URL signed again would look like another file and a changed file like the same one: there
    the server's ETag / Last-Modified / size. With the object the URI names (`object_uri`) it
    keys the units: a re-signed URL of the same object finds them, a changed object does not."""
    fs, path = get_fs(uri)
    if {"http", "https"} & set((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol):
        info = fs.info(path)
        return json.dumps({k: info.get(k) for k in ("size", "ETag", "Content-MD5", "Digest", "Last-Modified")},
                          sort_keys=True)
    return str(fs.ukey(path))


def input_files(files: list[str]) -> list[dict]:
    """Lineage of the inputs: URI (without credentials), bytes, and the store's version key
    (`version_key`), as the unit keys use them."""
    out = []
    for uri in files:
        fs, path = get_fs(uri)
        out.append({"uri": redact_uri(uri), "bytes": fs.size(path), "ukey": version_key(uri)})
    return out


class Tally:
    """Running counts of kept and rejected rows, per language, stage and reason, so the
    report needs no table of the whole corpus in memory."""

    def __init__(self) -> None:
        self.kept: Counter[tuple[str, bool]] = Counter()
        self.rejected: Counter[tuple[str, str, str, bool]] = Counter()

    def add_kept(self, docs: pa.Table) -> None:
        self.kept.update(zip(docs["lang"].to_pylist(), docs["augmented"].to_pylist()))

    def add_rejects(self, rejects: pa.Table) -> None:
        self.rejected.update(zip((l or UNKNOWN_LANG for l in rejects["lang"].to_pylist()),
                                 rejects["stage"].to_pylist(), rejects["reason"].to_pylist(),
                                 rejects["augmented"].to_pylist()))


def build_report(n_input: int, tally: Tally, timings: dict) -> dict:
    langs: dict[str, dict] = defaultdict(lambda: {"input": 0, "kept": 0, "unidentified": 0, "rejected": {}})
    by_stage: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    aug_kept: Counter[str] = Counter()
    aug_rej: dict[str, Counter[str]] = defaultdict(Counter)
    for (lang, synthetic), n in tally.kept.items():
        if synthetic:
            aug_kept[lang] += n
        else:
            langs[lang]["unidentified" if is_unidentified(lang) else "kept"] += n
    for (lang, stage, reason, synthetic), n in sorted(tally.rejected.items()):
        if synthetic:
            aug_rej[lang][reason] += n
            continue
        langs[lang]["rejected"][reason] = langs[lang]["rejected"].get(reason, 0) + n
        by_stage[stage] += n
        by_reason[reason] += n
    for info in langs.values():
        info["input"] = info["kept"] + info["unidentified"] + sum(info["rejected"].values())
    report = {
        "input": n_input,
        "kept": sum(v["kept"] for v in langs.values()),
        "unidentified": sum(v["unidentified"] for v in langs.values()),
        "rejected": sum(by_reason.values()),
        "rejected_by_stage": dict(sorted(by_stage.items())),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "languages": dict(sorted(langs.items())),
        "augmented": {
            "generated": sum(aug_kept.values()) + sum(sum(c.values()) for c in aug_rej.values()),
            "kept": sum(aug_kept.values()),
            "rejected": sum(sum(c.values()) for c in aug_rej.values()),
            "languages": {l: {"kept": aug_kept.get(l, 0), "rejected": sum(aug_rej[l].values()),
                              "rejected_by_reason": dict(sorted(aug_rej[l].items()))}
                          for l in sorted(set(aug_kept) | set(aug_rej))},
        },
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    if report["input"] != report["kept"] + report["unidentified"] + report["rejected"]:
        raise AccountingError(f"input {report['input']} != kept {report['kept']} + unidentified "
                              f"{report['unidentified']} + rejected {report['rejected']}")
    return report


def unit_fingerprint(part: ingest.Part, cfg: CorpusConfig) -> str:
    """What a work unit's output depends on: the file (URI + size/mtime/etag), the part of it,
    and the config of the per-unit stages. The file is named by the object its URI names
    (`Part.key`: no credential, signature or signing date is part of the key)."""
    h = hashlib.sha256()
    unit_cfg = {k: config_key(cfg)[k] for k in ("ingest", "langid", "clean", "dedup")}
    h.update(json.dumps(unit_cfg, sort_keys=True).encode())
    h.update(f"{VERSION}|{part.key}|{part.first}|{version_key(part.uri)}|"
             f"{langid.models_digest(cfg.langid.models)}".encode())
    return h.hexdigest()[:20]


def process_batch(docs: pa.Table, cfg: CorpusConfig, timings: Counter) -> tuple[pa.Table, list[pa.Table], int]:
    """One batch of a unit's documents through normalise -> language ID -> foreign lines ->
    quality filters; each kept row also carries its exact-dedup key and MinHash signature, so
    the global dedup step needs no text. Returns (kept, rejects, foreign lines removed)."""
    rejects, removed = [], 0
    for name, step in (
        ("normalize", lambda d: clean.normalize(d, cfg.clean)),
        ("langid", lambda d: langid.identify(d, cfg.langid)),
        ("lines", lambda d: langid.strip_foreign_lines(d, cfg.langid)),
        ("filter", lambda d: clean.filter_quality(d, cfg.clean)),
    ):
        t = time.monotonic()
        docs, out = step(docs)
        if name == "lines":
            removed = out
        else:
            rejects.append(out)
        timings[name] += time.monotonic() - t
    t = time.monotonic()
    keys = pa.array([dedup.dedup_key(x) for x in docs["text"].to_pylist()], pa.string())
    width = cfg.dedup.bands * cfg.dedup.rows_per_band if cfg.dedup.near else 1  # Arrow lists need a size >= 1
    sigs = dedup.signatures(docs, cfg.dedup) if cfg.dedup.near else np.zeros((docs.num_rows, 1), np.uint32)
    docs = docs.append_column("dedup_key", keys).append_column(
        "minhash", pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), width))
    timings["minhash"] += time.monotonic() - t
    return docs, rejects, removed


class _UnitFile:
    """A unit's Parquet output written batch by batch (a local temporary file, put in place
    by `close`), so a unit never holds all its rows."""

    def __init__(self, uri: str, schema: pa.Schema | None = None):
        self.uri, self.schema, self.rows = uri, schema, 0
        fd, self.tmp = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd") if schema is not None else None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        if table.num_rows:
            self.writer.write_table(table.cast(self.schema))
            self.rows += table.num_rows

    def close(self) -> int:
        try:
            self.writer.close()
            put_local(self.tmp, self.uri)
        finally:
            os.remove(self.tmp)
        return self.rows

    def abort(self) -> None:
        """Drop what was written (a failed unit leaves no temporary file behind)."""
        if self.writer is not None:
            self.writer.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def run_unit(part: ingest.Part, out_dir: str, cfg_json: dict) -> dict:
    """Process a unit unless its committed result exists (resume): its input read in batches
    of `ingest.batch_bytes`, each through the per-unit stages (`process_batch`) and appended
    to the unit's docs.parquet / rejects.parquet, so memory holds one batch. `done.json` is
    written last and is the unit's commit point. Runs in-process or as a Ray task."""
    cfg = CorpusConfig.model_validate(cfg_json)
    unit = join(cfg.unit_cache or join(out_dir, "_units"), unit_fingerprint(part, cfg))
    done = join(unit, "done.json")
    if exists(done):
        return {**read_json(done), "resumed": True}
    part = ingest.Part(part) if isinstance(part, str) else part
    timings: Counter[str] = Counter()
    docs_out, rejects_out = _UnitFile(join(unit, "docs.parquet")), _UnitFile(join(unit, "rejects.parquet"), REJECT_SCHEMA)
    n_input = removed = 0
    try:
        t = time.monotonic()
        for docs, rej in ingest.iter_part(part, cfg.ingest.text_field, cfg.ingest.id_field, cfg.ingest.batch_bytes,
                                          ingest.Limits.of(cfg.ingest)):
            timings["ingest"] += time.monotonic() - t
            n_input += docs.num_rows + rej.num_rows
            kept, rejects, n = process_batch(docs, cfg, timings)
            removed += n
            del docs
            docs_out.write(kept)
            for r in [rej, *rejects]:
                rejects_out.write(r)
            del kept, rejects, rej
            pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed batches otherwise
            t = time.monotonic()
        kept = docs_out.close()
        rejects_out.close()
    except BaseException:
        docs_out.abort()
        rejects_out.abort()
        raise
    info = {"uri": str(part), "dir": unit, "kept": kept, "input": n_input, "foreign_lines_removed": removed,
            "seconds": dict(timings), "host": socket.gethostname(), "pid": os.getpid(), "node": _ray_node()}
    write_json(done, info)
    return {**info, "resumed": False}


def _ray_node() -> str | None:
    """The Ray node a unit ran on (None in-process)."""
    import sys

    if "ray" not in sys.modules:
        return None
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def resolve_engine(cfg: CorpusConfig, ray_cfg: RayConfig | None) -> str:
    """'ray' or 'local' for `corpus.engine` (auto: Ray when a cluster address is configured)."""
    if cfg.engine != "auto":
        return cfg.engine
    return "ray" if (ray_cfg and ray_cfg.address) or os.environ.get("RAY_ADDRESS") else "local"


def run_units(files: list[str], out_dir: str, cfg: CorpusConfig, ray_cfg: RayConfig | None = None) -> list[dict]:
    """All work units, in-process or on Ray (`cfg.engine`); results in input order. A unit is
    an input file, or a part of one larger than `ingest.unit_bytes`."""
    payload = cfg.model_dump(mode="json")
    parts = [p for uri in files for p in ingest.plan(uri, cfg.ingest.unit_bytes)]
    if len(parts) > len(files):
        log.info("prepare: %d input files -> %d work units (files over %d bytes are split)", len(files),
                 len(parts), cfg.ingest.unit_bytes)
    start, done, n_docs = time.monotonic(), 0, 0
    results: list[dict] = []

    def progress(info: dict) -> None:
        nonlocal done, n_docs
        done += 1
        n_docs += info["input"]
        elapsed = time.monotonic() - start
        log.info("prepare [%d/%d] %s: %d of %d pass the unit filters%s; %.0f docs/s, ETA %.0fs", done, len(parts), info["uri"],
                 info["kept"], info["input"], " (resumed)" if info["resumed"] else "",
                 n_docs / max(elapsed, 1e-9), elapsed / done * (len(parts) - done))

    if resolve_engine(cfg, ray_cfg) == "ray":
        import ray

        from ..training.raytrain import init_ray

        init_ray(ray_cfg or RayConfig())
        log.info("prepare: %d work units as Ray tasks (%s CPU each) on %s", len(parts), cfg.cpus_per_unit,
                 ray.get_runtime_context().gcs_address)
        task = ray.remote(num_cpus=cfg.cpus_per_unit)(run_unit)
        refs = [task.remote(part, absolute(out_dir), payload) for part in parts]
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            progress(ray.get(ready[0]))
        return ray.get(refs)
    for part in parts:
        results.append(run_unit(part, out_dir, payload))
        pa.default_memory_pool().release_unused()  # hand a finished unit's buffers back to the OS
        progress(results[-1])
    return results


def spill_root(out_dir: str, cfg: CorpusConfig, engine: str) -> str:
    """Where the dedup stages spill: `dedup.spill_dir`, else `<out>/_dedup` when Ray tasks
    (possibly on other nodes) share it or the output is local, else a local temporary folder."""
    if cfg.dedup.spill_dir:
        return cfg.dedup.spill_dir
    if engine == "ray" or not is_remote(out_dir):
        return join(out_dir, "_dedup")
    return os.path.join(tempfile.gettempdir(), "babelforge-dedup")


def dedup_units(units: list[dict], result: dedup_partitioned.Result, start: int = 0):
    """Stream the units (from `units[start]` on) again, one at a time: yield (kept rows with
    their final ids and duplicate-cluster sizes, dedup rejects naming the document kept
    instead)."""
    for u in range(start, len(units)):
        docs = read_parquet(join(units[u]["dir"], "docs.parquet")).drop_columns(["dedup_key", "minhash"])
        d = result.decisions(u)
        docs = docs.set_column(docs.schema.get_field_index("id"), "id", pa.array(d["ids"], pa.string()))
        drop = [r is not None for r in d["reason"]]
        kept, dropped = split(docs, [not x for x in drop])
        sizes = pa.array(d["size"][~np.array(drop, bool)] if drop else [], pa.int32())
        kept = kept.set_column(kept.schema.get_field_index("cluster_size"), "cluster_size", sizes)
        hits = [i for i, x in enumerate(drop) if x]
        rejects = rejects_from_docs(dropped, "dedup", [d["reason"][i] for i in hits], [d["detail"][i] for i in hits],
                                    [d["kept_id"][i] for i in hits])
        yield kept, rejects


class RejectSink:
    """Rejected rows of every stage, streamed to `rejects/<stage>.parquet` and counted."""

    def __init__(self, out_dir: str, tally: Tally):
        remove(join(out_dir, "rejects"))
        self.out_dir, self.tally = out_dir, tally
        self.writers: dict[str, RollingParquet] = {}

    def write(self, rejects: pa.Table) -> None:
        self.tally.add_rejects(rejects)
        for stage in sorted(set(rejects["stage"].to_pylist())):
            if stage not in self.writers:
                self.writers[stage] = RollingParquet(lambda n, s=stage: join(self.out_dir, "rejects", f"{s}.parquet"),
                                                     REJECT_SCHEMA, 2**62, "zstd")
            self.writers[stage].write(rejects.filter(pc.equal(rejects["stage"], stage)))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def prepare_parallel(out_dir: str, cfg: CorpusConfig, extra: pa.Table) -> tuple[dict, dict]:
    """Translation pairs (`corpus.parallel.inputs`, and the sentence pairs of back-translations
    as synthetic pairs) -> pairs/<a>-<b>/ shards and rejects/parallel.parquet; ({}, {}) when
    there are none."""
    if not cfg.parallel.inputs and not extra.num_rows:
        remove(join(out_dir, parallel.PAIRS))
        return {}, {}
    writer = RollingParquet(lambda n: join(out_dir, "rejects", f"{parallel.STAGE}.parquet"), PAIR_REJECT_SCHEMA,
                            2**62, "zstd")
    try:
        return parallel.prepare_pairs(out_dir, cfg, writer.write, extra)
    finally:
        writer.close()


def prepare(inputs: list[str], out_dir: str, cfg: CorpusConfig | None = None, ray_cfg: RayConfig | None = None,
            lock: LockConfig | None = None) -> dict:
    """Run the corpus phase; return the report (with `manifest_sha256`).

    Work units (one per input file) are committed under `out_dir/_units/` as they finish; a
    run killed midway and started again redoes only the units without a commit, and writes
    the same manifest as an uninterrupted run. One run at a time in `out_dir`: it holds the
    folder's lease (pipeline/lock.py, timing from `lock`), or runs under its caller's."""
    with hold(out_dir, purpose="corpus phase", **lease_settings(lock)):
        return _prepare(inputs, out_dir, cfg or CorpusConfig(), ray_cfg)


def _prepare(inputs: list[str], out_dir: str, cfg: CorpusConfig, ray_cfg: RayConfig | None) -> dict:
    for uri in inputs:  # a redacted copy (a config read back from an output) cannot be read
        refuse_redacted(uri, "corpus.ingest.inputs")
    check_allowed([*inputs, *(p.path for p in cfg.parallel.inputs)], cfg.ingest.allowed_roots)  # before any read
    files = expand(inputs)
    check_allowed(files + parallel.input_files(cfg.parallel), cfg.ingest.allowed_roots)  # symlinks, glob matches
    fp = fingerprint(files + parallel.input_files(cfg.parallel), cfg)
    manifest_uri = join(out_dir, MANIFEST)
    if exists(manifest_uri) and read_json(manifest_uri).get("fingerprint") == fp:
        log.info("prepare: %s already committed for these inputs and config; nothing to do", manifest_uri)
        report = read_json(join(out_dir, "report.json"))
        report["manifest_sha256"] = sha256_file(manifest_uri)
        return report
    remove(manifest_uri)  # from here on the old corpus (if any) is no longer committed
    for m in cfg.langid.models:
        langid.lid_backends.backend(m)  # fail early on a bad model path or a missing backend
    if langid.combiner_path(cfg.langid):
        langid.lid_combine.load(langid.combiner_path(cfg.langid))  # and on a combiner that is not one

    units = run_units(files, out_dir, cfg, ray_cfg)
    timings: Counter[str] = Counter()
    for u in units:
        timings.update(u["seconds"])
    t = time.monotonic()
    engine = resolve_engine(cfg, ray_cfg)
    spill = spill_root(out_dir, cfg, engine)
    if spill == join(out_dir, "_dedup"):
        remove(spill)  # what a killed run left; the stages are redone from the committed units
    result = dedup_partitioned.dedup(units, cfg, spill, engine, cfg.shard.heldout_fraction)
    if result.stats["renamed"]:
        log.warning("prepare: %d documents repeat an earlier document's id; renamed <id>~N (first: %s)",
                    result.stats["renamed"], result.stats["renamed_first"][0])
    timings["dedup"] += time.monotonic() - t

    # One streaming pass: units -> dedup -> shard writers, rejects -> per-stage writers.
    # Memory holds one unit, the writers' buffers, and the back-translation sources.
    t = time.monotonic()
    tally = Tally()
    shards = ShardSink(out_dir, cfg.shard, DOC_SCHEMA, result.forced)
    rejects = RejectSink(out_dir, tally)
    sources = augment_mod.Sources(cfg, shards.forced)
    for u in units:
        rejects.write(read_parquet(join(u["dir"], "rejects.parquet")))
    for kept, dedup_rejects in dedup_units(units, result):
        pa.default_memory_pool().release_unused()
        rejects.write(dedup_rejects)
        tally.add_kept(kept)
        shards.add(kept)
        sources.add(kept)
    result.cleanup()
    timings["shard"] += time.monotonic() - t

    # Back-translation: units of translated documents, deduplicated against the real documents
    # (which come first, so a translation that repeats real text is the one rejected) and each
    # other with the same global step; real documents' decisions stay as they were.
    t = time.monotonic()
    train_tokens = {lang: info["train_tokens"] for lang, info in shards.stats.items()}
    synthetic, augment_section = augment_mod.augment(sources, train_tokens, out_dir, cfg,
                                                     engine, ray_cfg)
    kept_synthetic: set[str] = set()
    if synthetic:
        every = dedup_partitioned.dedup(units + synthetic, cfg, spill, engine)
        for u in synthetic:
            rejects.write(read_parquet(join(u["dir"], "rejects.parquet")))
        for kept, dedup_rejects in dedup_units(units + synthetic, every, start=len(units)):
            rejects.write(dedup_rejects)
            tally.add_kept(kept)
            shards.add(kept)
            kept_synthetic.update(kept["id"].to_pylist())
        every.cleanup()
    if spill == join(out_dir, "_dedup"):
        remove(spill)
    timings["augment"] += time.monotonic() - t

    t = time.monotonic()
    pairs_section, pairs_report = prepare_parallel(out_dir, cfg, augment_mod.read_pairs(synthetic, kept_synthetic))
    timings["parallel"] += time.monotonic() - t

    t = time.monotonic()
    body = shards.close()
    rejects.close()
    timings["shard"] += time.monotonic() - t
    report = build_report(sum(u["input"] for u in units), tally, timings)
    report["renamed_ids"] = {"count": result.stats["renamed"], "first": result.stats["renamed_first"]}
    report["dedup"] = {k: v for k, v in result.stats.items() if k not in ("renamed", "renamed_first")}
    report["foreign_lines_removed"] = sum(u.get("foreign_lines_removed", 0) for u in units)
    if augment_section:
        report["augmented"]["plan"] = augment_section
    reused = sum(1 for u in units if u["resumed"])
    report["units"] = {"total": len(units), "reused": reused, "processed": len(units) - reused,
                       "cache": cfg.unit_cache or join(out_dir, "_units")}
    und = body["unidentified"]
    report["unidentified_scripts"] = und["scripts"]  # per und_<Script>: rows, files, best candidates
    if pairs_report:
        report["parallel"] = pairs_report
    if und["rows"]:
        log.warning("prepare: %d documents whose language was not identified with confidence are kept apart "
                    "in %s/unidentified (und_<Script>), with their candidate languages", und["rows"], out_dir)
    write_json(join(out_dir, "report.json"), report)
    charts.corpus_chart(report, join(out_dir, "report.png"))
    manifest = {"version": VERSION, "fingerprint": fp, "inputs": [redact_uri(f) for f in files],
                "input_files": input_files(files), **body}
    if pairs_section:
        manifest["parallel"] = pairs_section
    if cfg.augment.tag:
        manifest["synthetic_tag"] = cfg.augment.tag  # training puts it before every augmented document
    check_leases(f"writing {redact_uri(manifest_uri)}")  # a run that lost its folder commits nothing
    write_json(manifest_uri, manifest)  # commit point
    report["manifest_sha256"] = sha256_file(manifest_uri)
    log.info("prepare: %d input, %d kept, %d unidentified, %d rejected, %d languages -> %s", report["input"],
             report["kept"], report["unidentified"], report["rejected"], len(body["languages"]), out_dir)
    return report
