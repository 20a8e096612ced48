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
import time
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import charts
from ..config import CorpusConfig, RayConfig
from ..language_codes import is_unidentified
from ..schema import DOC_SCHEMA, PAIR_REJECT_SCHEMA, REJECT_SCHEMA, UNKNOWN_LANG, concat, rejects_from_docs, split
from ..storage import (
    absolute,
    exists,
    expand,
    get_fs,
    join,
    read_json,
    read_parquet,
    remove,
    sha256_file,
    write_json,
    write_parquet,
)
from . import augment as augment_mod
from . import clean, dedup, ingest, langid, parallel
from .shard import MANIFEST, ForcedHeldout, RollingParquet, ShardSink

log = logging.getLogger(__name__)
VERSION = 4  # bump when the unit output changes (2: lang_top, cluster_size; 3: ISO 639-3 labels; 4: und_<Script>)


class AccountingError(RuntimeError):
    """input != kept + rejected: a row was lost or duplicated."""


def fingerprint(files: list[str], cfg: CorpusConfig) -> str:
    h = hashlib.sha256()
    # where the units run does not change the corpus: a rerun on Ray reuses a local result
    h.update(json.dumps(cfg.model_dump(mode="json", exclude={"engine", "cpus_per_unit", "unit_cache"}),
                        sort_keys=True).encode())
    h.update(str(VERSION).encode())
    h.update(langid.models_digest(cfg.langid.models).encode())
    for m in cfg.augment.models:  # a retrained translation model under the same path changes the corpus
        h.update(augment_mod.model_digest(m.model_dir).encode())
    for uri in files:
        fs, path = get_fs(uri)
        h.update(uri.encode())
        h.update(str(fs.ukey(path)).encode())
    return h.hexdigest()


def input_files(files: list[str]) -> list[dict]:
    """Lineage of the inputs: URI, bytes, and the store's version key (ETag on S3; size and
    modification time for local files), as the unit keys use them."""
    out = []
    for uri in files:
        fs, path = get_fs(uri)
        out.append({"uri": uri, "bytes": fs.size(path), "ukey": str(fs.ukey(path))})
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
    and the config of the per-unit stages."""
    fs, path = get_fs(part.uri)
    h = hashlib.sha256()
    unit_cfg = {k: cfg.model_dump(mode="json")[k] for k in ("ingest", "langid", "clean", "dedup")}
    h.update(json.dumps(unit_cfg, sort_keys=True).encode())
    h.update(f"{VERSION}|{part}|{part.first}|{fs.ukey(path)}|{langid.models_digest(cfg.langid.models)}".encode())
    return h.hexdigest()[:20]


def process_unit(part: ingest.Part | str, cfg: CorpusConfig) -> tuple[pa.Table, pa.Table, dict]:
    """A work unit, pure: one input file (or part of a large one) through ingest -> normalise
    -> language ID -> quality filters; each kept row also carries its exact-dedup key and
    MinHash signature, so the global dedup step needs no text."""
    part = ingest.Part(part) if isinstance(part, str) else part
    timings: Counter[str] = Counter()
    lines_removed = 0

    def strip_lines(d: pa.Table) -> tuple[pa.Table, pa.Table]:
        nonlocal lines_removed
        d, lines_removed = langid.strip_foreign_lines(d, cfg.langid)
        return d, REJECT_SCHEMA.empty_table()

    t = time.monotonic()
    docs, rej = ingest.read_part(part, cfg.ingest.text_field, cfg.ingest.id_field)
    n_input = docs.num_rows + rej.num_rows
    rejects = [rej]
    timings["ingest"] += time.monotonic() - t
    for name, step in (
        ("normalize", lambda d: clean.normalize(d, cfg.clean)),
        ("langid", lambda d: langid.identify(d, cfg.langid)),
        ("lines", lambda d: strip_lines(d)),
        ("filter", lambda d: clean.filter_quality(d, cfg.clean)),
    ):
        t = time.monotonic()
        docs, rej = step(docs)
        rejects.append(rej)
        timings[name] += time.monotonic() - t
    t = time.monotonic()
    keys = pa.array([dedup.dedup_key(x) for x in docs["text"].to_pylist()], pa.string())
    width = cfg.dedup.bands * cfg.dedup.rows_per_band if cfg.dedup.near else 1  # Arrow lists need a size >= 1
    sigs = dedup.signatures(docs, cfg.dedup) if cfg.dedup.near else np.zeros((docs.num_rows, 1), np.uint32)
    docs = docs.append_column("dedup_key", keys).append_column(
        "minhash", pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), width))
    timings["minhash"] += time.monotonic() - t
    return docs, concat(rejects, REJECT_SCHEMA), {"input": n_input, "foreign_lines_removed": lines_removed,
                                                   "seconds": dict(timings)}


def run_unit(part: ingest.Part, out_dir: str, cfg_json: dict) -> dict:
    """Process a unit unless its committed result exists (resume); `done.json` is written
    last and is the unit's commit point. Runs in-process or as a Ray task."""
    cfg = CorpusConfig.model_validate(cfg_json)
    unit = join(cfg.unit_cache or join(out_dir, "_units"), unit_fingerprint(part, cfg))
    done = join(unit, "done.json")
    if exists(done):
        return {**read_json(done), "resumed": True}
    docs, rejects, info = process_unit(part, cfg)
    write_parquet(join(unit, "docs.parquet"), docs)
    write_parquet(join(unit, "rejects.parquet"), rejects)
    info = {"uri": str(part), "dir": unit, "kept": docs.num_rows, "host": socket.gethostname(),
            "pid": os.getpid(), "node": _ray_node(), **info}
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


def unique_ids(units: list[dict]) -> dict[int, str]:
    """{global row: new id} for every unit document whose id an earlier one already has (two
    files with the same name, a source that repeats ids): `<id>~2`, `<id>~3`... so every
    document of the corpus has its own id. Nothing is overwritten; the report counts them,
    and each renamed row keeps its input location in `source`."""
    seen: set[str] = set()
    renames: dict[int, str] = {}
    offset = 0
    for u in units:
        ids = read_parquet(join(u["dir"], "docs.parquet"), ["id"])["id"].to_pylist()
        for i, doc_id in enumerate(ids):
            if doc_id in seen:
                n = 2
                while f"{doc_id}~{n}" in seen:
                    n += 1
                doc_id = renames[offset + i] = f"{doc_id}~{n}"
            seen.add(doc_id)
        offset += len(ids)
    return renames


def _renamed(table: pa.Table, rows: range, renames: dict[int, str]) -> pa.Table:
    if not renames or not any(r in renames for r in rows):
        return table
    ids = [renames.get(r, i) for r, i in zip(rows, table["id"].to_pylist())]
    return table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids, pa.string()))


def forced_heldout(units: list[dict], decisions: dict, fraction: float, renames: dict[int, str]) -> set[str]:
    """Ids that `shard.heldout_mask` must hold out so every language of 5+ kept documents has
    a held-out one, decided over the whole corpus (ids and languages only), so the split does
    not depend on how the inputs were cut into units."""
    forced = ForcedHeldout(fraction)
    offset = 0
    for u in units:
        t = read_parquet(join(u["dir"], "docs.parquet"), ["id", "lang"])
        t = _renamed(t, range(offset, offset + t.num_rows), renames)
        keep = [offset + i not in decisions for i in range(t.num_rows)]
        forced.add([l for l, k in zip(t["lang"].to_pylist(), keep) if k],
                   [i for i, k in zip(t["id"].to_pylist(), keep) if k])
        offset += t.num_rows
    return forced.ids


def dedup_units(units: list[dict], decisions: dict[int, tuple[str, int, str, str]], renames: dict[int, str],
                start: int = 0):
    """Stream the units (from `units[start]` on) again, one at a time: yield (kept rows with
    their duplicate-cluster size, dedup rejects naming the document kept instead)."""
    def final(row: int) -> int:
        while row in decisions:
            row = decisions[row][1]
        return row

    cluster = Counter(final(r) for r in decisions)
    offset = sum(u["kept"] for u in units[:start])
    for u in units[start:]:
        docs = read_parquet(join(u["dir"], "docs.parquet")).drop_columns(["dedup_key", "minhash"])
        rows = range(offset, offset + docs.num_rows)
        docs = _renamed(docs, rows, renames)
        drop = [r in decisions for r in rows]
        kept, dropped = split(docs, [not d for d in drop])
        sizes = pa.array([1 + cluster.get(r, 0) for r, d in zip(rows, drop) if not d], pa.int32())
        kept = kept.set_column(kept.schema.get_field_index("cluster_size"), "cluster_size", sizes)
        hits = [decisions[r] for r, d in zip(rows, drop) if d]
        rejects = rejects_from_docs(dropped, "dedup", [h[0] for h in hits], [h[2] for h in hits],
                                    [h[3] for h in hits])
        offset += docs.num_rows
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


def prepare(inputs: list[str], out_dir: str, cfg: CorpusConfig | None = None, ray_cfg: RayConfig | None = None) -> dict:
    """Run the corpus phase; return the report (with `manifest_sha256`).

    Work units (one per input file) are committed under `out_dir/_units/` as they finish; a
    run killed midway and started again redoes only the units without a commit, and writes
    the same manifest as an uninterrupted run."""
    cfg = cfg or CorpusConfig()
    files = expand(inputs)
    fp = fingerprint(files + parallel.input_files(cfg.parallel), cfg)
    manifest_uri = join(out_dir, MANIFEST)
    if exists(manifest_uri) and read_json(manifest_uri).get("fingerprint") == fp:
        log.info("prepare: %s already committed for these inputs and config; nothing to do", manifest_uri)
        report = read_json(join(out_dir, "report.json"))
        report["manifest_sha256"] = sha256_file(manifest_uri)
        return report
    remove(manifest_uri)  # from here on the old corpus (if any) is no longer committed
    for m in cfg.langid.models:
        langid.load_model(m.path)  # fail early on a bad model path

    units = run_units(files, out_dir, cfg, ray_cfg)
    timings: Counter[str] = Counter()
    for u in units:
        timings.update(u["seconds"])
    t = time.monotonic()
    renames = unique_ids(units)
    if renames:
        log.warning("prepare: %d documents repeat an earlier document's id; renamed <id>~N (first: %s)",
                    len(renames), next(iter(renames.values())))
    decisions = dedup.global_dedup(units, cfg, renames)
    timings["dedup"] += time.monotonic() - t

    # One streaming pass: units -> dedup -> shard writers, rejects -> per-stage writers.
    # Memory holds one unit, the writers' buffers, and the back-translation sources.
    t = time.monotonic()
    tally = Tally()
    shards = ShardSink(out_dir, cfg.shard, DOC_SCHEMA, forced_heldout(units, decisions, cfg.shard.heldout_fraction, renames))
    rejects = RejectSink(out_dir, tally)
    sources = augment_mod.Sources(cfg, shards.forced)
    for u in units:
        rejects.write(read_parquet(join(u["dir"], "rejects.parquet")))
    for kept, dedup_rejects in dedup_units(units, decisions, renames):
        pa.default_memory_pool().release_unused()
        rejects.write(dedup_rejects)
        tally.add_kept(kept)
        shards.add(kept)
        sources.add(kept)
    timings["shard"] += time.monotonic() - t

    # Back-translation: units of translated documents, deduplicated against the real documents
    # (which come first, so a translation that repeats real text is the one rejected) and each
    # other with the same global step; real documents' decisions stay as they were.
    t = time.monotonic()
    train_tokens = {lang: info["train_tokens"] for lang, info in shards.stats.items()}
    synthetic, augment_section = augment_mod.augment(sources, train_tokens, out_dir, cfg,
                                                     resolve_engine(cfg, ray_cfg), ray_cfg)
    kept_synthetic: set[str] = set()
    if synthetic:
        n_real = sum(u["kept"] for u in units)
        every = dedup.global_dedup(units + synthetic, cfg, renames)
        for u in synthetic:
            rejects.write(read_parquet(join(u["dir"], "rejects.parquet")))
        for kept, dedup_rejects in dedup_units(units + synthetic, {r: d for r, d in every.items() if r >= n_real},
                                               renames, start=len(units)):
            rejects.write(dedup_rejects)
            tally.add_kept(kept)
            shards.add(kept)
            kept_synthetic.update(kept["id"].to_pylist())
    timings["augment"] += time.monotonic() - t

    t = time.monotonic()
    pairs_section, pairs_report = prepare_parallel(out_dir, cfg, augment_mod.read_pairs(synthetic, kept_synthetic))
    timings["parallel"] += time.monotonic() - t

    t = time.monotonic()
    body = shards.close()
    rejects.close()
    timings["shard"] += time.monotonic() - t
    report = build_report(sum(u["input"] for u in units), tally, timings)
    report["renamed_ids"] = {"count": len(renames), "first": list(renames.values())[:10]}
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
    manifest = {"version": VERSION, "fingerprint": fp, "inputs": files, "input_files": input_files(files), **body}
    if pairs_section:
        manifest["parallel"] = pairs_section
    if cfg.augment.tag:
        manifest["synthetic_tag"] = cfg.augment.tag  # training puts it before every augmented document
    write_json(manifest_uri, manifest)  # commit point
    report["manifest_sha256"] = sha256_file(manifest_uri)
    log.info("prepare: %d input, %d kept, %d unidentified, %d rejected, %d languages -> %s", report["input"],
             report["kept"], report["unidentified"], report["rejected"], len(body["languages"]), out_dir)
    return report
