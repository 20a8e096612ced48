import json
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, SAMPLE_LANGS, label

sys.path.insert(0, str(SAMPLE))
from texts import DOCS, TOPICS  # noqa: E402

DOCS_BY_ID = {f"{lang}-{topic}-{i}": t for lang in DOCS for topic in TOPICS for i, t in enumerate(DOCS[lang][topic])}
from pipeline.corpus.prepare import prepare
from pipeline.storage import read_parquet, sha256_file


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from conftest import ROOT, SAMPLE

    from pipeline.config import load_yaml

    out = tmp_path_factory.mktemp("corpus")
    cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    report = prepare([str(SAMPLE / "corpus" / "*")], str(out), cfg)
    return out, report, cfg


def all_rejects(out):
    import pyarrow as pa
    return pa.concat_tables([pq.read_table(p) for p in sorted((out / "rejects").glob("*.parquet"))])


def test_accounting_adds_up_overall_and_per_language(prepared):
    out, report, _ = prepared
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["input"] == on_disk["kept"] + on_disk["unidentified"] + on_disk["rejected"] == 243
    for lang, info in on_disk["languages"].items():
        assert info["input"] == info["kept"] + info["unidentified"] + sum(info["rejected"].values()), lang
    assert sum(i["kept"] for i in on_disk["languages"].values()) == on_disk["kept"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["rows"] == on_disk["kept"]
    assert manifest["unidentified"]["rows"] == on_disk["unidentified"]
    assert all_rejects(out).num_rows == on_disk["rejected"]


def test_every_sample_language_is_kept_with_its_ids(prepared):
    out, report, _ = prepared
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["languages"]) == sorted(label(l) for l in SAMPLE_LANGS)
    for s in manifest["shards"]:
        assert sha256_file(str(out / s["path"])) == s["sha256"]
    fr = read_parquet(str(out / "shards" / "fra_Latn" / "train-00000.parquet"))
    assert any(i.startswith("fr-sports-") for i in fr["id"].to_pylist())   # input ids are kept


def test_planted_noise_is_removed_with_reasons(prepared):
    out, _, _ = prepared
    rej = all_rejects(out)
    reason = dict(zip(rej["id"].to_pylist(), rej["reason"].to_pylist()))
    ids = set(reason)
    for n in range(6):
        assert reason[f"other-language-{n}"] == "language_not_allowed"
    for n in range(6):  # boilerplate-only pages
        assert reason[f"boilerplate-{n}"] in ("empty_after_cleaning", "too_short")
    for n in range(8):
        assert f"short-{n}" in ids
    und = {i for p in (out / "unidentified").rglob("*.parquet") for i in pq.read_table(p)["id"].to_pylist()}
    for n in range(3):  # rejected, or kept apart as unidentified: never in a training shard
        assert f"gibberish-{n}" in ids | und
    # mojibake copies are repaired, which makes them exact duplicates of their originals
    moji = [i for i in ids if i.startswith("mojibake-")]
    assert len(moji) == 6 and {reason[i] for i in moji} == {"exact_duplicate"}
    # of a text and its planted copies exactly one survives
    kept_texts = []
    for p in (out / "shards").rglob("*.parquet"):
        kept_texts += pq.read_table(p)["text"].to_pylist()
    for text in DOCS_BY_ID.values():
        assert kept_texts.count(text) <= 1
    copied = {i.split("-of-", 1)[1] for i in ids | {"x"} if i.startswith(("copy-", "near-"))}
    for original in copied:
        assert kept_texts.count(DOCS_BY_ID[original]) == 1, original
    details = rej.filter(pc.equal(rej["reason"], "malformed_json"))["detail"].to_pylist()
    assert details and "news.jsonl:18" in details[0]


def test_boilerplate_lines_removed_from_kept_documents(prepared):
    out, _, _ = prepared
    sw = pq.read_table(next((out / "shards" / "swh_Latn").glob("train-*.parquet")))
    assert not any("cookies" in t or "Home |" in t for t in sw["text"].to_pylist())


def test_rerun_with_same_inputs_is_a_no_op(prepared):
    from conftest import SAMPLE

    out, report, cfg = prepared
    before = sha256_file(str(out / "manifest.json"))
    mtime = (out / "manifest.json").stat().st_mtime_ns
    again = prepare([str(SAMPLE / "corpus" / "*")], str(out), cfg)
    assert again["manifest_sha256"] == before and (out / "manifest.json").stat().st_mtime_ns == mtime


def test_changed_config_recomputes_and_replaces_stale_shards(prepared, tmp_path):
    from conftest import SAMPLE

    from pipeline.config import CorpusConfig

    out = tmp_path / "c"
    cfg = CorpusConfig()
    cfg.langid.languages = ["fr", "de"]
    first = prepare([str(SAMPLE / "corpus" / "news.jsonl")], str(out), cfg)
    assert sorted(json.loads((out / "manifest.json").read_text())["languages"]) == ["deu_Latn", "fra_Latn"]
    cfg.langid.languages = ["fr"]
    second = prepare([str(SAMPLE / "corpus" / "news.jsonl")], str(out), cfg)
    assert not (out / "shards" / "deu_Latn").exists()
    assert second["input"] == first["input"] == second["kept"] + second["unidentified"] + second["rejected"]


def test_nightly_runs_share_units_and_reprocess_only_changed_inputs(prepared, tmp_path):
    """corpus.unit_cache: two runs (own output folders, one unit cache); the second, after one
    input file changed, processes only that file and writes the manifest a fresh run of the
    same inputs writes, with the inputs' sizes and version keys."""
    import shutil

    from conftest import SAMPLE

    _, _, cfg = prepared
    inputs = tmp_path / "in"
    shutil.copytree(SAMPLE / "corpus", inputs)
    cached = cfg.model_copy(deep=True)
    cached.unit_cache = str(tmp_path / "unit-cache")
    night1 = prepare([str(inputs / "*")], str(tmp_path / "night1"), cached)
    assert night1["units"]["processed"] == night1["units"]["total"] == 4 and night1["units"]["reused"] == 0
    with open(inputs / "forum.txt", "a", encoding="utf-8") as f:
        f.write("Ein neuer Beitrag im Forum: der Zug nach Hamburg hatte heute zwei Stunden Verspätung.\n")
    night2 = prepare([str(inputs / "*")], str(tmp_path / "night2"), cached)
    assert (night2["units"]["reused"], night2["units"]["processed"]) == (3, 1)
    assert night2["input"] == night1["input"] + 1
    fresh = prepare([str(inputs / "*")], str(tmp_path / "fresh"), cfg)
    assert fresh["units"]["processed"] == 4
    m2, mf = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("night2", "fresh"))
    assert m2 == mf
    forum = next(f for f in m2["input_files"] if f["uri"].endswith("forum.txt"))
    assert forum["bytes"] == (inputs / "forum.txt").stat().st_size and forum["ukey"]


def test_report_chart_is_a_png(prepared):
    out, _, _ = prepared
    data = (out / "report.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_files_split_into_units_give_the_same_shards(prepared, tmp_path):
    """The demo corpus prepared with 2 KB work units (its files split into many parts) writes
    the same shards, byte for byte, as with one unit per file."""
    from conftest import SAMPLE

    out, report, cfg = prepared
    small = cfg.model_copy(deep=True)
    small.ingest.unit_bytes = 2048
    again = prepare([str(SAMPLE / "corpus" / "*")], str(tmp_path / "split"), small)
    assert len(list((tmp_path / "split" / "_units").iterdir())) > len(list((out / "_units").iterdir()))
    first = json.loads((out / "manifest.json").read_text())
    second = json.loads((tmp_path / "split" / "manifest.json").read_text())
    assert [(s["path"], s["sha256"]) for s in first["shards"]] == [(s["path"], s["sha256"]) for s in second["shards"]]
    assert again["input"] == report["input"] and again["rejected_by_reason"] == report["rejected_by_reason"]
    # units read and processed in 1 KB batches (appended to the unit's files): the same shards
    batched = cfg.model_copy(deep=True)
    batched.ingest.batch_bytes = 1024
    third = prepare([str(SAMPLE / "corpus" / "*")], str(tmp_path / "batched"), batched)
    assert third["input"] == report["input"] and third["rejected_by_reason"] == report["rejected_by_reason"]
    manifest = json.loads((tmp_path / "batched" / "manifest.json").read_text())
    assert [(s["path"], s["sha256"]) for s in manifest["shards"]] == [(s["path"], s["sha256"]) for s in first["shards"]]


def test_repeated_ids_are_made_unique_and_counted(tmp_path):
    """Two files with the same name in different folders give the same `<file>:<line>` ids,
    and a source may repeat its own ids: every corpus document still gets its own id."""
    from conftest import write

    text = ["Le lac gèle en hiver et la neige couvre les collines du nord pendant des semaines.",
            "Die Bauern hoffen, dass die lange Trockenheit bald endet und der Regen zurückkommt.",
            "El tren sale a las ocho de la mañana y llega a la capital antes del mediodía."]
    write(tmp_path / "a" / "x.txt", "\n".join(text[:2]) + "\n")
    write(tmp_path / "b" / "x.txt", text[2] + "\n")
    write(tmp_path / "c.jsonl", '{"id": "7", "text": "%s"}\n{"id": "7", "text": "%s"}\n' % (
        "Il treno per Milano parte alle otto e arriva a mezzogiorno in punto ogni giorno.",
        "O comboio para Lisboa parte às oito horas e chega ao meio-dia, todos os dias da semana."))
    report = prepare([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c.jsonl")], str(tmp_path / "out"))
    ids = [i for p in (tmp_path / "out" / "shards").rglob("*.parquet") for i in read_parquet(str(p))["id"].to_pylist()]
    assert report["kept"] == 5 and len(ids) == len(set(ids)) == 5
    assert {"x.txt:1", "x.txt:1~2", "7", "7~2"} <= set(ids)
    assert report["renamed_ids"]["count"] == 2


def test_control_characters_and_other_line_breaks_are_normalised(tmp_path):
    from pipeline.config import CleanConfig
    from pipeline.corpus.clean import normalize_text

    cfg = CleanConfig()
    out, _ = normalize_text("une\x00 ligne\u2028deux\x0bTrois\x0cquatre\u200b\u2029cinq", cfg, [])
    assert out == "une ligne\ndeux\nTrois\nquatre\ncinq"


def test_unsure_language_is_kept_apart_not_dropped(tmp_path):
    """A document below its language's threshold lands in unidentified/und_<Script> with its
    candidates, is counted per script in the report and manifest, and is never a training shard."""
    from conftest import write

    from pipeline.config import CorpusConfig

    write(tmp_path / "in.txt", "Le lac gèle en hiver et la neige couvre les collines du nord pendant des semaines.\n"
          "Upepo mkali ulivuma kutoka baharini na mawingu meusi yakafunika kijiji chote usiku.\n")
    cfg = CorpusConfig()
    cfg.langid.min_score_per_language = {"swh": 1.0}   # nothing is ever sure enough to be Swahili
    report = prepare([str(tmp_path / "in.txt")], str(tmp_path / "out"), cfg)
    assert (report["kept"], report["unidentified"], report["rejected"]) == (1, 1, 0)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert list(manifest["languages"]) == ["fra_Latn"] and manifest["unidentified"]["rows"] == 1
    assert manifest["unidentified"]["scripts"]["und_Latn"]["candidates"] == {"swh_Latn": 1}
    und = read_parquet(str(tmp_path / "out" / manifest["unidentified"]["files"][0]["path"]))
    assert und["lang"].to_pylist() == ["und_Latn"] and und["lang_top"][0][0]["lang"].as_py() == "swh_Latn"
    assert report["languages"]["und_Latn"]["unidentified"] == 1


def test_chart_of_many_languages_shows_the_worst_kept_share():
    """Past the limit, the chart shows the languages with the lowest kept share, worst on top."""
    from pipeline.charts import chart_languages

    info = {f"l{i:03d}_Latn": {"input": 100 + i, "kept": 100 + i - (i % 7) * 10} for i in range(200)}
    shown = chart_languages(info, 20)
    assert len(shown) == 20
    share = {l: info[l]["kept"] / info[l]["input"] for l in info}
    assert max(share[l] for l in shown) <= min(share[l] for l in info if l not in shown)
    assert share[shown[-1]] == min(share.values())  # the top bar is the worst
    assert chart_languages(dict(list(info.items())[:5]), 20) == sorted(list(info)[:5], key=lambda l: info[l]["input"])
