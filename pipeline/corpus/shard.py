"""Shard: Parquet shards per language and split, and the manifest that commits them.

Layout under the corpus directory:
    shards/<lang>/train-00000.parquet, shards/<lang>/heldout-00000.parquet, ...
    unidentified/und_<Script>/part-00000.parquet   documents language ID was not sure of, with
                                                   their candidates (`lang_top`); never trained on
    manifest.json   (written last: a shard not listed in it does not exist)

Per shard the manifest records rows, estimated tokens, bytes and sha256; per language the
totals, the token budget (estimated training tokens raised to `token_floor`, lowered to
`token_cap`) and the temperature-sampling weight q_i = p_i^alpha / sum_j p_j^alpha, where p_i
is the language's share of the budgeted training tokens.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import ShardConfig
from ..language_codes import is_unidentified, lookup
from ..storage import join, put_local, read_parquet, remove

MANIFEST = "manifest.json"
UNIDENTIFIED = "unidentified"  # folder (and pseudo-split) of the und_<Script> documents


MIN_DOCS_FOR_HELDOUT = 5


def _buckets(ids: list[str]) -> list[int]:
    return [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=4).digest(), "big") % 10_000 for i in ids]


def heldout_mask(ids: list[str], fraction: float, forced: set[str] | None = None) -> list[bool]:
    """Deterministic held-out choice by a hash of the document id, plus the `forced` ids.
    `forced=None` means `ids` are a whole language: if it has at least MIN_DOCS_FOR_HELDOUT
    documents and none is held out by hash, the one with the lowest hash is (so every language
    gets evaluated). For a language streamed in batches, compute `forced` once with
    `ForcedHeldout` so the choice does not depend on the batching."""
    if fraction <= 0 or not ids:
        return [False] * len(ids)
    buckets = _buckets(ids)
    mask = [b < int(fraction * 10_000) for b in buckets]
    if forced is None:
        if not any(mask) and len(ids) >= MIN_DOCS_FOR_HELDOUT:
            mask[buckets.index(min(buckets))] = True
        return mask
    return [m or i in forced for m, i in zip(mask, ids)]


class ForcedHeldout:
    """The forced held-out documents of `heldout_mask`, over a language seen batch by batch:
    feed every (kept, original) document once, read `ids` at the end. Memory: one entry per
    language."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.seen: dict[str, list] = {}  # lang -> [docs, any held out by hash, (lowest bucket, id)]

    def add(self, langs: list[str], ids: list[str]) -> None:
        if self.fraction <= 0:
            return
        for lang, i, b in zip(langs, ids, _buckets(ids)):
            st = self.seen.setdefault(lang, [0, False, (10_000, "")])
            st[0] += 1
            st[1] = st[1] or b < int(self.fraction * 10_000)
            st[2] = min(st[2], (b, i))

    @property
    def ids(self) -> set[str]:
        return {low[1] for n, held, low in self.seen.values() if n >= MIN_DOCS_FOR_HELDOUT and not held}


def temperature_weights(sizes: dict[str, float], alpha: float) -> dict[str, float]:
    total = sum(sizes.values())
    if total <= 0:
        return {k: 0.0 for k in sizes}
    powered = {k: (v / total) ** alpha if v > 0 else 0.0 for k, v in sizes.items()}
    norm = sum(powered.values())
    return {k: v / norm for k, v in powered.items()}


# Characters per token of a typical multilingual subword tokenizer, by script: an estimate for
# budgets and sampling before any tokenizer exists (the trained tokenizer's fertility per
# language is reported by the train flow).
CHARS_PER_TOKEN = {"Latn": 4.0, "Cyrl": 4.0, "Grek": 3.5, "Armn": 3.5, "Geor": 3.0, "Arab": 3.5, "Hebr": 3.5,
                   "Deva": 3.0, "Beng": 3.0, "Taml": 3.0, "Telu": 3.0, "Thai": 3.0, "Hang": 2.0, "Hani": 1.3,
                   "Jpan": 1.5, "Kana": 1.5}
DEFAULT_CHARS_PER_TOKEN = 3.0


def estimate_tokens(table: pa.Table) -> int:
    if table.num_rows == 0:
        return 0
    chars = pc.utf8_length(table["text"]).to_numpy(zero_copy_only=False)
    per = [CHARS_PER_TOKEN.get(s, DEFAULT_CHARS_PER_TOKEN) for s in table["script"].to_pylist()]
    return int(sum(c / p for c, p in zip(chars, per)) + 0.5)


def budget(tokens: int, lang: str, cfg: ShardConfig) -> int:
    """Training tokens a language should contribute: its own, raised to its floor (upsampled)
    and lowered to its cap; keys name a language or '*' for all."""
    floor = lookup(cfg.token_floor, lang, 0)
    cap = lookup(cfg.token_cap, lang)
    out = max(tokens, floor) if tokens else 0
    return min(out, cap) if cap is not None else out


def _text_bytes(table: pa.Table) -> int:
    if table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(pc.cast(table["text"], pa.binary()))).as_py() or 0)


class RollingParquet:
    """Parquet files of at most `max_rows` rows under one name pattern, written through a
    local temporary file and moved into place atomically when full or closed. Rows are
    buffered up to `row_group_rows` so row groups suit streaming readers; memory stays at
    one buffer per writer whatever the corpus size."""

    def __init__(self, name, schema: pa.Schema, max_rows: int, compression: str, row_group_rows: int = 1000,
                 max_bytes: int | None = None):
        self.name, self.schema, self.max_rows, self.max_bytes = name, schema, max_rows, max_bytes
        self.compression, self.row_group_rows = compression, row_group_rows
        self.files: list[dict] = []
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.buffered_bytes = 0
        self._writer = None
        self._tmp = None
        self._rows = 0
        self._tokens = 0
        self._bytes = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            take = min(self.max_rows - self._rows - self._buffered, self.row_group_rows - self._buffered,
                       table.num_rows)
            self._buffer.append(table.slice(0, take))
            self._buffered += take
            self.buffered_bytes += self._buffer[-1].nbytes
            table = table.slice(take)
            if (self._buffered >= self.row_group_rows or self._rows + self._buffered >= self.max_rows
                    or (self.max_bytes and self._bytes + self.buffered_bytes >= self.max_bytes)):
                self._flush()
            if self._rows >= self.max_rows or (self.max_bytes and self._bytes >= self.max_bytes):
                self._close_file()

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        if self._writer is None:
            fd, self._tmp = tempfile.mkstemp(suffix=".parquet")
            os.close(fd)
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=self.compression)
        table = pa.concat_tables(self._buffer).cast(self.schema)
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self._bytes += table.nbytes
        if "script" in table.column_names:
            self._tokens += estimate_tokens(table)
        self._rows += self._buffered
        self._buffer, self._buffered, self.buffered_bytes = [], 0, 0

    def _close_file(self) -> None:
        self._flush()
        if self._writer is None:
            return
        self._writer.close()
        uri = self.name(len(self.files))
        meta = put_local(self._tmp, uri)
        os.remove(self._tmp)
        self.files.append({"uri": uri, "rows": self._rows, "tokens": self._tokens, **meta})
        self._writer, self._tmp, self._rows, self._tokens, self._bytes = None, None, 0, 0, 0

    def close(self) -> list[dict]:
        self._close_file()
        return self.files


class ShardSink:
    """Streaming shard writer: documents of any languages go in batch by batch, in corpus
    order; per language and split (train / heldout) they become shards of at most
    `max_rows_per_shard` rows. `close()` returns the manifest body (not yet written)."""

    SPLITS = ("train", "heldout")
    BUFFER_BYTES = 32 << 20  # all writers' buffers together; past it every buffer is flushed

    def __init__(self, corpus_dir: str, cfg: ShardConfig, schema: pa.Schema, forced_heldout: set[str] | None = None):
        for folder in ("shards", UNIDENTIFIED):  # a rerun rewrites every shard; stale files must not linger
            remove(join(corpus_dir, folder))
        self.dir, self.cfg, self.schema = corpus_dir, cfg, schema
        self.writers: dict[tuple[str, str], RollingParquet] = {}
        self.stats: dict[str, dict] = {}
        self.unidentified: dict[str, dict] = {}  # und_<Script> -> rows, best candidates
        self.forced = forced_heldout  # None: every add() holds a whole language (see heldout_mask)

    def _writer(self, lang: str, split: str) -> RollingParquet:
        key = (lang, split)
        if key not in self.writers:
            folder = UNIDENTIFIED if split == UNIDENTIFIED else "shards"
            name = "part" if split == UNIDENTIFIED else split
            self.writers[key] = RollingParquet(
                lambda n, l=lang, f=folder, s=name: join(self.dir, f"{f}/{l}/{s}-{n:05d}.parquet"),
                self.schema, self.cfg.max_rows_per_shard, self.cfg.compression, self.cfg.row_group_rows,
                self.cfg.max_shard_bytes)
        return self.writers[key]

    def _add_unidentified(self, lang: str, part: pa.Table) -> None:
        info = self.unidentified.setdefault(lang, {"rows": 0, "bytes": 0, "files": 0, "candidates": {}})
        info["rows"] += part.num_rows
        for top in part["lang_top"].to_pylist():
            best = top[0]["lang"] if top else lang
            info["candidates"][best] = info["candidates"].get(best, 0) + 1
        self._writer(lang, UNIDENTIFIED).write(part)

    def add(self, docs: pa.Table) -> None:
        for lang in sorted(set(docs["lang"].to_pylist())):
            part = docs.filter(pc.equal(docs["lang"], lang))
            if is_unidentified(lang):
                self._add_unidentified(lang, part)
                continue
            augmented = part["augmented"].to_pylist()
            held = [h and not a for h, a in zip(heldout_mask(part["id"].to_pylist(), self.cfg.heldout_fraction, self.forced),
                                                augmented)]
            held_arr = pa.array(held, pa.bool_())
            info = self.stats.setdefault(lang, {"rows": 0, "augmented_rows": 0, "shards": 0, "bytes": 0,
                                                "train_rows": 0, "train_text_bytes": 0, "train_tokens": 0,
                                                "heldout_rows": 0, "heldout_text_bytes": 0, "heldout_tokens": 0})
            info["rows"] += part.num_rows
            info["augmented_rows"] += int(sum(augmented))
            for split, table in (("train", part.filter(pc.invert(held_arr))), ("heldout", part.filter(held_arr))):
                if table.num_rows:
                    info[f"{split}_rows"] += table.num_rows
                    info[f"{split}_text_bytes"] += _text_bytes(table)
                    info[f"{split}_tokens"] += estimate_tokens(table)
                    self._writer(lang, split).write(table)
        if sum(w.buffered_bytes for w in self.writers.values()) > self.BUFFER_BYTES:
            for w in self.writers.values():
                w.flush()

    def close(self) -> dict:
        shards: list[dict] = []
        und_files: list[dict] = []
        for (lang, split) in sorted(self.writers, key=lambda k: (k[0], self.SPLITS.index(k[1]) if k[1] in self.SPLITS else 9)):
            for f in self.writers[(lang, split)].close():
                rel = f["uri"][len(self.dir.rstrip("/")) + 1 :]
                entry = {"path": rel, "lang": lang, "split": split, "rows": f["rows"],
                         "tokens": f["tokens"], "bytes": f["bytes"], "sha256": f["sha256"]}
                stats = self.unidentified if split == UNIDENTIFIED else self.stats
                (und_files if split == UNIDENTIFIED else shards).append(entry)
                stats[lang]["files" if split == UNIDENTIFIED else "shards"] += 1
                stats[lang]["bytes"] += f["bytes"]
        for info in self.unidentified.values():
            info["candidates"] = dict(sorted(info["candidates"].items(), key=lambda kv: (-kv[1], kv[0])))
        languages = dict(sorted(self.stats.items()))
        for lang, info in languages.items():
            info["budget_tokens"] = budget(info["train_tokens"], lang, self.cfg)
            info["budget_ratio"] = round(info["budget_tokens"] / info["train_tokens"], 4) if info["train_tokens"] else 0.0
        # p_i over the budgeted training tokens: caps and floors shape the sampling weights
        weights = temperature_weights({k: v["budget_tokens"] for k, v in languages.items()}, self.cfg.alpha)
        total_train = sum(v["budget_tokens"] for v in languages.values()) or 1
        for lang, info in languages.items():
            info["share"] = round(info["budget_tokens"] / total_train, 6)
            info["weight"] = round(weights[lang], 6)
        return {
            "alpha": self.cfg.alpha,
            "tokens_estimated_with": "characters per token by script (pipeline/corpus/shard.py CHARS_PER_TOKEN)",
            "totals": {"rows": sum(v["rows"] for v in languages.values()),
                       "train_tokens": sum(v["train_tokens"] for v in languages.values()),
                       "bytes": sum(v["bytes"] for v in languages.values()),
                       "shards": len(shards), "languages": len(languages)},
            "languages": languages,
            "shards": shards,
            # documents whose language was not identified with confidence: kept, never trained on
            "unidentified": {"rows": sum(v["rows"] for v in self.unidentified.values()),
                             "scripts": dict(sorted(self.unidentified.items())), "files": und_files},
        }


class MissingCorpusError(FileNotFoundError):
    """A stage that needs a prepared corpus found none."""


def read_manifest(corpus_dir: str) -> dict:
    """The manifest of a prepared corpus; a clear error naming the folder and the command that
    prepares it when there is none (a training stage run before `prepare`)."""
    from ..storage import exists, read_json

    uri = f"{corpus_dir.rstrip('/')}/{MANIFEST}"
    if not exists(uri):
        raise MissingCorpusError(
            f"no prepared corpus at {corpus_dir} ({MANIFEST} is missing): prepare it first with "
            f"`babelforge prepare INPUT... --out {corpus_dir}` (or run the whole pipeline: `babelforge run`), "
            f"or point --corpus at a prepared corpus")
    return read_json(uri)


class CorruptShardError(ValueError):
    """A shard's bytes differ from what the manifest committed."""


def verify_corpus(manifest: dict, corpus_dir: str, threads: int = 8) -> int:
    """Check every file the manifest lists (document shards, unidentified files, pair shards)
    against its committed size and sha256 before anything trains on them (files hashed in
    parallel threads); a missing, truncated or altered file is a `CorruptShardError` naming it.
    Returns the number of files checked."""
    from concurrent.futures import ThreadPoolExecutor

    from ..storage import get_fs, sha256_file

    files = [*manifest.get("shards", []), *(manifest.get("unidentified") or {}).get("files", []),
             *(manifest.get("parallel") or {}).get("files", [])]

    def check(entry: dict) -> str | None:
        uri = join(corpus_dir, entry["path"])
        if "sha256" not in entry or "bytes" not in entry:
            return f"{uri}: the manifest records no sha256 and size for it (not written by `prepare`)"
        fs, path = get_fs(uri)
        if not fs.exists(path):
            return f"{uri}: missing"
        size = fs.size(path)
        if size != entry["bytes"]:
            return f"{uri}: {size} bytes, the manifest committed {entry['bytes']}"
        digest = sha256_file(uri)
        return None if digest == entry["sha256"] else f"{uri}: sha256 {digest}, the manifest committed {entry['sha256']}"

    with ThreadPoolExecutor(max(1, threads)) as pool:
        bad = [b for b in pool.map(check, files) if b]
    if bad:
        raise CorruptShardError(f"{corpus_dir}: {len(bad)} of {len(files)} corpus files differ from {MANIFEST} "
                                f"(corrupted or altered since `prepare` wrote them; prepare the corpus again): "
                                + "; ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    return len(files)


def mixing_plan(manifest: dict, total_rows: int, alpha: float | None = None) -> dict[str, int]:
    """Rows to draw per language for a stream of `total_rows` training rows, by temperature
    sampling over the languages' training text (alpha from the manifest unless given).
    A language whose share exceeds its rows is repeated (upsampled); the others are subsampled."""
    langs = {k: v for k, v in manifest["languages"].items() if v.get("train_rows", 0) > 0}
    if alpha is None:
        weights = {k: v["weight"] for k, v in langs.items()}
    else:
        weights = temperature_weights({k: v.get("budget_tokens", v["train_text_bytes"]) for k, v in langs.items()},
                                      alpha)
    return plan_rows(weights, total_rows)


def plan_rows(weights: dict[str, float], total_rows: int) -> dict[str, int]:
    """`total_rows` split by weight (languages, or language pairs), in whole rows: the rounding
    remainder goes to the largest weights, so the plan sums to `total_rows`."""
    plan = {k: int(w * total_rows) for k, w in weights.items()}
    for k in sorted(weights, key=lambda k: -weights[k])[: total_rows - sum(plan.values())]:
        plan[k] += 1
    return dict(sorted(plan.items()))


def read_texts(manifest: dict, corpus_dir: str, lang: str, split: str = "heldout") -> list[str]:
    """Every text of one language and split (held-out text for evaluation and fertility)."""
    return [t for uri in shard_paths(manifest, corpus_dir, split, [lang])
            for t in read_parquet(uri, ["text"])["text"].to_pylist()]


def shard_paths(manifest: dict, corpus_dir: str, split: str = "train", langs: list[str] | None = None) -> list[str]:
    return [
        join(corpus_dir, s["path"])
        for s in manifest["shards"]
        if s["split"] == split and (langs is None or s["lang"] in langs)
    ]
