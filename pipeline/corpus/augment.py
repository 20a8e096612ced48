"""Back-translation: kept source-language documents translated into low-resource target
languages, as work units on Ray actors (or in-process), resumable, then treated as corpus text.

1. **Which documents** (`Sources`, while the corpus streams past): training documents (never
   held-out ones) of each model's source language, ranked by a seeded rule: weighted sampling
   without replacement (Efraimidis-Spirakis: key = u^(1/w), u a hash of the seed and the id,
   w the language-ID confidence, so cleaner text is likelier) within each input source, and the
   sources interleaved round-robin so every source contributes. Only the best few per
   (language, source) are held (about 2 x `max_new_per_language` per language), never the corpus.
2. **How many** (`plan`): enough to lift the target language to its `shard.token_floor` (in
   estimated tokens), capped by `max_synthetic_share` of its training tokens and by
   `max_new_per_language`; a target with no floor gets `max_new_per_language` documents.
3. **Work units** of `docs_per_unit` documents, keyed by their content, the model's content
   hash and the settings; a unit's `done.json` is its commit point (written last), so a run
   killed at any moment redoes only uncommitted units, and decoding is seeded per batch, so
   the redone units come out as before (greedy / beam search on either backend; sampling with
   the hf backend).
4. **Per unit** (`translate_unit`): documents split into sentences (`translation/sentences`),
   long ones cut to the model's input budget, translated in token-budget batches, reassembled
   in order; quality control (`translation/quality`: errors, empty, copy, length ratio,
   repetition loops, language ID, optional round-trip chrF), then the corpus's own cleaning
   and quality filters; every failure a reject with its reason. Kept documents carry their
   exact-dedup key and MinHash signature, like real units, so `prepare` dedups them against
   the real documents (and each other) with the same global step, and their sentence pairs
   become synthetic translation pairs.
5. **Where**: `corpus.engine` local runs units in-process; on Ray, a `map_batches` actor pool
   per model (`actors`, `cpus_per_actor`, fractional `gpus_per_actor`) loads the model once per
   actor and streams units through it. Progress is logged with sentences/s and ETA.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import xxhash

from ..config import CorpusConfig, RayConfig, TranslationModel
from ..language_codes import language, lookup
from ..schema import DOC_SCHEMA, PAIR_SCHEMA, REJECT_SCHEMA, concat, rejects_from_docs, split
from ..storage import absolute, exists, join, read_json, read_parquet, sha256_dir, write_json, write_parquet
from ..translation import quality, sentences
from . import clean, dedup, langid
from .shard import CHARS_PER_TOKEN, DEFAULT_CHARS_PER_TOKEN, heldout_mask

log = logging.getLogger(__name__)
STAGE = "augment"
VERSION = 1
SOURCE_COLUMNS = ["id", "text", "lang", "script", "lang_score", "source"]


# -- 1. which documents ------------------------------------------------------------------

class Sources:
    """The best candidates per (source language, input source), by a seeded weighted key."""

    def __init__(self, cfg: CorpusConfig, forced_heldout: set[str] | None):
        self.cfg = cfg
        self.langs = {m.source for m in cfg.augment.models}
        self.cap = cfg.augment.max_new_per_language
        self.forced = forced_heldout
        self.heaps: dict[tuple[str, str], list] = defaultdict(list)

    def key(self, doc_id: str, weight: float) -> float:
        u = (xxhash.xxh64_intdigest(doc_id.encode(), seed=self.cfg.augment.seed) + 0.5) / 2**64
        return math.log(u) / max(weight, 0.05)  # log(u^(1/w)): same order, no underflow

    def add(self, kept: pa.Table) -> None:
        if not self.langs or not self.cap or not kept.num_rows:
            return
        langs = kept["lang"].to_pylist()
        wanted = [i for i, lang in enumerate(langs) if lang in self.langs]
        if not wanted:
            return
        part = kept.take(wanted)
        held = heldout_mask(part["id"].to_pylist(), self.cfg.shard.heldout_fraction, self.forced)
        for row, h in zip(part.select(SOURCE_COLUMNS).to_pylist(), held):
            if h:
                continue  # a held-out document's translation in training would leak the test set
            lang = row["lang"]
            heap = self.heaps[(lang, row["source"] or "")]
            item = (self.key(row["id"], row["lang_score"] or 0.0), row["id"], row)
            if len(heap) < self.limit(lang):
                heapq.heappush(heap, item)
            elif heap and item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
        for lang in {r for r in langs if r in self.langs}:  # a new source shrinks every source's share
            limit = self.limit(lang)
            for (l, _), heap in self.heaps.items():
                while l == lang and len(heap) > limit:
                    heapq.heappop(heap)

    def limit(self, lang: str) -> int:
        """Candidates kept per input source of `lang`: twice its share of `cap` (so sources
        smaller than their share leave room that the others can fill), at most `cap`, at least
        one: memory holds about max(2 x cap, input sources) documents per language, however
        large the corpus."""
        sources = sum(1 for (l, _) in self.heaps if l == lang) or 1
        return min(self.cap, -(-2 * self.cap // sources))


    def ranked(self, lang: str) -> list[dict]:
        """Candidates of `lang`, best first within each input source, sources interleaved."""
        per_source = [[row for _, _, row in sorted(heap, key=lambda t: (-t[0], t[1]))]
                      for (l, _), heap in sorted(self.heaps.items()) if l == lang]
        out = []
        for rank in range(max((len(p) for p in per_source), default=0)):
            out.extend(p[rank] for p in per_source if rank < len(p))
        return out


# -- 2. how many ---------------------------------------------------------------------------

def plan(sources: Sources, train_tokens: dict[str, int], cfg: CorpusConfig) -> list[dict]:
    """Per model: the documents to translate and why that many."""
    a = cfg.augment
    planned: dict[str, int] = defaultdict(int)  # tokens already planned per target
    out = []
    for tm in a.models:
        real = train_tokens.get(tm.target, 0)
        floor = lookup(cfg.shard.token_floor, tm.target, 0) or 0
        share_cap = math.inf if a.max_synthetic_share >= 1 else real * a.max_synthetic_share / (1 - a.max_synthetic_share)
        want = max(floor - real, 0) if (a.fill_to_floor and floor) else math.inf
        want = min(want, share_cap) - planned[tm.target]
        chosen, tokens = [], 0
        if want > 0:
            for row in sources.ranked(tm.source):
                if len(chosen) >= a.max_new_per_language or tokens >= want:
                    break
                chosen.append(row)
                tokens += len(row["text"]) / CHARS_PER_TOKEN.get(row["script"], DEFAULT_CHARS_PER_TOKEN)
        tokens = int(tokens + 0.5)
        planned[tm.target] += tokens
        why = {"target_train_tokens": real, "token_floor": floor,
               "share_cap_tokens": None if math.isinf(share_cap) else int(share_cap),
               "wanted_tokens": None if math.isinf(want) else max(int(want), 0),
               "documents": len(chosen), "source_tokens": tokens}
        if not chosen:
            log.info("augment %s->%s: nothing to translate (%s)", tm.source, tm.target,
                     "no candidates" if want > 0 else "target at its floor or share cap")
        out.append({"model": tm, "docs": chosen, "plan": why})
    return out


# -- 3. work units -------------------------------------------------------------------------

@dataclass
class Unit:
    dir: str
    model: TranslationModel
    rows: int


def _settings(cfg: CorpusConfig) -> dict:
    # what a unit's output depends on (the numeric precision and the batching included), not
    # where or how fast it runs (threads, actors, GPUs per actor)
    keep = {"backend", "device", "compute_type", "token_budget", "max_input_tokens", "max_new_tokens", "num_beams",
            "sample_top_k", "seed", "max_length_ratio", "max_repeats", "check_language", "min_roundtrip_chrf"}
    dumped = cfg.model_dump(mode="json")
    return {"augment": {k: v for k, v in dumped["augment"].items() if k in keep},
            "clean": dumped["clean"], "dedup": dumped["dedup"], "langid": dumped["langid"]}


def make_units(planned: list[dict], out_dir: str, cfg: CorpusConfig) -> list[Unit]:
    """Write each unit's source documents (unless committed already); return the units in order."""
    base = absolute(cfg.unit_cache or join(out_dir, "_units"))  # Ray actors run elsewhere
    settings = json.dumps(_settings(cfg), sort_keys=True)
    lid = langid.models_digest(cfg.langid.models)
    units = []
    for p in planned:
        tm, docs = p["model"], p["docs"]
        model_sha = model_digest(tm.model_dir) + (f"/{model_digest(tm.reverse_model_dir)}" if tm.reverse_model_dir else "")
        step = cfg.augment.docs_per_unit
        for start in range(0, len(docs), step):
            chunk = docs[start : start + step]
            h = hashlib.sha256(f"{VERSION}|{tm.model_dump_json()}|{model_sha}|{settings}|{lid}".encode())
            for row in chunk:
                h.update(f"\x1e{row['id']}\x1f{row['text']}".encode())
            unit = join(base, f"bt-{h.hexdigest()[:20]}")
            if not exists(join(unit, "done.json")):
                write_parquet(join(unit, "sources.parquet"), pa.Table.from_pylist(
                    chunk, schema=pa.schema([DOC_SCHEMA.field(c) for c in SOURCE_COLUMNS])))
            units.append(Unit(unit, tm, len(chunk)))
    return units


# -- 4. one unit ---------------------------------------------------------------------------

def model_digest(model_dir: str) -> str:
    """sha256 of a model directory's files, computed once per process and directory state (a
    multi-GB model is not hashed again for every unit; a changed file changes the listing)."""
    from pathlib import Path

    listing = tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(model_dir).rglob("*")
                           if p.is_file())) if Path(model_dir).is_dir() else ()
    return _digest(model_dir, listing)


@lru_cache(maxsize=16)
def _digest(model_dir: str, listing: tuple) -> str:
    return sha256_dir(model_dir)


def model_label(tm: TranslationModel, backend: str, model_sha: str) -> str:
    return f"backtranslation:{tm.source}->{tm.target}:{os.path.basename(tm.model_dir.rstrip('/'))}@{model_sha[:8]}:{backend}"


def check_translations(texts: list[str], scripts: list[str], outputs: list[str | None], errors: list[str | None],
                       tm: TranslationModel, cfg: CorpusConfig, translators: "Translators",
                       direction: tuple[str, str] | None = None) -> list[tuple[str, str] | None]:
    """(reason, detail) per translation that fails quality control, None where it passes:
    `quality.check`, then language ID of the output, then the optional round trip (`direction`:
    (source, target) labels when they are not the model's own, e.g. the way back of a paraphrase)."""
    a = cfg.augment
    src, tgt = direction or (tm.source, tm.target)
    tgt_script = tgt.partition("_")[2]
    verdicts = [quality.check(t, o, (src, s), (tgt, tgt_script), max_length_ratio=a.max_length_ratio,
                              max_repeats=a.max_repeats, error=e)
                for t, o, s, e in zip(texts, outputs, scripts, errors)]
    if a.check_language:
        idx = [i for i, v in enumerate(verdicts) if v is None]
        if idx:
            predicted, scores = langid.predict([outputs[i] for i in idx], cfg.langid)
            for i, lab, sc in zip(idx, predicted, scores):
                if language(lab) != language(tgt):
                    verdicts[i] = ("wrong_language", f"{lab}:{sc:.3f}, expected {tgt}")
    if a.min_roundtrip_chrf is not None and tm.reverse_model_dir and direction is None:
        idx = [i for i, v in enumerate(verdicts) if v is None]
        back, _, _, _ = _translate_docs(translators.get(tm.reverse_model_dir), [outputs[i] for i in idx],
                                        [tgt_script] * len(idx), tm.target, tm.source)
        for i, score in zip(idx, quality.roundtrip_chrf([texts[i] for i in idx], back)):
            if score < a.min_roundtrip_chrf:
                verdicts[i] = ("roundtrip_chrf", f"{score:.1f} < {a.min_roundtrip_chrf}")
    return verdicts


class Translators:
    """The translation models of one process (an actor, or the driver), each loaded once."""

    def __init__(self, cfg: CorpusConfig):
        self.cfg = cfg
        self.loaded: dict[str, object] = {}

    def get(self, model_dir: str):
        if model_dir not in self.loaded:
            from ..translation.backends import load

            a = self.cfg.augment
            self.loaded[model_dir] = load(
                a.backend, model_dir, max_input_tokens=a.max_input_tokens, max_new_tokens=a.max_new_tokens,
                batch_tokens=a.token_budget, num_beams=a.num_beams, sample_top_k=a.sample_top_k, seed=a.seed,
                device=a.device, threads=a.threads,
                **({"compute_type": a.compute_type, "cache_dir": a.ct2_cache} if a.backend == "ct2" else {}))
        return self.loaded[model_dir]


def _translate_docs(backend, texts: list[str], scripts: list[str], src: str, tgt: str, progress=None):
    """Documents -> (translations or None, first error per document, the pieces of each)."""
    tgt_script = tgt.partition("_")[2]
    pieces = [sentences.split(t, s or "Zyyy") for t, s in zip(texts, scripts)]
    flat = [p.text for ps in pieces for p in ps]
    lengths = backend.lengths(flat, src, tgt) if flat else []
    if flat and max(lengths) > backend.max_input_tokens:  # cut the sentences longer than the model's input budget
        def fits(s: str) -> bool:
            return backend.lengths([s], src, tgt)[0] <= backend.max_input_tokens

        pieces = [sentences.split(t, s or "Zyyy", fits) for t, s in zip(texts, scripts)]
        flat = [p.text for ps in pieces for p in ps]
        lengths = backend.lengths(flat, src, tgt)
    out, errors = backend.translate(flat, src, tgt, progress, lengths)
    docs, errs, at = [], [], 0
    for ps in pieces:
        idx = range(at, at + len(ps))
        at += len(ps)
        err = next((errors[i] for i in idx if i in errors), None)
        errs.append(err)
        docs.append(None if err or not ps else sentences.join([out[i] for i in idx], ps, tgt_script))
    return docs, errs, pieces, [out[i] for i in range(len(flat))]


def translate_unit(unit_dir: str, tm: TranslationModel, cfg: CorpusConfig, translators: Translators,
                   progress=None) -> dict:
    """Translate one unit and commit it (docs, rejects, pairs, done.json last); a committed
    unit is returned as it is."""
    done_uri = join(unit_dir, "done.json")
    if exists(done_uri):
        return {**read_json(done_uri), "resumed": True}
    t0 = time.monotonic()
    src_docs = read_parquet(join(unit_dir, "sources.parquet"))
    rows = src_docs.to_pylist()
    backend = translators.get(tm.model_dir)
    texts = [r["text"] for r in rows]
    outputs, errors, pieces, flat_out = _translate_docs(backend, texts, [r["script"] for r in rows], tm.source,
                                                        tm.target, progress)
    tgt_script = tm.target.partition("_")[2]
    label = model_label(tm, backend.name, model_digest(tm.model_dir))
    ids = [f"bt-{tm.target}-{r['id']}" for r in rows]
    docs = pa.table({
        "id": pa.array(ids, pa.string()), "text": pa.array([o or "" for o in outputs], pa.string()),
        "lang": pa.array([tm.target] * len(rows), pa.string()), "lang_score": pa.nulls(len(rows), pa.float32()),
        "lang_top": pa.nulls(len(rows), DOC_SCHEMA.field("lang_top").type),
        "script": pa.array([tgt_script] * len(rows), pa.string()), "source": pa.array([label] * len(rows)),
        "augmented": pa.array([True] * len(rows)), "origin_id": pa.array([r["id"] for r in rows], pa.string()),
        "cluster_size": pa.array([1] * len(rows), pa.int32())}, schema=DOC_SCHEMA)

    # quality control of the translation itself
    verdicts = check_translations(texts, [r["script"] or "Zyyy" for r in rows], outputs, errors, tm, cfg, translators)
    passed, failed = split(docs, [v is None for v in verdicts])
    rejects = [rejects_from_docs(failed, STAGE, [v[0] for v in verdicts if v], [v[1] for v in verdicts if v])]

    # then the corpus's own cleaning, language-ID scores and quality filters, as for real text
    for step in (lambda d: clean.normalize(d, cfg.clean), lambda d: langid.identify(d, cfg.langid),
                 lambda d: clean.filter_quality(d, cfg.clean)):
        passed, rej = step(passed)
        rejects.append(rej)
    keys = pa.array([dedup.dedup_key(x) for x in passed["text"].to_pylist()], pa.string())
    width = cfg.dedup.bands * cfg.dedup.rows_per_band if cfg.dedup.near else 1
    sigs = dedup.signatures(passed, cfg.dedup) if cfg.dedup.near else np.zeros((passed.num_rows, 1), np.uint32)
    passed = passed.append_column("dedup_key", keys).append_column(
        "minhash", pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), width))

    # sentence pairs of the documents that passed: synthetic translation pairs
    kept_ids = set(passed["id"].to_pylist())
    pair_rows, at = [], 0
    for r, doc_id, ps in zip(rows, ids, pieces):
        for k, p in enumerate(ps):
            if doc_id in kept_ids and flat_out[at + k]:
                pair_rows.append({"id": f"{doc_id}#{k}", "src_lang": tm.source, "tgt_lang": tm.target,
                                  "src_text": p.text, "tgt_text": flat_out[at + k], "src_score": r["lang_score"],
                                  "tgt_score": None, "src_script": r["script"], "tgt_script": tgt_script,
                                  "source": label, "synthetic": True, "origin_id": r["id"]})
        at += len(ps)
    write_parquet(join(unit_dir, "docs.parquet"), passed)
    write_parquet(join(unit_dir, "rejects.parquet"), concat(rejects, REJECT_SCHEMA))
    write_parquet(join(unit_dir, "pairs.parquet"), pa.Table.from_pylist(pair_rows, schema=PAIR_SCHEMA))
    info = {"uri": f"{tm.source}->{tm.target}", "dir": unit_dir, "input": len(rows), "kept": passed.num_rows,
            "sentences": len(flat_out), "model": label, "seconds": {"augment": time.monotonic() - t0},
            "host": socket.gethostname(), "pid": os.getpid()}
    write_json(done_uri, info)  # commit point
    return {**info, "resumed": False}


# -- 5. where ------------------------------------------------------------------------------

class Progress:
    """Logs sentences (or units) done, rate and ETA, at most every `every` seconds."""

    def __init__(self, what: str, total: int, unit: str = "sentences", every: float = 10.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.done, self.start, self.last = 0, time.monotonic(), 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            log.info("augment %s: %d/%d %s, %.1f %s/s, ETA %.0f s", self.what, self.done, self.total, self.unit,
                     rate, self.unit, eta)


class TranslateActor:
    """Ray Data actor: the models loaded once, then units streamed through it."""

    def __init__(self, cfg_json: dict, tm_json: dict):
        self.cfg = CorpusConfig.model_validate(cfg_json)
        self.tm = TranslationModel.model_validate(tm_json)
        self.translators = Translators(self.cfg)

    def __call__(self, batch: dict) -> dict:
        infos = [translate_unit(str(u), self.tm, self.cfg, self.translators) for u in batch["unit"]]
        return {"unit": [i["dir"] for i in infos], "info": [json.dumps(i) for i in infos]}


def run_units(units: list[Unit], cfg: CorpusConfig, engine: str, ray_cfg: RayConfig | None = None) -> list[dict]:
    """Every unit committed, in unit order (in-process, or on a Ray actor pool per model)."""
    results: dict[str, dict] = {}
    todo = []
    for u in units:
        done = join(u.dir, "done.json")
        if exists(done):
            results[u.dir] = {**read_json(done), "resumed": True}
        else:
            todo.append(u)
    by_model: dict[str, list[Unit]] = defaultdict(list)
    for u in todo:
        by_model[u.model.model_dump_json()].append(u)
    for group in by_model.values():
        tm = group[0].model
        what = f"{tm.source}->{tm.target}"
        if engine == "ray":
            results.update(_run_on_ray(group, tm, cfg, ray_cfg, what))
            continue
        translators = Translators(cfg)
        documents = sum(u.rows for u in group)
        progress = Progress(f"{what} ({len(group)} units, {documents} documents)", documents, "documents")
        for u in group:
            info = translate_unit(u.dir, tm, cfg, translators)
            progress(u.rows)
            results[u.dir] = {**info, "finished_at": time.monotonic()}
    return [results[u.dir] for u in units]


def _run_on_ray(group: list[Unit], tm: TranslationModel, cfg: CorpusConfig, ray_cfg: RayConfig | None,
                what: str) -> dict[str, dict]:
    import ray

    from ..training.raytrain import init_ray

    init_ray(ray_cfg or RayConfig())
    a = cfg.augment
    ds = ray.data.from_items([{"unit": u.dir} for u in group], override_num_blocks=len(group))
    out = ds.map_batches(TranslateActor, batch_size=1, concurrency=min(a.actors, len(group)),
                         num_cpus=a.cpus_per_actor, num_gpus=a.gpus_per_actor or None,
                         fn_constructor_kwargs={"cfg_json": cfg.model_dump(mode="json"),
                                                "tm_json": tm.model_dump(mode="json")})
    progress = Progress(f"{what} on {a.actors} Ray actor(s)", sum(u.rows for u in group), "documents", every=0)
    results, rows = {}, {u.dir: u.rows for u in group}
    start, sentences_done = time.monotonic(), 0
    for row in out.iter_rows():
        info = json.loads(row["info"])
        results[info["dir"]] = {**info, "finished_at": time.monotonic()}
        progress(rows[info["dir"]])
        sentences_done += info.get("sentences", 0)
    log.info("augment %s: %d sentences in %.1f s on Ray (%.1f sentences/s)", what, sentences_done,
             time.monotonic() - start, sentences_done / max(time.monotonic() - start, 1e-9))
    return results


def augment(sources: Sources, train_tokens: dict[str, int], out_dir: str, cfg: CorpusConfig, engine: str,
            ray_cfg: RayConfig | None = None) -> tuple[list[dict], dict]:
    """Plan, make and run the units; return (unit infos in order, the report's plan section)."""
    if not cfg.augment.models:
        log.info("augment: skipped, no translation model configured (corpus.augment.models is empty)")
        return [], {}
    planned = plan(sources, train_tokens, cfg)
    units = make_units(planned, out_dir, cfg)
    infos = run_units(units, cfg, engine, ray_cfg)
    section = {f"{p['model'].source}->{p['model'].target}": p["plan"] for p in planned}
    reused = sum(1 for i in infos if i["resumed"])
    for key, p in section.items():
        mine = [i for i in infos if i["uri"] == key]
        p.update(units=len(mine), sentences=sum(i.get("sentences", 0) for i in mine),
                 seconds=round(sum(i["seconds"]["augment"] for i in mine if not i["resumed"]), 3))
    section["_units"] = {"total": len(infos), "reused": reused, "processed": len(infos) - reused}
    return infos, section


def read_pairs(infos: list[dict], keep_ids: set[str]) -> pa.Table:
    """The synthetic sentence pairs of the translated documents that stayed in the corpus."""
    parts = []
    for info in infos:
        t = read_parquet(join(info["dir"], "pairs.parquet"))
        if t.num_rows:
            doc = [i.rpartition("#")[0] for i in t["id"].to_pylist()]
            parts.append(t.filter(pa.array([d in keep_ids for d in doc], pa.bool_())))
    return concat(parts, PAIR_SCHEMA)
