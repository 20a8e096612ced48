import random

import numpy as np
import pyarrow as pa
from conftest import label

from pipeline.config import CorpusConfig, DedupConfig
from pipeline.corpus.dedup import clusters, signatures
from pipeline.corpus.langid import detect_scripts
from pipeline.schema import make_docs


def docs_table(texts, langs):
    t = make_docs([f"d{i}" for i in range(len(texts))], texts, ["s"] * len(texts), lang=langs)
    return t.set_column(t.schema.get_field_index("script"), "script", pa.array(detect_scripts(texts)))


def edit(text: str, rng: random.Random, n_edits: int = 2) -> str:
    words = text.split()
    for _ in range(n_edits):
        i = rng.randrange(len(words))
        words[i] = words[i][::-1] if rng.random() < 0.5 else words[i] + "s"
    return " ".join(words)


def test_identical_and_unrelated():
    a = "the quick brown fox jumps over the lazy dog near the river bank in the morning sun"
    sigs = signatures(docs_table([a, a, "completely different words make up this other sentence about cooking pasta at home"],
                                 ["eng_Latn"] * 3), DedupConfig())
    roots, sim, size = clusters(["eng_Latn"] * 3, sigs, DedupConfig())
    assert roots.tolist() == [0, 0, 2] and sim[1] == 1.0 and size.tolist() == [2, 2, 1]


def test_languages_are_never_clustered_together():
    a = "the quick brown fox jumps over the lazy dog near the river bank in the morning sun"
    sigs = signatures(docs_table([a, a], ["eng_Latn", "fra_Latn"]), DedupConfig())
    roots, _, _ = clusters(["eng_Latn", "fra_Latn"], sigs, DedupConfig())
    assert roots.tolist() == [0, 1]


def test_dedup_across_units_keeps_first_records_cluster_and_reason(tmp_path):
    """Two files (work units): an exact copy of a near duplicate counts for the document
    finally kept; rejects name the id kept instead."""
    import json

    import pyarrow.parquet as pq

    from pipeline.corpus.prepare import prepare

    base = ("Heavy rain fell over the mountains all night and the river rose quickly. In spring the forest is "
            "full of birds, flowers and young green leaves. The lake freezes in winter, and snow covers the hills "
            "around the village. Farmers hope the dry weather ends soon because the fields need water.")
    other = ("A recipe for soup with tomatoes, onions, garlic and a little oil: boil it for twenty minutes "
             "and serve it hot with fresh bread and butter for the whole family to enjoy.")
    near = edit(base, random.Random(0), 1)
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in
                                                [("a1", base), ("a2", other)]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in
                                                [("b1", near), ("b2", near.upper())]) + "\n")
    cfg = CorpusConfig()
    cfg.clean.min_chars = 10
    report = prepare([str(tmp_path / "*.jsonl")], str(tmp_path / "out"), cfg)
    assert report["input"] == 4 and report["kept"] == 2
    kept = pq.read_table(list((tmp_path / "out" / "shards" / "eng_Latn").glob("*.parquet")))
    assert dict(zip(kept["id"].to_pylist(), kept["cluster_size"].to_pylist())) == {"a1": 3, "a2": 1}
    rej = pq.read_table(tmp_path / "out" / "rejects" / "dedup.parquet")
    assert dict(zip(rej["id"].to_pylist(), zip(rej["reason"].to_pylist(), rej["duplicate_of"].to_pylist()))) == {
        "b1": ("near_duplicate", "a1"), "b2": ("exact_duplicate", "b1")}


def test_near_duplicates_recall_and_precision_on_real_text(shared_data):
    """Documents of 6 real sentences in 12 languages; a copy of each third one with two word
    edits. Recall of the edited copies >= 95%, precision of the removals >= 0.99."""
    rng = random.Random(0)
    texts, langs, truth = [], [], []
    for lang in ["en", "fr", "de", "es", "ru", "ar", "hi", "sw", "eu", "pt", "it", "tr"]:
        lines = [l for l in (shared_data / "lingua-sentences" / f"{lang}.txt").read_text().splitlines() if l.strip()]
        originals = [" ".join(lines[i : i + 6]) for i in range(0, 600, 6)]
        for j, doc in enumerate(originals):
            texts.append(doc); langs.append(label(lang)); truth.append(False)
            if j % 3 == 0:
                texts.append(edit(doc, rng)); langs.append(label(lang)); truth.append(True)
    docs = docs_table(texts, langs)
    roots, _, _ = clusters(langs, signatures(docs, DedupConfig()), DedupConfig())
    removed = roots != np.arange(len(texts))
    truth = np.array(truth)
    recall = (removed & truth).sum() / truth.sum()
    precision = (removed & truth).sum() / max(removed.sum(), 1)
    assert recall >= 0.95, recall
    assert precision >= 0.99, precision
