"""Deduplication out of core: the decisions of `dedup.global_dedup` (the in-memory reference)
made by map and reduce stages over hash partitions spilled to Parquet, so no process holds
state for the whole corpus and the stages run as Ray tasks on any node (spill under
`out_dir/_dedup/`, local or `s3://`).

Rows are numbered over the committed work units in input order (`Unit.offset + i`). Every
reduce stage writes its output sorted by row, and a unit reads its own range of it (row
group statistics prune the rest). The stages, P partitions:

 1. ids       map: (id, row) by hash of the id's family (the id without `~N` suffixes);
              reduce: repeats of an id get `<id>~N` (`rename_repeats`), all of a family in
              one partition, so the rule needs no global set.
 2. exact     map: final ids, and (dedup key, row, id) by hash of the key;
              reduce: the first row of a key is kept, later ones are exact duplicates.
 3. bands     map: MinHash band keys (band, key, row) of the exact survivors, by hash of the key;
              reduce: groups of two or more rows (same band, key and language) = candidates.
 4. link      a signature lookup (map per unit: the requested rows' signatures, to the
              partition that asked); reduce: each candidate linked to the first earlier member
              of its group whose estimated Jaccard reaches the threshold, as the reference does.
 5. components  connected components of the links, min row as root, by alternating
              large-star / small-star rounds (Kiveris et al., "Connected Components in
              MapReduce and Beyond", 2014) over edges partitioned by node, until a round
              leaves the edge set unchanged; each partition holds only its nodes' edges.
 6. roots     at each root's partition: its members, their similarity to it (signature
              lookup) and its id; cluster sizes counted where they end.

Memory per task: one partition's share of a stage (rows / P) or one unit; the driver keeps
the unit list and per-stage file lists only (a corpus of one partition runs every stage in
the driver, its spill Arrow tables in memory). Each map task writes one file per partition
(U x P files a stage): practical to a few million; past that the next step is one data file
per map task sorted by partition with an index of byte offsets, as Spark's sort-based shuffle
(bench/RESULTS.md, issue 13).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from ..config import CorpusConfig
from ..storage import get_fs, join, read_parquet, remove, write_parquet
from .dedup import _band_keys, _mix, lang_hashes, rename_repeats
from .shard import ForcedHeldout

log = logging.getLogger(__name__)

ROW_GROUP = 65_536
SMALL_GROUP = 48  # candidate groups up to this size are compared pair by pair, all at once
COMPACT_EDGES = 1 << 20  # links gathered before they are deduplicated
PAIR_CHUNK = 32_768  # signature pairs compared per NumPy call (~26 MB of signatures)


@dataclass(frozen=True)
class Unit:
    dir: str  # committed work unit (docs.parquet: id, lang, dedup_key, minhash...)
    offset: int  # global row of its first document
    rows: int


def _part_u64(values: np.ndarray, parts: int) -> np.ndarray:
    return (_mix(values.astype(np.uint64)) % np.uint64(parts)).astype(np.int64)


def _part_str(values: list[str], parts: int) -> np.ndarray:
    return np.fromiter((xxhash.xxh64_intdigest(v.encode()) % parts for v in values), np.int64, len(values))


def _family(doc_id: str) -> str:
    """The id without its `~N` suffixes ('a~2~1' -> 'a'), as `(~\\d+)+$` would strip them, in
    time linear in the id: that regex, searched, restarts at every `~` and is quadratic in a
    long run of suffixes (a 16 KB id took 0.85 s, a 1 MB one hours)."""
    tail = len(doc_id) - doc_id.endswith("\n")  # `$` also matched before a final newline
    end = tail
    while (cut := doc_id.rfind("~", 0, end)) >= 0 and doc_id[cut + 1:end].isdecimal():  # \d: category Nd
        end = cut
    return doc_id[:end] + doc_id[tail:]


# -- spill files -------------------------------------------------------------------------------
# A spill is a folder (local or s3://) of Parquet files, or, for a corpus of one partition done
# in the driver, `MEMORY` + an id: the same names, holding Arrow tables in this process (their
# total is bounded by `partition_rows`, as a task's memory is) with no encoding or file round trip.

MEMORY = "memory-spill:"
_tables: dict[str, pa.Table] = {}


def _file(spill: str, stage: str, src: int, dst: int | None = None) -> str:
    return join(spill, stage, f"{src:06d}.parquet" if dst is None else f"{src:06d}-{dst:05d}.parquet")


def _write(uri: str, table: pa.Table, row_group: int | None = None) -> int:
    """Store a spill table; return the bytes written (0 in memory)."""
    if uri.startswith(MEMORY):
        _tables[uri] = table
        return 0
    return write_parquet(uri, table, "lz4", row_group)["bytes"]


def _read(uri: str, columns: list[str] | None = None) -> pa.Table:
    if uri.startswith(MEMORY):
        return _tables[uri].select(columns) if columns else _tables[uri]
    return read_parquet(uri, columns)


def _remove(spill: str) -> None:
    if spill.startswith(MEMORY):
        for k in [k for k in _tables if k.startswith(spill)]:
            del _tables[k]
    else:
        remove(spill)


def _scatter(spill: str, stage: str, src: int, table: pa.Table, dest: np.ndarray) -> tuple[list[int], int]:
    """Write `table`'s rows to `stage/<src>-<dst>.parquet` by destination partition; return the
    partitions written and the bytes."""
    written, nbytes = [], 0
    if not table.num_rows:
        return written, nbytes
    order = np.argsort(dest, kind="stable")
    dest_sorted = dest[order]
    starts = np.flatnonzero(np.r_[True, dest_sorted[1:] != dest_sorted[:-1]])
    ends = np.r_[starts[1:], len(dest_sorted)]
    for s, e in zip(starts, ends):
        q = int(dest_sorted[s])
        nbytes += _write(_file(spill, stage, src, q), table.take(order[s:e]))
        written.append(q)
    return written, nbytes


def _gather(spill: str, stage: str, sources: list[int], dst: int, schema: pa.Schema) -> pa.Table:
    tables = [_read(_file(spill, stage, s, dst)) for s in sources]
    return pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()


def _write_sorted(spill: str, stage: str, part: int, table: pa.Table) -> int:
    """A reduce output, sorted by row for the units' range reads."""
    table = table.take(pc.sort_indices(table, [("row", "ascending")]))
    return _write(_file(spill, stage, part), table, ROW_GROUP)


def _range(uri: str, lo: int, hi: int, columns: list[str] | None = None) -> pa.Table:
    """Rows with lo <= row < hi of a file sorted by row, reading only the row groups whose
    statistics overlap."""
    if uri.startswith(MEMORY):
        t = _read(uri, columns)
        return t.filter(pc.and_(pc.greater_equal(t["row"], lo), pc.less(t["row"], hi)))
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        md = pf.metadata
        col = md.schema.to_arrow_schema().get_field_index("row")
        groups = []
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(col).statistics
            if st is None or not st.has_min_max or (st.max >= lo and st.min < hi):
                groups.append(i)
        t = pf.read_row_groups(groups, columns) if groups else pf.schema_arrow.empty_table()
    if columns:
        t = t.select(columns)  # an empty table has every column
    rows = t["row"]
    return t.filter(pc.and_(pc.greater_equal(rows, lo), pc.less(rows, hi)))


def _ranges(spill: str, stage: str, parts: list[int], unit: Unit, columns: list[str] | None = None) -> pa.Table:
    tables = [_range(_file(spill, stage, p), unit.offset, unit.offset + unit.rows, columns) for p in parts]
    return pa.concat_tables(tables) if tables else None


DOC_COLUMNS = ["id", "lang", "dedup_key", "minhash"]  # what the stages read of a unit's documents


def _docs(plan: Plan, unit: Unit, columns: list[str]) -> pa.Table:
    """Columns of a unit's documents; with the spill in memory, read once and kept there."""
    if not plan.spill.startswith(MEMORY):
        return read_parquet(join(unit.dir, "docs.parquet"), columns)
    key = join(plan.spill, "docs", unit.dir)
    if key not in _tables:
        _tables[key] = read_parquet(join(unit.dir, "docs.parquet"), DOC_COLUMNS)
    return _tables[key].select(columns)


def _sigs(table: pa.Table, width: int) -> np.ndarray:
    return table["minhash"].combine_chunks().flatten().to_numpy().reshape(-1, width)


# -- stages: each a function of plain arguments, run in-process or as a Ray task ----------------

@dataclass
class Plan:
    spill: str
    parts: int
    width: int
    bands: int
    rows_per_band: int
    threshold: float
    near: bool


def map_ids(plan: Plan, u: int, unit: Unit) -> tuple[list[int], int]:
    ids = _docs(plan, unit, ["id"])["id"].to_pylist()
    table = pa.table({"id": pa.array(ids, pa.string()), "row": np.arange(unit.offset, unit.offset + unit.rows)})
    return _scatter(plan.spill, "ids", u, table, _part_str([_family(i) for i in ids], plan.parts))


def reduce_ids(plan: Plan, p: int, sources: list[int]) -> tuple[int, int]:
    t = _gather(plan.spill, "ids", sources, p, pa.schema([("id", pa.string()), ("row", pa.int64())]))
    renames = rename_repeats(t["row"].to_pylist(), t["id"].to_pylist())
    out = pa.table({"row": pa.array(list(renames), pa.int64()), "id": pa.array(list(renames.values()), pa.string())})
    return _write_sorted(plan.spill, "renames", p, out), len(renames), sorted(renames.items())[:10]


def map_exact(plan: Plan, u: int, unit: Unit) -> tuple[list[int], int]:
    """Final ids of the unit (renames applied) to `final_ids/<u>`, and its exact keys out."""
    t = _docs(plan, unit, ["id", "dedup_key"])
    ids = t["id"].to_pylist()
    renamed = _ranges(plan.spill, "renames", list(range(plan.parts)), unit)
    for row, new in zip(renamed["row"].to_pylist(), renamed["id"].to_pylist()):
        ids[row - unit.offset] = new
    _write(_file(plan.spill, "final_ids", u), pa.table({"id": pa.array(ids, pa.string())}))
    keys = t["dedup_key"].to_pylist()
    table = pa.table({"key": t["dedup_key"], "row": np.arange(unit.offset, unit.offset + unit.rows),
                      "id": pa.array(ids, pa.string())})
    dest = np.fromiter((int(k[:15], 16) % plan.parts for k in keys), np.int64, len(keys))
    return _scatter(plan.spill, "keys", u, table, dest)


def reduce_exact(plan: Plan, p: int, sources: list[int]) -> int:
    t = _gather(plan.spill, "keys", sources, p, pa.schema([("key", pa.string()), ("row", pa.int64()), ("id", pa.string())]))
    t = t.take(pc.sort_indices(t, [("key", "ascending"), ("row", "ascending")]))
    keys = t["key"].to_numpy(zero_copy_only=False)
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
    head = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0)) if len(keys) else np.zeros(0, np.int64)
    dup = np.flatnonzero(~first)
    rows = t["row"].to_numpy()
    out = pa.table({"row": pa.array(rows[dup], pa.int64()), "kept": pa.array(rows[head[dup]], pa.int64()),
                    "kept_id": t["id"].take(pa.array(head[dup], pa.int64()))})
    return _write_sorted(plan.spill, "exact", p, out)


def map_bands(plan: Plan, u: int, unit: Unit) -> tuple[list[int], int]:
    t = _docs(plan, unit, ["lang", "minhash"])
    dups = _ranges(plan.spill, "exact", list(range(plan.parts)), unit, ["row"])
    keep = np.ones(unit.rows, bool)
    keep[dups["row"].to_numpy() - unit.offset] = False
    idx = np.flatnonzero(keep)
    sigs = _sigs(t, plan.width)[idx]
    langs = lang_hashes(t["lang"].to_pylist())[idx]
    rows = unit.offset + idx
    tables, dests = [], []
    for band in range(plan.bands):
        keys = _band_keys(sigs[:, band * plan.rows_per_band: (band + 1) * plan.rows_per_band], langs)
        tables.append(pa.table({"band": pa.array(np.full(len(idx), band, np.int16)), "key": pa.array(keys),
                                "row": pa.array(rows, pa.int64())}))
        with np.errstate(over="ignore"):
            dests.append(_part_u64(keys + np.uint64(band) * np.uint64(0x9E3779B97F4A7C15), plan.parts))
    if not tables:
        return [], 0
    return _scatter(plan.spill, "bands", u, pa.concat_tables(tables), np.concatenate(dests))


def reduce_bands(plan: Plan, p: int, sources: list[int]) -> int:
    """Candidate groups: (group, row) in row order within each group, and the rows whose
    signatures the link step needs."""
    t = _gather(plan.spill, "bands", sources, p, pa.schema([("band", pa.int16()), ("key", pa.uint64()), ("row", pa.int64())]))
    band, key, rows = t["band"].to_numpy(), t["key"].to_numpy(), t["row"].to_numpy()
    del t
    groups, members, n = [], [], 0
    for b in np.unique(band):  # band by band (bands never share a group): one band's sort in memory
        sel = np.flatnonzero(band == b)
        k, row = key[sel], rows[sel]
        order = np.lexsort((row, k))
        k, row = k[order], row[order]
        gid = np.cumsum(np.r_[True, k[1:] != k[:-1]]) - 1
        keep = np.bincount(gid)[gid] > 1
        _, gid = np.unique(gid[keep], return_inverse=True)  # dense ids, in (key, row) order
        groups.append(gid + n)
        members.append(row[keep])
        n += int(gid.max()) + 1 if len(gid) else 0
    group = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    row = np.concatenate(members) if members else np.zeros(0, np.int64)
    nbytes = _write(_file(plan.spill, "groups", p),
                    pa.table({"group": pa.array(group, pa.int64()), "row": pa.array(row, pa.int64())}))
    nbytes += _write_sorted(plan.spill, "want_link", p, pa.table({"row": pa.array(np.unique(row), pa.int64())}))
    return nbytes


def map_lookup(plan: Plan, u: int, unit: Unit, want: str, out: str, with_ids: bool) -> tuple[list[int], int]:
    """Signatures (and final ids, `with_ids`) of this unit's rows that partitions asked for in
    `want/<p>`, sent to `out/<u>-<p>`."""
    t = None
    written, nbytes = [], 0
    for p in range(plan.parts):
        rows = _range(_file(plan.spill, want, p), unit.offset, unit.offset + unit.rows)["row"].to_numpy()
        if not len(rows):
            continue
        if t is None:
            t = _docs(plan, unit, ["minhash"])
            if with_ids:
                t = t.append_column("id", _read(_file(plan.spill, "final_ids", u))["id"])
        local = pa.array(rows - unit.offset, pa.int64())
        part = pa.table({"row": pa.array(rows, pa.int64()), **{c: t[c].take(local) for c in t.column_names}})
        nbytes += _write(_file(plan.spill, out, u, p), part)
        written.append(p)
    return written, nbytes


class _Lookup:
    """Row -> signature (and final id) from a lookup's answers for one partition: one copy of
    the signatures, in the order the answers came, found through the sorted rows."""

    def __init__(self, plan: Plan, stage: str, sources: list[int], p: int, with_ids: bool):
        schema = pa.schema([("row", pa.int64()), ("minhash", pa.list_(pa.uint32(), plan.width))]
                           + ([("id", pa.string())] if with_ids else []))
        tables = [_read(_file(plan.spill, stage, s, p)) for s in sources] or [schema.empty_table()]
        rows = np.concatenate([t["row"].to_numpy() for t in tables])
        self.sigs = np.concatenate([_sigs(t, plan.width) for t in tables])
        self.ids = pa.chunked_array([t["id"] for t in tables], pa.string()) if with_ids else None
        del tables
        pa.default_memory_pool().release_unused()
        self.order = np.argsort(rows)
        self.rows = rows[self.order]

    def index(self, rows: np.ndarray) -> np.ndarray:
        """Positions in `sigs` / `ids` of `rows` (each one of the answered rows)."""
        return self.order[np.searchsorted(self.rows, rows)]


def _edges_out(plan: Plan, stage: str, src: int, a: np.ndarray, b: np.ndarray) -> tuple[list[int], int]:
    """Undirected edges written both ways, each to its first node's partition."""
    u, v = np.concatenate([a, b]), np.concatenate([b, a])
    return _scatter(plan.spill, stage, src, pa.table({"u": pa.array(u, pa.int64()), "v": pa.array(v, pa.int64())}),
                    _part_u64(u, plan.parts))


def _unique_pairs(a_parts: list[np.ndarray], b_parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) pairs of the concatenated parts, sorted by (a, b)."""
    a = np.concatenate(a_parts) if a_parts else np.zeros(0, np.int64)
    b = np.concatenate(b_parts) if b_parts else np.zeros(0, np.int64)
    if not len(a):
        return a.astype(np.int64), b.astype(np.int64)
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
    return a[keep], b[keep]


class _Edges:
    """Links found so far, deduplicated whenever COMPACT_EDGES new ones have piled up (a pair
    of documents shares many bands: the same link is found once per band)."""

    def __init__(self):
        self.a, self.b, self.pending = [], [], 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a.append(a)
        self.b.append(b)
        self.pending += len(a)
        if self.pending >= COMPACT_EDGES:
            a, b = _unique_pairs(self.a, self.b)
            self.a, self.b = [a], [b]
            self.pending = 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return _unique_pairs(self.a, self.b)


def reduce_link(plan: Plan, p: int, sources: list[int]) -> tuple[list[int], int, int]:
    """Each candidate linked to the first earlier member of its group whose estimated Jaccard
    reaches the threshold (as `dedup.clusters`); edges out for the components."""
    groups = _read(_file(plan.spill, "groups", p))
    look = _Lookup(plan, "link_sigs", sources, p, with_ids=False)
    group, rows = groups["group"].to_numpy(), groups["row"].to_numpy()
    at = look.index(rows)  # row -> its signature in `look`
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(group)]
    size = ends - starts
    edges = _Edges()
    sigs = look.sigs
    # groups of up to SMALL members: every (earlier j, later k) pair of every group of a size at
    # once, compared in chunks; each k keeps its smallest passing j
    for g in np.unique(size[(size >= 2) & (size <= SMALL_GROUP)]):
        tj, tk = np.triu_indices(int(g), 1)
        first = starts[size == g]
        for c in range(0, len(first), max(1, PAIR_CHUNK // len(tj))):
            base = first[c: c + max(1, PAIR_CHUNK // len(tj))][:, None]
            j, k = (base + tj).ravel(), (base + tk).ravel()
            ok = np.mean(sigs[at[j]] == sigs[at[k]], axis=1) >= plan.threshold
            j, k = j[ok], k[ok]
            order = np.lexsort((j, k))
            j, k = j[order], k[order]
            head = np.r_[True, k[1:] != k[:-1]] if len(k) else np.zeros(0, bool)
            edges.add(rows[j[head]], rows[k[head]])
    for s0, e0 in zip(starts[size > SMALL_GROUP], ends[size > SMALL_GROUP]):  # large groups: blocks of rows
        g = sigs[at[s0:e0]]
        n = e0 - s0
        step = max(1, PAIR_CHUNK // n)
        for k0 in range(1, n, step):
            k1 = min(n, k0 + step)
            ok = np.mean(g[None, :k1] == g[k0:k1, None], axis=2) >= plan.threshold  # (k, j)
            ok &= np.arange(k1)[None, :] < np.arange(k0, k1)[:, None]
            has = np.flatnonzero(ok.any(axis=1))
            edges.add(rows[s0 + ok[has].argmax(axis=1)], rows[s0 + k0 + has])
    a, b = edges.result()
    written, nbytes = _edges_out(plan, "cc0", p, a, b)
    return written, nbytes, len(a)


def _neighbours(plan: Plan, stage: str, sources: list[int], p: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(u, v) of this partition's nodes, deduplicated and sorted, and a digest of the edges
    with u < v (each undirected edge is counted once over all partitions)."""
    t = _gather(plan.spill, stage, sources, p, pa.schema([("u", pa.int64()), ("v", pa.int64())]))
    u, v = _unique_pairs([t["u"].to_numpy()], [t["v"].to_numpy()])
    del t
    lo = u < v
    with np.errstate(over="ignore"):
        h = _mix(u[lo].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ v[lo].astype(np.uint64))
    return u, v, (int(lo.sum()), int(np.sum(h, dtype=np.uint64)))


def _minimum(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per (u, v) row: min(u, smallest neighbour of u); rows are sorted by (u, v)."""
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.zeros(0, np.int64)
    first_v = np.repeat(v[starts], np.diff(np.r_[starts, len(u)]))
    return np.minimum(u, first_v)


def reduce_star(plan: Plan, p: int, sources: list[int], kind: str, src: str, dst: str) -> tuple[list[int], int, tuple]:
    """One large-star or small-star step for this partition's nodes."""
    u, v, digest = _neighbours(plan, src, sources, p)
    m = _minimum(u, v)
    if kind == "large":  # every larger neighbour re-attached to the smallest of u's closed neighbourhood
        keep = v > u
        a, b = v[keep], m[keep]
    else:  # small: u and its smaller neighbours attached to the smallest of them
        keep = (v < u) & (v != m)
        firsts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.zeros(0, np.int64)
        own = firsts[m[firsts] < u[firsts]]
        a, b = np.concatenate([v[keep], u[own]]), np.concatenate([m[keep], m[own]])
    written, nbytes = _edges_out(plan, dst, p, a, b)
    return written, nbytes, digest


def reduce_roots(plan: Plan, p: int, sources: list[int], stage: str) -> tuple[int, int]:
    """On the converged star forest: every node with a smaller neighbour has exactly that one
    (its root). At this partition's roots: (member, root) out, sorted by member, for the
    similarity lookup; at its members: (member, root) for the cluster sizes."""
    u, v, _ = _neighbours(plan, stage, sources, p)
    m = _minimum(u, v)
    member = m < u
    nodes, first, degree = np.unique(u, return_index=True, return_counts=True)
    if np.any(degree[m[first] < nodes] != 1):
        raise RuntimeError(f"dedup components: partition {p} did not converge to stars")
    is_root_edge = m == u  # u is a root, v one of its members
    members = pa.table({"row": pa.array(v[is_root_edge], pa.int64()), "root": pa.array(u[is_root_edge], pa.int64())})
    nbytes = _write(_file(plan.spill, "members", p), members)
    nbytes += _write_sorted(plan.spill, "want_roots", p,
                            pa.table({"row": pa.array(np.unique(np.concatenate([u[is_root_edge], v[is_root_edge]])), pa.int64())}))
    nbytes += _write(_file(plan.spill, "labels", p),
                     pa.table({"row": pa.array(u[member], pa.int64()), "root": pa.array(m[member], pa.int64())}))
    return nbytes, int(member.sum())


def reduce_near(plan: Plan, p: int, sources: list[int]) -> int:
    """Near-duplicate decisions of this partition's roots' members: the root, its id and the
    similarity to it."""
    members = _read(_file(plan.spill, "members", p))
    look = _Lookup(plan, "root_sigs", sources, p, with_ids=True)
    row, root = members["row"].to_numpy(), members["root"].to_numpy()
    i, j = look.index(row), look.index(root)
    sim = np.mean(look.sigs[i] == look.sigs[j], axis=1) if len(row) else np.zeros(0)
    out = pa.table({"row": pa.array(row, pa.int64()), "root": pa.array(root, pa.int64()),
                    "similarity": pa.array(sim, pa.float64()), "root_id": look.ids.take(pa.array(j, pa.int64()))})
    return _write_sorted(plan.spill, "near", p, out)


def map_sizes(plan: Plan, p: int) -> tuple[list[int], int]:
    """Exact duplicates counted per document they duplicate, sent to that document's
    partition (where its own root, if it has one, is known)."""
    t = _read(_file(plan.spill, "exact", p), ["kept"])
    kept, counts = np.unique(t["kept"].to_numpy(), return_counts=True)
    return _scatter(plan.spill, "exact_counts", p, pa.table({"row": pa.array(kept, pa.int64()), "n": pa.array(counts, pa.int64())}),
                    _part_u64(kept, plan.parts))


def reduce_sizes_at_node(plan: Plan, p: int, sources: list[int], has_labels: bool) -> tuple[list[int], int]:
    """Duplicates counted toward the document finally kept: an exact duplicate of a near
    duplicate counts for the near duplicate's root."""
    counts = _gather(plan.spill, "exact_counts", sources, p, pa.schema([("row", pa.int64()), ("n", pa.int64())]))
    labels = _read(_file(plan.spill, "labels", p)) if has_labels else pa.table({"row": pa.array([], pa.int64()),
                                                                                         "root": pa.array([], pa.int64())})
    lab_rows, lab_root = labels["row"].to_numpy(), labels["root"].to_numpy()
    order = np.argsort(lab_rows)
    lab_rows, lab_root = lab_rows[order], lab_root[order]
    rows, n = counts["row"].to_numpy(), counts["n"].to_numpy()
    final = rows.copy()
    if len(lab_rows):
        pos = np.minimum(np.searchsorted(lab_rows, rows), len(lab_rows) - 1)
        hit = lab_rows[pos] == rows
        final[hit] = lab_root[pos[hit]]
    final = np.concatenate([final, lab_root])
    n = np.concatenate([n, np.ones(len(lab_root), np.int64)])
    return _scatter(plan.spill, "final_counts", p, pa.table({"row": pa.array(final, pa.int64()), "n": pa.array(n, pa.int64())}),
                    _part_u64(final, plan.parts))


def reduce_sizes(plan: Plan, p: int, sources: list[int]) -> int:
    t = _gather(plan.spill, "final_counts", sources, p, pa.schema([("row", pa.int64()), ("n", pa.int64())]))
    rows, inverse = np.unique(t["row"].to_numpy(), return_inverse=True)
    size = 1 + np.bincount(inverse, weights=t["n"].to_numpy(), minlength=len(rows)).astype(np.int64)
    return _write_sorted(plan.spill, "sizes", p, pa.table({"row": pa.array(rows, pa.int64()), "size": pa.array(size, pa.int32())}))


def unit_decisions(plan: Plan, u: int, unit: Unit) -> dict:
    """One unit's outcome: final ids, and per row the decision (None: kept), the row and id
    of the document kept instead, the detail; the cluster size of kept rows."""
    ids = _read(_file(plan.spill, "final_ids", u))["id"].to_pylist()
    parts = list(range(plan.parts))
    reason: list[str | None] = [None] * unit.rows
    kept_id: list[str | None] = [None] * unit.rows
    detail: list[str | None] = [None] * unit.rows
    exact = _ranges(plan.spill, "exact", parts, unit)
    for row, kid in zip(exact["row"].to_pylist(), exact["kept_id"].to_pylist()):
        i = row - unit.offset
        reason[i], kept_id[i], detail[i] = "exact_duplicate", kid, f"duplicate of {kid}"
    if plan.near:
        near = _ranges(plan.spill, "near", parts, unit)
        for row, rid, sim in zip(near["row"].to_pylist(), near["root_id"].to_pylist(), near["similarity"].to_pylist()):
            i = row - unit.offset
            reason[i], kept_id[i] = "near_duplicate", rid
            detail[i] = f"near duplicate of {rid} (estimated Jaccard {sim:.2f})"
    size = np.ones(unit.rows, np.int32)
    sizes = _ranges(plan.spill, "sizes", parts, unit)
    size[sizes["row"].to_numpy() - unit.offset] = sizes["size"].to_numpy()
    return {"ids": ids, "reason": reason, "kept_id": kept_id, "detail": detail, "size": size}


def map_heldout(plan: Plan, u: int, unit: Unit, fraction: float) -> dict:
    """`ForcedHeldout` state of one unit's kept documents (per language: count, any held out
    by hash, lowest bucket), merged on the driver."""
    d = unit_decisions(plan, u, unit)
    langs = _docs(plan, unit, ["lang"])["lang"].to_pylist()
    forced = ForcedHeldout(fraction)
    keep = [r is None for r in d["reason"]]
    forced.add([l for l, k in zip(langs, keep) if k], [i for i, k in zip(d["ids"], keep) if k])
    return forced.seen


# -- the driver ----------------------------------------------------------------------------------

class _Runner:
    """A stage's tasks: in-process one after the other, or Ray tasks (`cpus` each), with
    progress (tasks/s, ETA) in the log. A stage of one task runs in-process on Ray too (its
    memory is still one partition's or one unit's), and so does every stage of a corpus of one
    partition."""

    def __init__(self, engine: str, cpus: float):
        self.engine, self.cpus = engine, cpus
        self._remote: dict = {}

    def map(self, name: str, fn, calls: list[tuple]) -> list:
        start = time.monotonic()
        if self.engine != "ray" or len(calls) == 1:  # one task: here, without a scheduling round trip
            results = []
            for args in calls:
                results.append(fn(*args))
                self._progress(name, start, len(results), len(calls))
        else:
            import ray

            if fn not in self._remote:
                self._remote[fn] = ray.remote(num_cpus=self.cpus)(fn)
            refs = [self._remote[fn].remote(*args) for args in calls]
            pending, done = list(refs), 0
            while pending:
                ready, pending = ray.wait(pending, num_returns=min(len(pending), max(1, len(refs) // 10)))
                done += len(ready)
                self._progress(name, start, done, len(refs))
            results = ray.get(refs)
        log.info("dedup %s: %d tasks in %.1fs", name, len(calls), time.monotonic() - start)
        return results


    @staticmethod
    def _progress(name: str, start: float, done: int, total: int) -> None:
        """A log line at each tenth of a stage's tasks (stages of 10+ tasks): rate and ETA."""
        if total >= 10 and done < total and done % max(1, total // 10) == 0:
            elapsed = time.monotonic() - start
            log.info("dedup %s: %d/%d tasks, %.1f tasks/s, ETA %.0fs", name, done, total, done / max(elapsed, 1e-9),
                     elapsed / done * (total - done))


def _sources(written: list[list[int]], parts: int) -> list[list[int]]:
    """Per destination partition, the sources that wrote to it."""
    out: list[list[int]] = [[] for _ in range(parts)]
    for src, dsts in enumerate(written):
        for q in dsts:
            out[q].append(src)
    return out


@dataclass
class Result:
    """The decisions, spilled: `decisions(u)` for one unit; `forced` held-out ids; stats."""

    plan: Plan
    units: list[Unit]
    forced: set[str]
    stats: dict = field(default_factory=dict)

    def decisions(self, u: int) -> dict:
        return unit_decisions(self.plan, u, self.units[u])

    def as_dict(self) -> dict[int, tuple[str, int | None, str, str]]:
        """{row: (reason, None, detail, kept id)} over the whole corpus, like `global_dedup`'s
        (without the kept row): for tests and small corpora."""
        out = {}
        for u, unit in enumerate(self.units):
            d = self.decisions(u)
            for i, r in enumerate(d["reason"]):
                if r:
                    out[unit.offset + i] = (r, None, d["detail"][i], d["kept_id"][i])
        return out

    def cleanup(self) -> None:
        _remove(self.plan.spill)


def partitions(cfg: CorpusConfig, rows: int) -> int:
    return cfg.dedup.partitions or max(1, -(-rows // cfg.dedup.partition_rows))


def dedup(units: list[dict], cfg: CorpusConfig, spill_root: str, engine: str = "local",
          heldout_fraction: float | None = None) -> Result:
    """Every dedup decision over `units` (committed work units, in input order), as partitioned
    stages; the result's decisions are read per unit. `engine`: 'local' or 'ray' (an
    initialised Ray)."""
    offsets = np.cumsum([0] + [u["kept"] for u in units])
    us = [Unit(u["dir"], int(o), int(u["kept"])) for u, o in zip(units, offsets)]
    total = int(offsets[-1])
    d = cfg.dedup
    parts = partitions(cfg, total)
    # one partition (at most `partition_rows` documents): every stage in this process, whose
    # memory that bounds as it bounds a task's, spilling to memory; no scheduling round trips
    # and no files for a small corpus
    spill = join(spill_root, uuid.uuid4().hex[:12]) if parts > 1 else f"{MEMORY}{uuid.uuid4().hex[:12]}"
    plan = Plan(spill, parts, d.bands * d.rows_per_band, d.bands, d.rows_per_band, d.threshold, d.near)
    run = _Runner(engine if plan.parts > 1 else "local", cfg.cpus_per_unit)
    P, U = plan.parts, range(len(us))
    stats: dict = {"partitions": P, "rows": total, "spill_bytes": 0, "seconds": {}}
    t0 = time.monotonic()

    def mapped(name, fn, extra=()):
        t = time.monotonic()
        out = run.map(name, fn, [(plan, u, us[u], *extra) for u in U])
        stats["seconds"][name] = round(stats["seconds"].get(name, 0) + time.monotonic() - t, 3)
        stats["spill_bytes"] += sum(o[1] for o in out)
        return _sources([o[0] for o in out], P)

    def reduced(name, fn, sources, *extra):
        t = time.monotonic()
        out = run.map(name, fn, [(plan, p, sources[p], *extra) for p in range(P)])
        stats["seconds"][name] = round(stats["seconds"].get(name, 0) + time.monotonic() - t, 3)
        return out

    out = reduced("ids", reduce_ids, mapped("ids_map", map_ids))
    stats["spill_bytes"] += sum(o[0] for o in out)
    stats["renamed"] = sum(o[1] for o in out)
    stats["renamed_first"] = [i for _, i in sorted(r for o in out for r in o[2])[:10]]
    stats["spill_bytes"] += sum(reduced("exact", reduce_exact, mapped("exact_map", map_exact)))
    labels = False
    if d.near and total:
        stats["spill_bytes"] += sum(reduced("bands", reduce_bands, mapped("bands_map", map_bands)))
        out = reduced("link", reduce_link, mapped("link_lookup", map_lookup, ("want_link", "link_sigs", False)))
        stats["spill_bytes"] += sum(o[1] for o in out)
        stats["links"] = sum(o[2] for o in out)
        src, stage, digest, rounds = _sources([o[0] for o in out], P), "cc0", None, 0
        while True:
            rounds += 1
            for kind in ("large", "small"):
                nxt = f"cc{rounds}{kind[0]}"
                out = reduced(f"components_{kind}", reduce_star, src, kind, stage, nxt)
                stats["spill_bytes"] += sum(o[1] for o in out)
                if kind == "large":
                    now = (sum(o[2][0] for o in out), sum(o[2][1] for o in out) % 2**64)
                src, stage = _sources([o[0] for o in out], P), nxt
            if now == digest:
                break
            digest = now
        stats["components_rounds"] = rounds
        out = reduced("roots", reduce_roots, src, stage)
        stats["spill_bytes"] += sum(o[0] for o in out)
        stats["near_duplicates"] = sum(o[1] for o in out)
        labels = True
        stats["spill_bytes"] += sum(reduced("near", reduce_near, mapped("near_lookup", map_lookup, ("want_roots", "root_sigs", True))))
    t = time.monotonic()
    out = run.map("sizes_map", map_sizes, [(plan, p) for p in range(P)])
    stats["spill_bytes"] += sum(o[1] for o in out)
    out = reduced("sizes_at_node", reduce_sizes_at_node, _sources([o[0] for o in out], P), labels)
    stats["spill_bytes"] += sum(o[1] for o in out)
    stats["spill_bytes"] += sum(reduced("sizes", reduce_sizes, _sources([o[0] for o in out], P)))
    stats["seconds"]["sizes"] = round(time.monotonic() - t, 3)
    forced: set[str] = set()
    if heldout_fraction is not None:
        merged = ForcedHeldout(heldout_fraction)
        for seen in run.map("heldout", map_heldout, [(plan, u, us[u], heldout_fraction) for u in U]):
            for lang, (n, held, low) in seen.items():
                st = merged.seen.setdefault(lang, [0, False, (10_000, "")])
                st[0] += n
                st[1] = st[1] or held
                st[2] = min(st[2], tuple(low))
        forced = merged.ids
    stats["seconds"]["total"] = round(time.monotonic() - t0, 3)
    log.info("dedup: %d rows, %d partitions, %d renamed, %s links, %s near duplicates, %.1f MB spilled, %.1fs", total, P,
             stats["renamed"], stats.get("links", 0), stats.get("near_duplicates", 0), stats["spill_bytes"] / 1e6,
             stats["seconds"]["total"])
    return Result(plan, us, forced, stats)

