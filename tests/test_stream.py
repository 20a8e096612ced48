"""Training streams without a global shuffle (`pipeline.training.stream`): chunk order,
rates, local shuffle windows, determinism. Pure functions on real Parquet shards; the Ray
Dataset around them is exercised by tests/test_train.py and every pretraining test."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.training.stream import chunks, read_window, windows


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three languages in shards of row groups of 100 rows: big (3,000 rows in 2 files),
    mid (600), small (150: one full and one partial row group)."""
    root = tmp_path_factory.mktemp("stream")
    files = []
    for lang, sizes in (("big", [2000, 1000]), ("mid", [600]), ("small", [150])):
        start = 0
        for k, n in enumerate(sizes):
            ids = [f"{lang}-{i}" for i in range(start, start + n)]
            path = root / f"{lang}-{k}.parquet"
            pq.write_table(pa.table({"id": ids, "text": [f"text of {i}" for i in ids], "lang": [lang] * n}),
                           path, row_group_size=100)
            files.append((str(path), lang))
            start += n
    return files


def stream(files, rates, seed=0, buffer_rows=400, root=""):
    groups = windows(chunks(files, root), rates, seed, buffer_rows)
    return groups, [read_window(w, ["id", "lang"], seed, i) for i, w in enumerate(groups)]


def test_chunks_are_the_row_groups_of_every_shard(shards):
    found = chunks(shards)
    assert len(found) == 20 + 10 + 6 + 2
    assert sum(c["rows"] for c in found if c["key"] == "small") == 150
    assert {c["rows"] for c in found if c["key"] == "small"} == {100, 50}


def test_each_language_is_drawn_at_its_rate_and_the_stream_is_seeded(shards):
    rates = {"big": 0.3, "mid": 1.0, "small": 2.5}
    _, tables = stream(shards, rates)
    ids = [i for t in tables for i in t["id"].to_pylist()]
    per_lang = Counter(i.split("-")[0] for i in ids)
    assert abs(per_lang["big"] - 900) < 90                       # 0.3 x 3,000
    assert per_lang["mid"] == 600                                # rate 1: every row once
    assert abs(per_lang["small"] - 375) < 45                     # 2.5 x 150: rows repeated 2 or 3 times
    copies = Counter(i for i in ids if i.startswith("small"))
    assert set(copies.values()) <= {1, 2, 3} and len(copies) > 140
    assert ids == [i for t in stream(shards, rates)[1] for i in t["id"].to_pylist()]     # same seed, same stream
    other = [i for t in stream(shards, rates, seed=1)[1] for i in t["id"].to_pylist()]
    assert other != ids and Counter(other)["mid-0"] == 1


def test_the_stream_does_not_depend_on_where_the_corpus_lies(shards, tmp_path):
    """Rows are kept by a seed of the shard's name in the corpus, not its absolute URI: the
    same corpus on another disk or in a bucket (a cluster run beside a one-node run) gives
    the same stream, so the same config trains the same model."""
    import shutil
    from pathlib import Path

    rates = {"big": 0.3, "mid": 1.0, "small": 2.5}
    root = str(Path(shards[0][0]).parent)
    moved = [(shutil.copy(uri, tmp_path / Path(uri).name), key) for uri, key in shards]
    here = [i for t in stream(shards, rates, root=root)[1] for i in t["id"].to_pylist()]
    there = [i for t in stream([(str(u), k) for u, k in moved], rates, root=str(tmp_path))[1]
             for i in t["id"].to_pylist()]
    assert here == there


def test_languages_are_mixed_along_the_whole_stream_and_copies_land_apart(shards):
    rates = {"big": 0.3, "mid": 1.0, "small": 2.5}
    groups, tables = stream(shards, rates, buffer_rows=300)
    assert len(groups) > 4
    for w in groups:  # a window is about buffer_rows: never more than one chunk beyond it
        assert sum(v["rows"] * v["keep"] for v in w) < 300 + 100
    langs = [t["lang"].to_pylist() for t in tables]
    # rows of the window's chunks are shuffled together: the first 20 rows of a window with
    # several languages already hold more than one
    mixed = [w for w, t in zip(groups, langs) if len({v["key"] for v in w}) > 1]
    assert mixed and all(len(set(t[:20])) > 1 for t in (langs[groups.index(w)] for w in mixed))
    # every third of the stream holds every language (no language confined to one stretch)
    flat = [lang for t in langs for lang in t]
    for part in np.array_split(np.array(flat, dtype=object), 3):
        assert set(part) == {"big", "mid", "small"}
    # the 2-3 copies of a repeated row are spread over the stream, not side by side
    pos: dict[str, list[int]] = {}
    for k, i in enumerate(i for t in tables for i in t["id"].to_pylist()):
        pos.setdefault(i, []).append(k)
    gaps = [b - a for p in pos.values() if len(p) > 1 for a, b in zip(p, p[1:])]
    assert np.median(gaps) > len(flat) / 10


def test_a_rate_of_zero_leaves_a_language_out(shards):
    _, tables = stream(shards, {"big": 0.5, "mid": 0.0})
    assert {lang for t in tables for lang in t["lang"].to_pylist()} == {"big"}
