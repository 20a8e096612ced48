"""`corpus.ingest.allowed_roots` and BABELFORGE_ALLOWED_ROOTS: an input outside the allowed
locations is refused before anything is read, whatever `..`, symlinks, globs or credentials
it uses."""

from __future__ import annotations

import json
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
