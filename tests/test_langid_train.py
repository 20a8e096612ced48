"""Training a language-ID model (`babelforge langid train`) and deriving profile thresholds."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write

from pipeline.config import LidTrainConfig

# six UDHR translations, two of them close (Danish / Norwegian Bokmal), one Ethiopic, one Devanagari
LANGS = ["dan_Latn", "nob_Latn", "amh_Ethi", "hin_Deva", "fra_Latn", "tur_Latn"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real multilingual data not present at {SHARED_DATA}")
    tmp = tmp_path_factory.mktemp("lid")
    folder = tmp / "udhr"
    folder.mkdir()
    for lab in LANGS[:4]:
        shutil.copy(SHARED_DATA / "udhr" / f"{lab}.txt", folder / f"{lab}.txt")
    fra = (SHARED_DATA / "udhr" / "fra_Latn.txt").read_text(encoding="utf-8").splitlines()
    write(tmp / "extra.tsv", "label\ttext\n" + "".join(f"fr\t{l}\n" for l in fra if l.strip()))
    tur = [l for l in (SHARED_DATA / "udhr" / "tur_Latn.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    pq.write_table(pa.table({"label": ["tr"] * len(tur), "text": tur}), tmp / "extra.parquet")
    from pipeline.corpus.langid_train import train

    cfg = LidTrainConfig(inputs=[str(folder), str(tmp / "extra.tsv"), str(tmp / "extra.parquet")], epoch=5,
                         min_per_label=100, cutoff=20_000, bucket=100_000)
    return tmp, cfg, train(cfg, str(tmp / "out"))


def test_training_writes_model_report_and_chart(trained):
    tmp, cfg, report = trained
    assert report["labels"] == 6 and sorted(report["languages"]) == sorted(LANGS)  # 'fr', 'tr' normalised
    for lab, m in report["languages"].items():
        assert {"precision", "recall", "f1", "support", "doc_f1"} <= set(m) and m["support"] > 0
        assert 0.0 <= m["f1"] <= 1.0
    # real UDHR paragraphs held out whole: distinct scripts are never confused
    for lab in ("amh_Ethi", "hin_Deva"):
        assert report["languages"][lab]["f1"] == 1.0
    assert report["doc_macro_f1"] >= 0.9
    assert (tmp / "out" / "model.ftz").stat().st_size > 0
    assert (tmp / "out" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp / "out" / "report.md").read_text()
    assert "| dan_Latn |" in md and "Most-confused pairs" in md
    assert json.loads((tmp / "out" / "report.json").read_text())["macro_f1"] == report["macro_f1"]


def test_trained_model_plugs_into_the_pipeline(trained):
    from pipeline.config import LangIdConfig
    from pipeline.corpus.langid import predict

    tmp, _, _ = trained
    cfg = LangIdConfig(models=[{"path": str(tmp / "out" / "model.ftz")}])
    langs, scores = predict(["Alle mennesker er født frie og lige i værdighed og rettigheder.",
                             "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता प्राप्त है।"],
                            cfg.models)
    assert langs == ["dan_Latn", "hin_Deva"]


def test_heldout_lines_are_never_trained_on_and_the_split_is_stable():
    from pipeline.corpus.langid_train import split_examples

    texts = [f"sentence number {i} of this language" for i in range(300)]
    cfg = LidTrainConfig(max_per_label=100)
    train, held, skipped = split_examples(["eng_Latn"] * 300, texts, cfg)
    assert not set(train["eng_Latn"]) & set(held["eng_Latn"])
    assert len(train["eng_Latn"]) == 100 and 10 <= len(held["eng_Latn"]) <= 25
    again = split_examples(["eng_Latn"] * 300, list(reversed(texts)), cfg)
    assert set(again[1]["eng_Latn"]) == set(held["eng_Latn"])
    _, _, skipped = split_examples(["und_Latn"] * 50, texts[:50], cfg)
    assert skipped == {"und_Latn": 50}    # texts of no known language teach nothing


def test_bad_labelled_input_names_file_and_line(tmp_path):
    from pipeline.corpus.langid_train import LidDataError, read_labelled

    f = write(tmp_path / "bad.tsv", "fr\tBonjour à tous\nnot a label line without a tab\n")
    with pytest.raises(LidDataError, match=r"bad.tsv:2"):
        read_labelled([str(f)])
    pq.write_table(pa.table({"lang": ["fr"], "text": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(LidDataError, match=r"p.parquet.*label"):
        read_labelled([str(tmp_path / "p.parquet")])


def test_cli_langid_train(trained, capsys):
    from flows.cli import main

    tmp, _, _ = trained
    rc = main(["langid", "train", str(tmp / "udhr"), "--out", str(tmp / "cli"), "--epoch", "2", "--dim", "8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "held-out macro F1" in out and (tmp / "cli" / "model.ftz").exists()
    assert json.loads((tmp / "cli" / "report.json").read_text())["config"]["dim"] == 8


def test_derived_profiles_fit_clean_text(shared_data, tmp_path):
    """Thresholds derived from clean UDHR text: every clean document of those languages passes
    the filters with them, and Odia (danda) and Armenian lines count as punctuated."""
    from pipeline.corpus import filters
    from pipeline.corpus.profile_stats import derive
    from pipeline.corpus.profiles import line_end_characters

    assert {"।", "։", "።", "。", "؟", "၊", "།"} <= line_end_characters()
    folder = tmp_path / "udhr"
    folder.mkdir()
    for lab in ("ory_Orya", "hye_Armn", "ike_Cans", "quz_Latn"):
        if (shared_data / "udhr" / f"{lab}.txt").exists():
            shutil.copy(shared_data / "udhr" / f"{lab}.txt", folder / f"{lab}.txt")
    derived = derive([str(folder)], doc_lines=5)
    for path in folder.iterdir():
        lab = path.stem
        lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        docs = ["\n".join(lines[i : i + 5]) for i in range(0, len(lines) - 4, 5)]
        over = derived.get(lab, {})
        failed = [filters.check(d, lab, lab.split("_")[1], over) for d in docs]
        assert sum(f is None for f in failed) >= 0.95 * len(docs), (lab, [f for f in failed if f][:3])
