"""The out-of-core dedup (pipeline/corpus/dedup_partitioned.py) against the in-memory reference
(`dedup.unique_ids` + `dedup.global_dedup`) on real text in many languages with planted exact
copies, near copies, chains of copies and repeated ids: the same decisions, ids, cluster sizes
and forced held-out documents, whatever the number of partitions."""

import random
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from test_dedup import edit

from pipeline.config import CorpusConfig
from pipeline.corpus import dedup, dedup_partitioned
from pipeline.corpus.dedup import rename_repeats
from pipeline.corpus.shard import ForcedHeldout
from pipeline.storage import write_parquet


def test_rename_repeats_gives_unique_ids_that_are_no_documents_own():
    ids = ["a", "a", "a~2", "a", "b~3", "b~3", "b~3~2", "c"]
    out = rename_repeats(list(range(len(ids))), ids)
    final = [out.get(i, x) for i, x in enumerate(ids)]
    assert len(set(final)) == len(final)
    assert out == {1: "a~3", 3: "a~4", 5: "b~3~3"}  # a~2 and b~3~2 are documents' own ids
    # decided by row, not by the order the rows come in
    assert rename_repeats(list(reversed(range(len(ids)))), list(reversed(ids))) == out


def _corpus(shared_data, tmp_path, n_langs=40):
    """Units of real UDHR paragraphs with planted duplicates; returns the unit dicts."""
    rng = random.Random(3)
    files = sorted((shared_data / "udhr").glob("*.txt"))
    files = [f for f in rng.sample(files, n_langs)]
    docs = []  # (id, lang, text)
    for f in files:
        lines = [l for l in f.read_text().splitlines() if len(l) > 40][:24]
        lang = f.stem
        for j in range(0, len(lines) - 2, 3):
            text = " ".join(lines[j: j + 3])
            docs.append((f"{lang}:{j}", lang, text))
            r = rng.random()
            if r < 0.15:  # exact copy once normalised (case, punctuation)
                docs.append((f"{lang}:{j}", lang, text.upper() + " !"))
            elif r < 0.35:  # near copy, and a copy of the copy
                near = edit(text, rng, 1)
                docs.append((f"{lang}:{j}n", lang, near))
                docs.append((f"{lang}:{j}nn", lang, edit(near, rng, 1)))
            elif r < 0.4:  # the same text under another language label is no duplicate
                docs.append((f"x:{j}", "und_Zyyy", text))
    text = docs[0][2]
    for k in range(30):  # a drifting chain: its far end is unlike its start, joined only through the chain
        text = edit(text, rng, 2)
        docs.append((f"chain:{k}", docs[0][1], text))
    docs.append(("a~2", "eng_Latn", "a document whose own id looks like a renamed one, nothing else is like it"))
    order = list(range(len(docs)))
    rng.shuffle(order)  # copies before and after their originals, across units
    docs = [docs[i] for i in order]
    cfg = CorpusConfig()
    width = cfg.dedup.bands * cfg.dedup.rows_per_band
    units, cut = [], sorted(rng.sample(range(1, len(docs)), 6))
    for k, (s, e) in enumerate(zip([0, *cut, len(docs)], [*cut, len(docs), len(docs)])):
        part = docs[s:e]  # the last unit is empty
        table = pa.table({"id": pa.array([d[0] for d in part], pa.string()),
                          "lang": pa.array([d[1] for d in part], pa.string()),
                          "script": pa.array([d[1].split("_")[-1] for d in part], pa.string()),
                          "text": pa.array([d[2] for d in part], pa.string())})
        sigs = dedup.signatures(table, cfg.dedup) if part else np.zeros((0, width), np.uint32)
        table = table.append_column("dedup_key", pa.array([dedup.dedup_key(d[2]) for d in part], pa.string()))
        table = table.append_column("minhash", pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), width))
        write_parquet(str(tmp_path / f"u{k}" / "docs.parquet"), table)
        units.append({"dir": str(tmp_path / f"u{k}"), "kept": len(part)})
    return units, docs


def _reference(units, docs, cfg):
    renames = dedup.unique_ids(units)
    decisions = dedup.global_dedup(units, cfg, renames)

    def final(row):
        while row in decisions:
            row = decisions[row][1]
        return row

    sizes = Counter(final(r) for r in decisions)
    ids = [renames.get(i, d[0]) for i, d in enumerate(docs)]
    forced = ForcedHeldout(0.1)
    kept = [i for i in range(len(docs)) if i not in decisions]
    forced.add([docs[i][1] for i in kept], [ids[i] for i in kept])
    return ids, {r: (d[0], d[2], d[3]) for r, d in decisions.items()}, {i: 1 + sizes.get(i, 0) for i in kept}, forced.ids


@pytest.mark.parametrize("parts,small_group", [(1, 48), (3, 2), (8, 48)])
def test_partitioned_dedup_equals_the_in_memory_reference(shared_data, tmp_path, monkeypatch, parts, small_group):
    # small_group 2: every group of 3+ candidates through the blockwise path of large groups
    monkeypatch.setattr(dedup_partitioned, "SMALL_GROUP", small_group)
    monkeypatch.setattr(dedup_partitioned, "PAIR_CHUNK", 64)  # many chunks and blocks
    monkeypatch.setattr(dedup_partitioned, "COMPACT_EDGES", 16)  # links deduplicated on the way
    units, docs = _corpus(shared_data, tmp_path)
    cfg = CorpusConfig()
    cfg.dedup.partitions = parts
    ids, decisions, sizes, forced = _reference(units, docs, cfg)
    reasons = Counter(d[0] for d in decisions.values())
    assert reasons["exact_duplicate"] >= 10 and reasons["near_duplicate"] >= 20  # the planted work is there
    assert max(sizes.values()) >= 25  # the chain is one cluster

    result = dedup_partitioned.dedup(units, cfg, str(tmp_path / "spill"), "local", 0.1)
    got = {r: (d[0], d[2], d[3]) for r, d in result.as_dict().items()}
    assert got == decisions
    got_ids, got_sizes = [], {}
    for u, unit in enumerate(result.units):
        d = result.decisions(u)
        got_ids += d["ids"]
        got_sizes.update({unit.offset + i: int(s) for i, s in enumerate(d["size"]) if d["reason"][i] is None})
    assert got_ids == ids and len(set(got_ids)) == len(ids)
    assert got_sizes == sizes
    assert result.forced == forced
    # one partition: done in this process with the spill in memory; more: Parquet files
    assert result.stats["partitions"] == parts and (result.stats["spill_bytes"] > 0) == (parts > 1)
    assert (tmp_path / "spill").exists() == (parts > 1)
    assert any(k.startswith(result.plan.spill) for k in dedup_partitioned._tables) == (parts == 1)
    assert result.stats["components_rounds"] >= 2
    result.cleanup()
    assert not (tmp_path / "spill").exists() or not any((tmp_path / "spill").iterdir())
    assert not any(k.startswith(result.plan.spill) for k in dedup_partitioned._tables)
