import pyarrow as pa
import pytest
from conftest import write_shards

from pipeline.config import ShardConfig
from pipeline.corpus.shard import heldout_mask, mixing_plan, temperature_weights
from pipeline.schema import make_docs
from pipeline.storage import read_parquet, sha256_file


def test_temperature_weights():
    sizes = {"en": 900.0, "sw": 100.0}
    assert temperature_weights(sizes, 1.0) == pytest.approx({"en": 0.9, "sw": 0.1})
    flat = temperature_weights(sizes, 0.3)
    assert sum(flat.values()) == pytest.approx(1.0)
    # p^0.3 normalised: 0.9^0.3 / (0.9^0.3 + 0.1^0.3)
    assert flat["sw"] == pytest.approx(0.1**0.3 / (0.9**0.3 + 0.1**0.3))
    assert 0.1 < flat["sw"] < 0.5


def test_heldout_is_deterministic_and_never_empty_for_a_real_language():
    ids = [f"doc-{i}" for i in range(6)]
    assert heldout_mask(ids, 0.01) == heldout_mask(ids, 0.01)
    assert sum(heldout_mask(ids, 0.01)) == 1          # forced: >= 5 docs always hold one out
    assert sum(heldout_mask(ids[:3], 0.01)) == 0
    big = [f"d{i}" for i in range(10_000)]
    assert 0.08 < sum(heldout_mask(big, 0.1)) / 10_000 < 0.12


def test_mixing_plan_sums_and_follows_weights():
    manifest = {"languages": {"en": {"train_rows": 900, "train_text_bytes": 9000, "weight": 0.6},
                              "sw": {"train_rows": 10, "train_text_bytes": 100, "weight": 0.4}}}
    plan = mixing_plan(manifest, 1001)
    assert sum(plan.values()) == 1001 and plan["sw"] in (400, 401)
    plan1 = mixing_plan(manifest, 1000, alpha=1.0)
    assert plan1["en"] == pytest.approx(1000 * 9000 / 9100, abs=1)


def test_write_shards_checksums_and_split(tmp_path):
    ids = [f"fr-{i}" for i in range(30)] + [f"de-{i}" for i in range(7)]
    docs = make_docs(ids, [f"texte {i}" for i in range(37)], ["s"] * 37, lang=["fr"] * 30 + ["de"] * 7)
    body = write_shards(docs, str(tmp_path), ShardConfig(max_rows_per_shard=10, heldout_fraction=0.2))
    assert body["totals"]["rows"] == 37
    for s in body["shards"]:
        uri = str(tmp_path / s["path"])
        assert sha256_file(uri) == s["sha256"]
        table = read_parquet(uri)
        assert table.num_rows == s["rows"] <= 10
        assert set(table["lang"].to_pylist()) == {s["lang"]}
    fr = body["languages"]["fr"]
    assert fr["train_rows"] + fr["heldout_rows"] == 30 and fr["heldout_rows"] >= 1
    assert sum(v["weight"] for v in body["languages"].values()) == pytest.approx(1.0, abs=1e-5)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert written == sorted(s["path"] for s in body["shards"])


def test_token_estimates_and_budgets(tmp_path):
    from pipeline.corpus.langid import detect_scripts

    en = ["The river rose quickly after the rain." * 3] * 40          # 117 chars each, Latin
    zh = ["大雨在山区下了一整夜，河水很快就涨了起来。"] * 4                 # 21 chars each, Han
    texts = en + zh
    docs = make_docs([f"d{i}" for i in range(len(texts))], texts, ["s"] * len(texts), lang=["eng_Latn"] * 40 + ["zho_Hans"] * 4)
    docs = docs.set_column(docs.schema.get_field_index("script"), "script", pa.array(detect_scripts(texts)))
    cfg = ShardConfig(heldout_fraction=0.0, token_cap={"en": 1000}, token_floor={"*": 500}, alpha=1.0)
    body = write_shards(docs, str(tmp_path), cfg)
    en_info, zh_info = body["languages"]["eng_Latn"], body["languages"]["zho_Hans"]
    assert en_info["train_tokens"] == pytest.approx(40 * len(en[0]) / 4.0, abs=1)
    assert zh_info["train_tokens"] == pytest.approx(4 * len(zh[0]) / 1.3, abs=1)
    assert en_info["budget_tokens"] == 1000 and en_info["budget_ratio"] < 1       # capped
    assert zh_info["budget_tokens"] == 500 and zh_info["budget_ratio"] > 1        # upsampled to the floor
    assert en_info["weight"] == pytest.approx(1000 / 1500, abs=1e-4)               # alpha 1: by budget
    assert sum(s["tokens"] for s in body["shards"]) == body["totals"]["train_tokens"]


def test_shards_are_size_targeted_with_row_groups(tmp_path):
    import pyarrow.parquet as pq

    texts = [("Le lac gèle en hiver et la neige couvre les collines. " * 4) + str(i) for i in range(3000)]
    docs = make_docs([f"d{i}" for i in range(3000)], texts, ["s"] * 3000, lang=["fr"] * 3000)
    body = write_shards(docs, str(tmp_path), ShardConfig(heldout_fraction=0.0, max_shard_bytes=200_000,
                                                          row_group_rows=250))
    files = [s for s in body["shards"] if s["lang"] == "fr"]
    assert len(files) >= 3 and sum(s["rows"] for s in files) == 3000
    for s in files[:-1]:
        meta = pq.ParquetFile(tmp_path / s["path"]).metadata
        assert meta.num_row_groups >= 1 and max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 250
    ids = pq.read_table([str(tmp_path / s["path"]) for s in files])["id"].to_pylist()
    assert ids == [f"d{i}" for i in range(3000)]   # order kept across shards


def test_forced_heldout_does_not_depend_on_batching():
    from pipeline.corpus.shard import ForcedHeldout

    ids = {"eng_Latn": [f"e{i}" for i in range(40)], "swh_Latn": [f"s{i}" for i in range(6)],
           "eus_Latn": [f"b{i}" for i in range(3)]}
    whole = {lang: heldout_mask(v, 0.01) for lang, v in ids.items()}
    forced = ForcedHeldout(0.01)
    for lang, v in ids.items():
        for k in range(0, len(v), 4):  # batches of 4, as a corpus streamed unit by unit
            forced.add([lang] * len(v[k:k + 4]), v[k:k + 4])
    batched = {lang: [m for k in range(0, len(v), 4) for m in heldout_mask(v[k:k + 4], 0.01, forced.ids)]
               for lang, v in ids.items()}
    assert batched == whole
    assert sum(whole["swh_Latn"]) == 1 and sum(whole["eus_Latn"]) == 0
