import random

import numpy as np
import pyarrow as pa
import pytest

from pipeline.config import DedupConfig
from pipeline.corpus import near_dedup, with_cluster_sizes
from pipeline.config import CorpusConfig
from pipeline.dedup import clusters, signatures
from pipeline.langid import detect_scripts
from pipeline.schema import REJECT_SCHEMA, concat, make_docs


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
                                 ["en"] * 3), DedupConfig())
    roots, sim, size = clusters(["en"] * 3, sigs, DedupConfig())
    assert roots.tolist() == [0, 0, 2] and sim[1] == 1.0 and size.tolist() == [2, 2, 1]


def test_languages_are_never_clustered_together():
    a = "the quick brown fox jumps over the lazy dog near the river bank in the morning sun"
    sigs = signatures(docs_table([a, a], ["en", "fr"]), DedupConfig())
    roots, _, _ = clusters(["en", "fr"], sigs, DedupConfig())
    assert roots.tolist() == [0, 1]


def test_near_dedup_keeps_first_records_cluster_and_reason():
    base = ("Heavy rain fell over the mountains all night and the river rose quickly. In spring the forest is "
            "full of birds, flowers and young green leaves. The lake freezes in winter, and snow covers the hills "
            "around the village. Farmers hope the dry weather ends soon because the fields need water.")
    texts = [base, "Something else entirely: a recipe for soup with tomatoes, onions, garlic and a little oil, "
             "boiled for twenty minutes and served hot with fresh bread.", edit(base, random.Random(0), 1)]
    kept, rej = near_dedup(docs_table(texts, ["en"] * 3), signatures(docs_table(texts, ["en"] * 3), DedupConfig()),
                           CorpusConfig())
    assert kept["id"].to_pylist() == ["d0", "d1"]
    assert rej["reason"].to_pylist() == ["near_duplicate"] and rej["duplicate_of"].to_pylist() == ["d0"]
    sized = with_cluster_sizes(kept, concat([rej], REJECT_SCHEMA))
    assert sized["cluster_size"].to_pylist() == [2, 1]


def test_near_duplicates_recall_and_precision_on_real_text(shared_data):
    """Documents of 6 real sentences in 12 languages; a copy of each third one with two word
    edits. Recall of the edited copies >= 95%, precision of the removals >= 0.99."""
    rng = random.Random(0)
    texts, langs, truth = [], [], []
    for lang in ["en", "fr", "de", "es", "ru", "ar", "hi", "sw", "eu", "pt", "it", "tr"]:
        lines = [l for l in (shared_data / "lingua-sentences" / f"{lang}.txt").read_text().splitlines() if l.strip()]
        originals = [" ".join(lines[i : i + 6]) for i in range(0, 600, 6)]
        for j, doc in enumerate(originals):
            texts.append(doc); langs.append(lang); truth.append(False)
            if j % 3 == 0:
                texts.append(edit(doc, rng)); langs.append(lang); truth.append(True)
    docs = docs_table(texts, langs)
    roots, _, _ = clusters(langs, signatures(docs, DedupConfig()), DedupConfig())
    removed = roots != np.arange(len(texts))
    truth = np.array(truth)
    recall = (removed & truth).sum() / truth.sum()
    precision = (removed & truth).sum() / max(removed.sum(), 1)
    assert recall >= 0.95, recall
    assert precision >= 0.99, precision
