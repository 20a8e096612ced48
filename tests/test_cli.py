import json

from conftest import ROOT, SAMPLE, write

from flows.cli import main


def test_prepare_command_writes_the_documented_layout(tmp_path, capsys):
    out = tmp_path / "corpus"
    rc = main(["prepare", str(SAMPLE / "corpus" / "news.jsonl"), str(SAMPLE / "corpus" / "noise.jsonl"),
               "--out", str(out), "--config", str(ROOT / "configs" / "demo.yaml")])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"input", "kept", "rejected", "languages"}
    assert report["input"] == report["kept"] + report["unidentified"] + report["rejected"]
    assert (out / "manifest.json").exists() and list((out / "shards").glob("*/*.parquet"))
    files = {p.stem: p for p in (out / "rejects").iterdir()}
    assert {"ingest", "langid", "dedup"} <= set(files) <= {"ingest", "clean", "langid", "quality", "dedup", "augment"}
    for stage, path in files.items():
        import pyarrow.parquet as pq
        assert set(pq.read_table(path)["stage"].to_pylist()) == {stage}
    for lang, info in report["languages"].items():
        assert set(info) == {"input", "kept", "unidentified", "rejected"}
    assert '"kept"' in capsys.readouterr().out


def test_bad_config_fails_before_work_and_names_the_field(tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", "corpus:\n  langid:\n    min_score: 7\n")
    rc = main(["prepare", str(SAMPLE / "corpus" / "news.jsonl"), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "c.yaml" in err and "corpus.langid.min_score" in err
    assert not (tmp_path / "o").exists()


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    rc = main(["prepare", str(tmp_path / "nothing-*.jsonl"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "nothing-" in capsys.readouterr().err


def test_set_overrides_one_field_and_names_a_bad_key(tmp_path, capsys):
    """`--set dotted.key=value` changes one field (value read as YAML) without a config file;
    an unknown key or a bad value is an error naming the `--set` key, before any work."""
    import json

    out = tmp_path / "o"
    rc = main(["prepare", str(SAMPLE / "corpus" / "news.jsonl"), "--out", str(out),
               "--set", "corpus.langid.languages=[fr]", "--set", "corpus.dedup.near=false"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["languages"]) == ["fra_Latn"]
    for bad, named in ((["--set", "corpus.dedup.thresh=0.6"], "--set corpus.dedup.thresh"),
                       (["--set", "corpus.dedup.threshold=high"], "--set corpus.dedup.threshold"),
                       (["--set", "corpus.dedup.threshold"], "expected dotted.key=value")):
        rc = main(["prepare", str(SAMPLE / "corpus" / "news.jsonl"), "--out", str(tmp_path / "bad"), *bad])
        assert rc == 2 and named in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_a_stage_without_its_input_names_the_command_that_makes_it(tmp_path, capsys):
    rc = main(["pretrain", "--output-dir", str(tmp_path), "--run-name", "r"])
    err = capsys.readouterr().err
    assert rc == 2 and "no prepared corpus at" in err and "babelforge prepare" in err
    rc = main(["finetune", "--output-dir", str(tmp_path), "--run-name", "r"])
    err = capsys.readouterr().err
    assert rc == 2 and "no pretrained model at" in err and "babelforge pretrain" in err
    rc = main(["evaluate", "--output-dir", str(tmp_path), "--run-name", "r"])
    err = capsys.readouterr().err
    assert rc == 2 and "no model to evaluate" in err and "babelforge pretrain" in err


def _evaluate_a_saved_model(tmp_path, capsys, parallel_inputs: str):
    """Prepare the sample corpus with these parallel inputs, save a tiny untrained encoder as the
    run's pretrained model, run `babelforge evaluate`; (stdout, report, manifest, run dir)."""
    import json

    from pipeline.config import ModelConfig, TokenizerConfig
    from pipeline.training.model import build_mlm
    from pipeline.training.tokenizer import train_tokenizer

    run = tmp_path / "r"
    sets = ["--set", f"corpus.parallel.inputs={parallel_inputs}", "--set",
            "corpus.parallel.heldout_fraction=0.95", "--set", "model.hidden_size=32", "--set",
            "model.intermediate_size=64", "--set", "model.num_layers=1"]
    assert main(["prepare", str(SAMPLE / "corpus" / "*"), "--out", str(run / "corpus"), *sets]) == 0
    manifest = json.loads((run / "corpus" / "manifest.json").read_text())
    tok = train_tokenizer(manifest, str(run / "corpus"), str(run / "tokenizer"), TokenizerConfig(vocab_size=1200))
    build_mlm(ModelConfig(hidden_size=32, intermediate_size=64, num_layers=1), tok).save_pretrained(run / "model-pretrained")
    tok.save_pretrained(run / "model-pretrained")
    capsys.readouterr()
    assert main(["evaluate", "--output-dir", str(tmp_path), "--run-name", "r", *sets]) == 0
    report = json.loads((run / "eval" / "report.json").read_text())
    return capsys.readouterr().out, report, manifest, run


def test_evaluate_runs_the_suite_on_an_existing_model(tmp_path, capsys):
    """`babelforge evaluate` on a run's saved pretrained model: held-out LM loss per language and
    retrieval per language pair (the corpus has translation pairs), tables and charts."""
    out, report, manifest, run = _evaluate_a_saved_model(tmp_path, capsys, f"[{{path: {SAMPLE / 'parallel'}}}]")
    r = report["retrieval"]
    assert f"sentence retrieval on held-out pairs: macro accuracy {r['macro_accuracy']} (ratio margin: " \
           f"{r['macro_margin_accuracy']})" in out
    assert set(r["pairs"]) == set(manifest["parallel"]["pairs"])
    assert set(report["lm"]["languages"]) == {k for k, v in manifest["languages"].items() if v["heldout_rows"]}
    assert {"lm", "retrieval"} <= set(report["charts"]) and (run / "eval" / "retrieval.png").exists()


def test_retrieval_is_reported_per_collection_of_pairs(tmp_path, capsys):
    """Pairs from two folders are two test sets: each is its own candidate pool, section, table
    and chart (`retrieval_<folder>`), as XTREME keeps Tatoeba apart from other sets."""
    import shutil

    for folder, stems in (("talk", ["sample.en-fr", "sample.en-de"]), ("travel", ["sample.en-es"])):
        (tmp_path / folder).mkdir()
        for stem in stems:
            for f in (SAMPLE / "parallel").glob(f"{stem}.*"):
                shutil.copy(f, tmp_path / folder / f.name)
    inputs = f"[{{path: {tmp_path / 'talk'}}}, {{path: {tmp_path / 'travel'}}}]"
    out, report, manifest, run = _evaluate_a_saved_model(tmp_path, capsys, inputs)
    assert "retrieval" not in report
    talk, travel = report["retrieval_talk"], report["retrieval_travel"]
    assert set(talk["pairs"]) == {"eng_Latn-fra_Latn", "deu_Latn-eng_Latn"} and set(travel["pairs"]) == {"eng_Latn-spa_Latn"}
    assert talk["collection"] == "talk" and travel["collection"] == "travel"
    for key, info in manifest["parallel"]["pairs"].items():  # every held-out pair in exactly one test set
        section = travel if key == "eng_Latn-spa_Latn" else talk
        assert section["pairs"][key]["pairs"] == info["heldout_rows"]
    assert "held-out pairs (talk): macro accuracy" in out and "held-out pairs (travel): macro accuracy" in out
    assert {"retrieval_talk", "retrieval_travel"} <= set(report["charts"])
    assert (run / "eval" / "retrieval_talk.png").exists() and (run / "eval" / "retrieval_travel.png").exists()
    md = (run / "eval" / "report.md").read_text()
    assert "### Sentence retrieval on held-out translation pairs (talk)" in md and "(travel)" in md
