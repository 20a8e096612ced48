"""`corpus.ingest.allowed_roots` and BABELFORGE_ALLOWED_ROOTS: an input outside the allowed
locations is refused before anything is read, whatever `..`, symlinks, globs or credentials
it uses."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import ROOT, SAMPLE

from pipeline.allowed_roots import ENV, InputNotAllowedError, check
from pipeline.config import load_yaml


@pytest.fixture(autouse=True)
def _no_worker_roots(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def test_local_inputs_are_resolved_before_they_are_compared(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "corpus").mkdir(parents=True)
    (tmp_path / "database").mkdir()
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"id": "s", "text": "the worker\'s secret"}\n')
    roots = [str(data)]
    check([str(data / "corpus" / "news.jsonl"), str(data / "corpus" / "*"), str(data), f"{data}/corpus/../x"], roots)
    check([], roots)
    with pytest.raises(InputNotAllowedError, match=f"resolves to {secret}"):
        check([f"{data}/corpus/../../secret.jsonl"], roots)
    with pytest.raises(InputNotAllowedError, match="database"):  # a prefix of the name is not a parent folder
        check([str(tmp_path / "database" / "x.jsonl")], roots)
    with pytest.raises(InputNotAllowedError):  # a glob whose fixed part is above the root
        check([f"{tmp_path}/da*/corpus/x.jsonl"], roots)
    (data / "corpus" / "link").symlink_to(tmp_path)
    with pytest.raises(InputNotAllowedError, match="secret.jsonl"):
        check([str(data / "corpus" / "link" / "secret.jsonl")], roots)
    monkeypatch.chdir(tmp_path)  # relative roots and inputs: from the worker's folder
    check(["data/corpus/x.jsonl", "./data/corpus/*"], ["data"])
    with pytest.raises(InputNotAllowedError, match="outside the allowed input locations \\['data'\\]"):
        check(["data/../secret.jsonl"], ["data"])
    check([str(secret)], [])  # no roots: no restriction (local use)


def test_uri_inputs_match_scheme_bucket_and_whole_segments():
    roots = ["s3://bucket/in/", "https://data.example.org/pub"]
    check(["s3://bucket/in/a.jsonl", "s3://bucket/in/sub/*.jsonl", "s3://bucket/in",
           "https://user:pw@data.example.org/pub/x.jsonl?X-Amz-Signature=abc123"], roots)
    for uri in ("s3://bucket/inbox/a.jsonl", "s3://other/in/a.jsonl", "gs://bucket/in/a.jsonl", "s3://bucket/*",
                "s3://bucket/i*/a.jsonl", "https://data.example.org.evil.com/pub/x", "https://data.example.org/public",
                "/etc/passwd"):
        with pytest.raises(InputNotAllowedError, match="outside the allowed input locations"):
            check([uri], roots)
    for uri in ("s3://bucket/in/../secret/a.jsonl", "s3://bucket/in/%2E%2E/secret/a.jsonl", "s3://bucket/in/./a"):
        with pytest.raises(InputNotAllowedError, match="'..' path segments"):
            check([uri], roots)
    with pytest.raises(InputNotAllowedError) as e:
        check(["https://user:pw@evil.example.com/x?X-Amz-Signature=abc123"], roots)
    assert "pw" not in str(e.value) and "abc123" not in str(e.value)


def test_the_workers_roots_narrow_what_a_run_config_allows(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.setenv(ENV, json.dumps([str(tmp_path / "a")]))
    check([str(tmp_path / "a" / "x.jsonl")], [])
    for config_roots in ([], [str(tmp_path)]):  # a flow run's parameters cannot widen the worker's roots
        with pytest.raises(InputNotAllowedError, match=ENV):
            check([str(tmp_path / "b" / "x.jsonl")], config_roots)
    monkeypatch.setenv(ENV, f"s3://bucket/in, {tmp_path / 'a'}")
    check(["s3://bucket/in/x.jsonl", str(tmp_path / "a" / "y")], [])
    with pytest.raises(InputNotAllowedError, match="corpus.ingest.allowed_roots"):
        check(["s3://bucket/in/x.jsonl"], [str(tmp_path / "a")])


def test_prepare_refuses_an_input_outside_the_roots_before_reading_anything(tmp_path):
    """Through the corpus phase: a symlink inside the allowed folder, matched by a glob, leads
    to a file outside it: refused, naming it, with nothing written; without it the same call
    runs; a parallel input outside the roots is refused as well."""
    from pipeline.corpus.prepare import prepare

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE / "corpus" / "news.jsonl", data / "news.jsonl")
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"id": "s", "text": "Ceci est le secret du serveur, il ne doit pas sortir."}\n')
    (data / "more.jsonl").symlink_to(secret)
    cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    cfg.ingest.allowed_roots = [str(data)]
    out = tmp_path / "out"
    with pytest.raises(InputNotAllowedError, match=f"more.jsonl \\(resolves to {secret}\\)"):
        prepare([f"{data}/*.jsonl"], str(out), cfg)
    assert not [p for p in out.rglob("*") if p.is_file()]
    with pytest.raises(InputNotAllowedError, match="corpus.ingest.inputs"):
        prepare([f"{data}/../secret.jsonl"], str(out), cfg)
    (data / "more.jsonl").unlink()
    assert prepare([f"{data}/*.jsonl"], str(out), cfg)["kept"] > 0
    cfg.parallel.inputs = [{"path": str(tmp_path / "pairs.tsv"), "src_lang": "en", "tgt_lang": "fr"}]
    with pytest.raises(InputNotAllowedError, match="pairs.tsv"):
        prepare([f"{data}/*.jsonl"], str(out), cfg)


# ---------------------------------------------------------------- every location a run reads (M6)


@pytest.fixture
def worker_roots(tmp_path, monkeypatch):
    """A worker with BABELFORGE_ALLOWED_ROOTS = <tmp>/allowed, holding a model folder and labelled
    files; <tmp>/secret lies outside."""
    allowed = tmp_path / "allowed"
    (allowed / "model").mkdir(parents=True)
    (allowed / "model" / "config.json").write_text("{}")
    (allowed / "labelled").mkdir()
    for name in ("train.tsv", "test.tsv"):
        (allowed / "labelled" / name).write_text("lang\tlabel\ttext\neng\tx\thello\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "keys.tsv").write_text("lang\tlabel\ttext\neng\tAKIA-SECRET\tx\n")
    monkeypatch.setenv(ENV, str(allowed))
    return allowed, secret


def _cfg(allowed, **sections):
    from pipeline.config import PipelineConfig

    base = {"corpus": {"ingest": {"inputs": [f"{allowed}/corpus/*"]}},
            "finetune": {"train_path": f"{allowed}/labelled/train.tsv", "test_path": f"{allowed}/labelled/test.tsv"}}
    for key, value in sections.items():
        section, field = key.split("__")
        base.setdefault(section, {})[field] = value
    return PipelineConfig.model_validate(base)


def test_every_location_a_run_reads_is_checked_against_the_workers_roots(worker_roots):
    """Not only the corpus inputs: the model and data folders a run reads (a labelled file's
    labels become a registered model's id2label) must lie under BABELFORGE_ALLOWED_ROOTS, a folder
    or glob entry by entry (a symlink inside an allowed folder cannot lead out), refused before
    any work with the field and the path named; the shipped language-ID models are no location."""
    from pipeline.allowed_roots import check_run

    allowed, secret = worker_roots
    check_run(_cfg(allowed, model__pretrained_dir=str(allowed / "model"),
                   finetune__extra_train_paths=[f"{allowed}/labelled/*.tsv"]))
    outside = str(secret / "keys.tsv")
    cases = {
        "finetune.train_path": {"finetune__train_path": outside},
        "finetune.test_path": {"finetune__test_path": outside},
        "finetune.dev_path": {"finetune__dev_path": outside},
        "finetune.extra_train_paths[0]": {"finetune__extra_train_paths": [outside]},
        "model.pretrained_dir": {"model__pretrained_dir": str(secret)},
        "tokenizer.pretrained_dir": {"tokenizer__pretrained_dir": str(secret)},
        "corpus.langid.models[1].path": {"corpus__langid": {"models": [{"path": "lid.176"}, {"path": outside}]}},
        "corpus.augment.models[0].model_dir": {"corpus__augment": {"models": [
            {"source": "en", "target": "sw", "model_dir": str(secret)}]}},
        "corpus.augment.models[0].reverse_model_dir": {"corpus__augment": {"models": [
            {"source": "en", "target": "sw", "model_dir": str(allowed / "model"), "reverse_model_dir": str(secret)}]}},
        "corpus.ingest.inputs": {"corpus__ingest": {"inputs": [outside]}},
        "corpus.parallel.inputs[0].path": {"corpus__parallel": {"inputs": [{"path": outside}]}},
    }
    for field, sections in cases.items():
        with pytest.raises(InputNotAllowedError, match=rf"^{re.escape(field)}: input {re.escape(str(secret))}"):
            check_run(_cfg(allowed, **sections))
    # each part of a run is checked for what it reads (a flow or command that does not fine-tune
    # or pretrain is not refused for those fields); translate-train reads the translation models
    check_run(_cfg(allowed, finetune__train_path=outside, model__pretrained_dir=str(secret)),
              reads=("corpus", "evaluate"))
    translating = {"corpus__augment": {"models": [{"source": "en", "target": "sw", "model_dir": str(secret)}]},
                   "finetune__translate_train": True}
    check_run(_cfg(allowed, **translating), reads=("pretrain", "evaluate"))
    with pytest.raises(InputNotAllowedError, match=r"^corpus.augment.models\[0\].model_dir"):
        check_run(_cfg(allowed, **translating), reads=("finetune",))
    # a symlink inside the allowed folder, met by a glob or inside a model folder
    (allowed / "labelled" / "more.tsv").symlink_to(secret / "keys.tsv")
    with pytest.raises(InputNotAllowedError, match=r"finetune.train_path: input .*more.tsv \(resolves to .*keys.tsv\)"):
        check_run(_cfg(allowed, finetune__train_path=f"{allowed}/labelled/*.tsv"))
    (allowed / "labelled" / "more.tsv").unlink()
    (allowed / "model" / "tokenizer.json").symlink_to(secret / "keys.tsv")
    with pytest.raises(InputNotAllowedError, match=r"model.pretrained_dir: input .*tokenizer.json"):
        check_run(_cfg(allowed, model__pretrained_dir=str(allowed / "model")))
    (allowed / "model" / "tokenizer.json").unlink()
    (allowed / "model" / "sub").symlink_to(secret, target_is_directory=True)
    with pytest.raises(InputNotAllowedError, match=r"model.pretrained_dir: input .*sub \(resolves to"):
        check_run(_cfg(allowed, model__pretrained_dir=str(allowed / "model")))


def test_the_config_roots_bound_the_corpus_inputs_only(worker_roots, monkeypatch):
    """`corpus.ingest.allowed_roots` narrows the corpus inputs (its documented scope); the model and
    data folders answer to the worker's roots alone; without the worker's roots nothing else is
    checked (local use)."""
    from pipeline.allowed_roots import check_run

    allowed, secret = worker_roots
    narrow = {"inputs": [f"{allowed}/labelled/x"], "allowed_roots": [str(allowed / "labelled")]}
    check_run(_cfg(allowed, corpus__ingest=narrow, model__pretrained_dir=str(allowed / "model")))
    with pytest.raises(InputNotAllowedError, match="corpus.ingest.allowed_roots"):
        check_run(_cfg(allowed, corpus__ingest={**narrow, "inputs": [f"{allowed}/model/x"]}))
    monkeypatch.delenv(ENV)
    check_run(_cfg(allowed, model__pretrained_dir=str(secret), finetune__train_path=str(secret / "keys.tsv")))


def test_flows_and_cli_commands_refuse_before_any_work(worker_roots, tmp_path, monkeypatch, capsys):
    """The checks run where a run starts: every Prefect flow (`this_run`), the CLI commands, and
    language-ID training (the UI-triggerable `train-langid` deployment), before anything is
    read or written."""
    from flows.cli import main
    from flows.evaluate_and_register import evaluate_and_register
    from flows.multilingual_pipeline import multilingual_pipeline
    from flows.prepare_corpus import prepare_corpus
    from flows.train import train
    from pipeline.config import LidTrainConfig
    from pipeline.corpus.langid_train import train as train_langid

    allowed, secret = worker_roots
    out = tmp_path / "runs"
    bad = {"corpus.langid.models[0].path": {"corpus__langid": {"models": [{"path": str(secret / "lid.ftz")}]}},
           "model.pretrained_dir": {"model__pretrained_dir": str(secret)},
           "finetune.dev_path": {"finetune__dev_path": str(secret / "keys.tsv")},
           "finetune.test_path": {"finetune__test_path": str(secret / "keys.tsv")}}
    for flow, fields in ((prepare_corpus, ["corpus.langid.models[0].path"]),
                         (train, ["model.pretrained_dir", "finetune.dev_path"]),
                         (evaluate_and_register, ["finetune.test_path"]), (multilingual_pipeline, list(bad))):
        for field in fields:  # each flow checks what its stages read, and nothing else
            cfg = _cfg(allowed, **bad[field]).model_copy(update={"output_dir": str(out)})
            with pytest.raises(InputNotAllowedError, match=rf"^{re.escape(field)}: input {re.escape(str(secret))}"):
                flow.fn(cfg)
    assert not out.exists()
    with pytest.raises(InputNotAllowedError, match=r"inputs\[1\]: input .*secret"):
        train_langid(LidTrainConfig(inputs=[str(allowed / "labelled"), str(secret)]), str(tmp_path / "lid"))
    assert not (tmp_path / "lid").exists()
    monkeypatch.chdir(tmp_path)
    for argv, field in ((["finetune", "--set", f"finetune.train_path={secret}/keys.tsv"], "finetune.train_path"),
                        (["prepare", str(secret / "keys.tsv"), "--out", str(out)], "corpus.ingest.inputs"),
                        (["langid", "train", str(secret), "--out", str(tmp_path / "lid")], "inputs[0]")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"babelforge: error: {field}: input {secret}" in err, err
    assert not out.exists() and not (tmp_path / "lid").exists()


def test_a_run_joins_only_a_ray_cluster_the_worker_allows(monkeypatch):
    """BABELFORGE_ALLOWED_RAY_ADDRESSES: set, ray.address (or RAY_ADDRESS) must be one of it, checked
    at the start of a run and again where Ray is joined; a local Ray (no address) is always allowed."""
    import ray

    from pipeline.allowed_roots import RAY_ENV, RayAddressNotAllowedError, check_ray_address, check_run
    from pipeline.config import PipelineConfig, RayConfig
    from pipeline.training.raytrain import init_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(RAY_ENV, raising=False)
    check_ray_address("evil.example:6379")  # unset: no restriction
    monkeypatch.setenv(RAY_ENV, "ray-head:6379, ray://ray-head:10001")
    for ok in (None, "", "ray-head:6379", "ray://ray-head:10001"):
        check_ray_address(ok)
    check_run(PipelineConfig.model_validate({"ray": {"address": "ray-head:6379"}}))
    with pytest.raises(RayAddressNotAllowedError, match=r"^ray.address: Ray cluster address evil.example:6379 is not"):
        check_run(PipelineConfig.model_validate({"ray": {"address": "evil.example:6379"}}))
    monkeypatch.setenv("RAY_ADDRESS", "ray://u:pw@evil.example:10001")
    with pytest.raises(RayAddressNotAllowedError, match=r"^RAY_ADDRESS: Ray cluster address ray://\*\*\*@evil") as e:
        check_run(PipelineConfig())
    assert "pw" not in str(e.value)

    def no_connect(*args, **kwargs):
        raise AssertionError("ray.init called for an address the worker does not allow")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_connect)
    with pytest.raises(RayAddressNotAllowedError, match="ray.address"):
        init_ray(RayConfig(address="auto"))
    with pytest.raises(RayAddressNotAllowedError, match="RAY_ADDRESS"):
        init_ray(RayConfig())


def test_the_deployments_defaults_lie_under_the_compose_workers_roots(monkeypatch):
    """Every deployment's default config passes the checks of the compose stack's worker
    (BABELFORGE_ALLOWED_ROOTS and BABELFORGE_ALLOWED_RAY_ADDRESSES of deploy/compose.yaml, run from
    BABELFORGE_HOME = /opt/babelforge, here the checkout)."""
    import yaml

    from pipeline.allowed_roots import RAY_ENV, check_run
    from pipeline.config import LidTrainConfig, PipelineConfig
    from pipeline.corpus.langid_train import check_inputs

    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    env = compose["services"]["prefect-worker"]["environment"]
    monkeypatch.setenv(ENV, env[ENV].replace("/opt/babelforge", str(ROOT)))
    monkeypatch.setenv(RAY_ENV, env[RAY_ENV])
    monkeypatch.setenv("RAY_ADDRESS", env["RAY_ADDRESS"])
    monkeypatch.chdir(ROOT)
    spec = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    for d in spec["deployments"]:
        config = d["parameters"]["config"]
        if d["name"] == "train-langid":
            check_inputs(LidTrainConfig.model_validate(config))
        else:
            check_run(PipelineConfig.model_validate(config))
