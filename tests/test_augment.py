import json
import logging
import sys

import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE
from tiny_models import build_tiny_marian

from pipeline.config import AugmentConfig, TranslationModel
from pipeline.corpus.augment import augment
from pipeline.corpus.prepare import prepare
from pipeline.schema import make_docs

sys.path.insert(0, str(SAMPLE))
from texts import DOCS  # noqa: E402

EN = [t for v in DOCS["en"].values() for t in v]
SW = [t for v in DOCS["sw"].values() for t in v]


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return str(build_tiny_marian(tmp_path_factory.mktemp("marian"), EN * 3, SW * 3))


def en_docs(n=6):
    return make_docs([f"en-{i}" for i in range(n)], EN[:n], ["s"] * n, lang=["eng_Latn"] * n)


def en_to_sw(marian_dir: str, max_new: int, check_language: bool) -> AugmentConfig:
    """Back-translation en -> sw with the tiny model; no length-ratio cut (random outputs)."""
    return AugmentConfig(models=[TranslationModel(source="en", target="sw", model_dir=marian_dir)],
                         max_new_per_language=max_new, max_new_tokens=24, check_language=check_language,
                         max_length_ratio=100)


def test_no_model_configured_is_skipped_loudly(caplog):
    with caplog.at_level(logging.WARNING):
        kept, rej = augment(en_docs(), AugmentConfig())
    assert kept.num_rows == 0 and rej.num_rows == 0
    assert "no translation model configured" in caplog.text


def test_back_translation_generates_marked_documents(marian_dir):
    kept, rej = augment(en_docs(6), en_to_sw(marian_dir, 5, check_language=False))
    assert kept.num_rows + rej.num_rows == 5
    assert kept.num_rows >= 1
    assert set(kept["lang"].to_pylist()) == {"swh_Latn"} and all(kept["augmented"].to_pylist())
    assert kept["id"].to_pylist() == [f"bt-swh_Latn-{o}" for o in kept["origin_id"].to_pylist()]
    assert all(o.startswith("en-") for o in kept["origin_id"].to_pylist())
    assert all(t for t in kept["text"].to_pylist())
    assert set(rej["stage"].to_pylist()) <= {"augment"}


def test_synthetic_outputs_are_filtered_by_language_with_reasons(marian_dir):
    """A random tiny model writes gibberish: the language check must reject it, with a reason."""
    kept, rej = augment(en_docs(6), en_to_sw(marian_dir, 6, check_language=True))
    assert kept.num_rows + rej.num_rows == 6
    assert rej.num_rows >= 1
    assert set(rej["reason"].to_pylist()) <= {"wrong_language", "empty_output", "copy_of_input"}
    assert all(rej["augmented"].to_pylist())
    assert all("expected swh_Latn" in d for d, r in zip(rej["detail"].to_pylist(), rej["reason"].to_pylist())
               if r == "wrong_language")


def test_prepare_with_augmentation_keeps_accounting(marian_dir, tmp_path, demo_corpus_config):
    cfg = demo_corpus_config.model_copy(deep=True)
    cfg.augment = en_to_sw(marian_dir, 8, check_language=False)
    report = prepare([str(SAMPLE / "corpus" / "*")], str(tmp_path), cfg)
    assert report["input"] == report["kept"] + report["unidentified"] + report["rejected"]
    aug = report["augmented"]
    assert aug["generated"] == 8 == aug["kept"] + aug["rejected"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["languages"]["swh_Latn"]["augmented_rows"] == aug["kept"]
    sw = pq.read_table([str(tmp_path / s["path"]) for s in manifest["shards"] if s["lang"] == "swh_Latn"])
    synthetic = sw.filter(sw["augmented"])
    assert synthetic.num_rows == aug["kept"]
    held = [s for s in manifest["shards"] if s["lang"] == "swh_Latn" and s["split"] == "heldout"]
    for s in held:  # synthetic text is never used for evaluation
        assert not any(pq.read_table(tmp_path / s["path"])["augmented"].to_pylist())
    # every kept back-translation is also a synthetic pair (source document, translation)
    pairs = manifest["parallel"]
    assert pairs["totals"]["synthetic_rows"] == aug["kept"] == pairs["pairs"]["eng_Latn-swh_Latn"]["train_rows"]
    rows = pq.read_table([str(tmp_path / f["path"]) for f in pairs["files"]]).to_pylist()
    assert all(r["synthetic"] and r["src_lang"] == "eng_Latn" and r["tgt_lang"] == "swh_Latn" for r in rows)
    assert {r["origin_id"] for r in rows} == set(synthetic["origin_id"].to_pylist())
