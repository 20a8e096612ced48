"""Deduplication across the whole corpus: exact (normalised-text key), then near duplicates
with MinHash LSH, per language. `global_dedup` makes both decisions over every work unit from
keys and signatures only (never text), in one process's memory: the reference semantics,
which `dedup_partitioned` (what `prepare` runs) reproduces out of core, partition by partition.

0. `dedup_key(text)`: the exact-duplicate key (case, punctuation and whitespace folded).

1. `signatures(docs)`: per work unit (a batch), each document's shingles are hashed and
   reduced to a MinHash signature of bands x rows values. Shingles are character n-grams of
   the case-folded text by default (`dedup.shingles: chars`): the same for every script, and
   robust to character-level edits (typos, OCR, spelling variants) that break word n-grams;
   `words` uses word n-grams in the language's segmentation. Only signatures leave this
   step, never text.
2. `clusters(...)`: the global step sees signatures only. Documents of the same language that
   share a band bucket are candidates; a candidate pair is linked when its estimated Jaccard
   similarity (share of equal signature values) reaches the threshold. Linked documents form
   clusters (union-find); the first document in input order is kept, and its row records the
   cluster size; the others are rejected with the id they duplicate.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
import pyarrow as pa
import xxhash

from ..config import CorpusConfig, DedupConfig
from ..storage import join, read_parquet
from .profiles import profile, segment

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
    return a, b


def shingles(text: str, lang: str, script: str, cfg: DedupConfig) -> list[str]:
    """Word n-grams in the language's segmentation (`shingles: words`; character n-grams for
    scripts counted in characters)."""
    p = profile(lang, script)
    if p.segmentation == "chars":
        chars = "".join(text.split()).lower()
        n = cfg.char_ngram
        return [chars[i : i + n] for i in range(max(len(chars) - n + 1, 1))]
    words = [w.lower() for w in segment(text, p.segmentation)]
    n = cfg.ngram
    return [" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))]


_POLY = np.uint64(0x100000001B3)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def char_shingle_hashes(text: str, n: int) -> np.ndarray:
    """Distinct 64-bit hashes of the character n-grams of a text (case-folded, whitespace runs
    as one space), vectorised over the code points: the same for every script, and a
    character edit changes at most n shingles, where it changes 2n-1 word n-grams' worth of
    text."""
    folded = " ".join(text.casefold().split())
    cps = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(cps) < n:
        cps = np.concatenate([cps, np.zeros(n - len(cps), np.uint64)])
    m = len(cps) - n + 1
    h = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _POLY + cps[k : k + m]
    return np.unique(_mix(h))


def signatures(docs: pa.Table, cfg: DedupConfig) -> np.ndarray:
    """MinHash signatures, shape (rows, bands * rows_per_band), uint32."""
    num_perm = cfg.bands * cfg.rows_per_band
    a, b = _permutations(num_perm, cfg.seed)
    out = np.empty((docs.num_rows, num_perm), dtype=np.uint32)
    for i, (text, lang, script) in enumerate(zip(docs["text"].to_pylist(), docs["lang"].to_pylist(),
                                                 docs["script"].to_pylist())):
        if cfg.shingles == "chars":
            hashes = char_shingle_hashes(text or "", cfg.char_ngram)
        else:
            hashes = np.fromiter((xxhash.xxh64_intdigest(s.encode())
                                  for s in set(shingles(text, lang or "", script or "Zyyy", cfg))), dtype=np.uint64)
        with np.errstate(over="ignore"):  # (a*x + b) wraps modulo 2^64 as in datasketch
            permuted = ((np.outer(a, hashes) + b[:, None]) % _MERSENNE) & _MAX_HASH
        out[i] = permuted.min(axis=1)
    return out


_BAND_MULT = np.uint64(0x9E3779B97F4A7C15)


def lang_hashes(langs: list[str]) -> np.ndarray:
    """A 64-bit hash per language label: the language part of band keys, the same in every
    process (so partitioned and in-memory dedup group documents alike)."""
    return np.fromiter((xxhash.xxh64_intdigest((l or "").encode()) for l in langs), np.uint64, len(langs))


def _band_keys(cols: np.ndarray, lang_ids: np.ndarray) -> np.ndarray:
    """One 64-bit key per document for a band (its rows_per_band values and its language's
    hash), computed for the whole batch at once."""
    key = lang_ids.astype(np.uint64)
    with np.errstate(over="ignore"):
        for k in range(cols.shape[1]):
            key = key * _BAND_MULT + cols[:, k].astype(np.uint64) + np.uint64(k + 1)
    return key


def clusters(langs: list[str], sigs: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For documents in input order: (representative index, similarity to it, cluster size).

    Per band, documents are grouped by sorting their band keys (no per-document Python
    objects); only groups of two or more are looked at, and a candidate is linked to the
    first earlier member whose estimated Jaccard reaches the threshold."""
    n = len(langs)
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    lang_ids = lang_hashes(langs)
    for band in range(cfg.bands):
        keys = _band_keys(sigs[:, band * cfg.rows_per_band : (band + 1) * cfg.rows_per_band], lang_ids)
        order = np.argsort(keys, kind="stable")  # stable: input order inside a group
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            members = order[s:e]
            for k in range(1, len(members)):
                j = members[k]
                for m in members[:k]:  # link to the first earlier member similar enough
                    if np.mean(sigs[m] == sigs[j]) >= cfg.threshold:
                        rm, rj = find(m), find(j)
                        if rm != rj:  # the earlier root stays root: it is the document kept
                            parent[max(rm, rj)] = min(rm, rj)
                        break
    roots = np.array([find(i) for i in range(n)])
    size = np.bincount(roots, minlength=n)[roots]
    similarity = np.ones(n)
    for i in np.flatnonzero(roots != np.arange(n)):  # only duplicates need it
        similarity[i] = np.mean(sigs[i] == sigs[roots[i]])
    return roots, similarity, size


_DEDUP_FOLD = re.compile(r"[\W_]+", re.UNICODE)


def dedup_key(text: str) -> str:
    """Exact-duplicate key: a hash of the text with case, punctuation and whitespace folded
    (NFKC first, so full-width forms match)."""
    folded = _DEDUP_FOLD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=16).hexdigest()


def rename_repeats(rows: list[int], ids: list[str]) -> dict[int, str]:
    """{row: new id} for every row whose id an earlier row already has: `<id>~N`, the smallest
    N >= 2 that is no row's own id and not given to an earlier repeat. Generated names are
    unique: `<id>~N` splits at its last `~` into its base and N, so two bases never make the
    same name, and no name equals a document's own id. Decides per family (an id and its
    `~N` forms), which `ids` must hold whole."""
    order = np.argsort(np.asarray(rows, dtype=np.int64), kind="stable")
    originals = set(ids)
    seen: set[str] = set()
    next_n: dict[str, int] = {}
    out: dict[int, str] = {}
    for k in order:
        doc_id = ids[k]
        if doc_id not in seen:
            seen.add(doc_id)
            continue
        n = next_n.get(doc_id, 2)
        while f"{doc_id}~{n}" in originals:
            n += 1
        out[int(rows[k])] = f"{doc_id}~{n}"
        next_n[doc_id] = n + 1
    return out


def unique_ids(units: list[dict]) -> dict[int, str]:
    """{global row: new id} for the rows of `units` whose id an earlier row already has
    (`rename_repeats` over the whole corpus in memory: the reference for the partitioned path,
    which decides per id family)."""
    ids = [i for u in units for i in read_parquet(join(u["dir"], "docs.parquet"), ["id"])["id"].to_pylist()]
    return rename_repeats(list(range(len(ids))), ids)


def global_dedup(units: list[dict], cfg: CorpusConfig, renames: dict[int, str] | None = None) -> dict[int, tuple[str, int, str]]:
    """Exact, then near-duplicate decisions over every unit, from keys and signatures only,
    read unit by unit. Returns {global row: (reason, row of the document kept instead, detail, its id)}."""
    decisions: dict[int, tuple[str, int, str]] = {}
    first: dict[str, int] = {}
    ids: dict[int, str] = {}
    near_rows, near_langs, near_sigs = [], [], []
    width = cfg.dedup.bands * cfg.dedup.rows_per_band
    offset = 0
    for u in units:
        t = read_parquet(join(u["dir"], "docs.parquet"), ["id", "lang", "dedup_key", "minhash"])
        unit_ids, langs = t["id"].to_pylist(), t["lang"].to_pylist()
        survivors = []
        for i, key in enumerate(t["dedup_key"].to_pylist()):
            row = offset + i
            if key in first:
                decisions[row] = ("exact_duplicate", first[key], f"duplicate of {ids[first[key]]}", ids[first[key]])
            else:
                first[key] = row
                ids[row] = (renames or {}).get(row, unit_ids[i])
                survivors.append(i)
        if cfg.dedup.near and survivors:
            sigs = t["minhash"].combine_chunks().flatten().to_numpy().reshape(-1, width)
            near_sigs.append(sigs[survivors])
            near_rows.extend(offset + i for i in survivors)
            near_langs.extend(langs[i] for i in survivors)
        offset += t.num_rows
    del first
    if near_rows:
        rows = np.array(near_rows)
        roots, similarity, _ = clusters(near_langs, np.concatenate(near_sigs), cfg.dedup)
        for i in np.flatnonzero(roots != np.arange(len(rows))):
            kept_row = int(rows[roots[i]])
            decisions[int(rows[i])] = ("near_duplicate", kept_row,
                                       f"near duplicate of {ids[kept_row]} (estimated Jaccard {similarity[i]:.2f})",
                                       ids[kept_row])
    return decisions
