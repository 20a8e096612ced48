"""Nothing secret in outputs (issue 31, item 6): credentials in URIs are redacted before they are
logged, stored in rows, manifests, params, artifacts or Prefect results; secret config fields are
never dumped; a whole run with a planted secret in the tracking URI and in input URIs writes it
nowhere."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from conftest import SAMPLE, write
from prefect import flow

from pipeline.config import PipelineConfig
from pipeline.redact import (
    MASK,
    install_log_redaction,
    is_redacted,
    redact,
    redact_text,
    redact_uri,
    redacted_errors,
    refuse_redacted,
)

# ---------------------------------------------------------------- the helper


@pytest.mark.parametrize("uri, expected", [
    ("http://bf:s3cret@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
    ("https://user:p%40ss@mlflow.example.com/api?x=1", "https://***@mlflow.example.com/api?x=1"),
    ("https://ghp_TOKEN123@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("ftp://u:p@host/dir/file.txt", "ftp://***@host/dir/file.txt"),
    ("s3://AKIAKEY:secretkey@bucket/key.jsonl", "s3://***@bucket/key.jsonl"),
    ("http://u:pa/ss@host/x.txt", "http://***@host/x.txt"),          # an unescaped '/' in the password
    ("http://a:b@c@host/x", "http://***@host/x"),                    # the last '@' of the authority ends it
    # AWS SigV4 presigned URL
    ("https://b.s3.amazonaws.com/k.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101%2F"
     "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
     "&X-Amz-Security-Token=FwoGZX&X-Amz-Signature=0123abcd",
     "https://b.s3.amazonaws.com/k.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
     "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=***"
     "&X-Amz-Signature=***"),
    # lower-case parameter names are the same parameters
    ("https://b.s3.amazonaws.com/k?x-amz-signature=abc&x-amz-credential=def", 
     "https://b.s3.amazonaws.com/k?x-amz-signature=***&x-amz-credential=***"),
    # AWS SigV2
    ("http://127.0.0.1:9000/b/k.jsonl?AWSAccessKeyId=AKIAX&Signature=uNjL%3D&Expires=1796404652",
     "http://127.0.0.1:9000/b/k.jsonl?AWSAccessKeyId=***&Signature=***&Expires=1796404652"),
    # GCS V2 and V4
    ("https://storage.googleapis.com/b/o?GoogleAccessId=svc@p.iam.gserviceaccount.com&Expires=1&Signature=SS",
     "https://storage.googleapis.com/b/o?GoogleAccessId=***&Expires=1&Signature=***"),
    ("https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%2F2024"
     "&X-Goog-Signature=beef", "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
     "&X-Goog-Credential=***&X-Goog-Signature=***"),
    # Azure SAS: only the signature is secret
    ("https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&se=2024-01-01&sr=b&sp=r&sig=XYZ%3D",
     "https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&se=2024-01-01&sr=b&sp=r&sig=***"),
    # tokens, keys, passwords of all spellings
    ("https://api.example.com/data.jsonl?token=T&api_key=K&apikey=K2&key=K3&access_token=A&password=P&lang=fr",
     "https://api.example.com/data.jsonl?token=***&api_key=***&apikey=***&key=***&access_token=***&password=***"
     "&lang=fr"),
    ("https://h/x?Client_Secret=c;Auth=a", "https://h/x?Client_Secret=***;Auth=***"),
    ("https://app/cb#access_token=SEC&state=1", "https://app/cb#access_token=***&state=1"),
    ("https://u:p@h/x?sig=S#frag", "https://***@h/x?sig=***#frag"),
    ("https://h/x?token=", "https://h/x?token="),                    # nothing to hide
])
def test_redact_uri_hides_userinfo_and_credential_parameters(uri, expected):
    assert redact_uri(uri) == expected
    assert redact_uri(expected) == expected  # idempotent


@pytest.mark.parametrize("uri", [
    "data/x.jsonl", "data/sample/corpus/*", "runs/demo/corpus", "/abs/path/a@b.txt", "data/what?.txt",
    "s3://bucket/k", "s3://bucket/in/*.jsonl", "s3://bucket/a@b/c", "s3://bucket/k?versionId=3",
    "file:///tmp/a@b.jsonl", "sqlite:////tmp/mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db", "gs://b/o.parquet",
    "hf://datasets/org/name", "http://127.0.0.1:5000", "http://host:8080/a@b", "https://example.com/p?lang=fr&q=1",
    "mlflow-artifacts:/1/abc/artifacts/model", "block:remote-file-system/results", "", "C:x",
])
def test_ordinary_paths_and_uris_are_left_as_they_are(uri):
    assert redact_uri(uri) == uri
    assert redact_text(uri) == uri
    assert not is_redacted(uri)


def test_redact_text_finds_uris_and_query_pairs_in_free_text():
    line = ("ingest: GET http://bf:PW@127.0.0.1:5000/api/2.0 failed; 403, message='Forbidden', "
            "url='https://b.s3.amazonaws.com/k?X-Amz-Signature=SIG1&X-Amz-Date=1' and (bucket/k.jsonl?token=TOK&b=2) "
            '{"uri": "https://u:PW2@h/x"} <http://u:PW3@h/y>')
    out = redact_text(line)
    for secret in ("PW", "SIG1", "TOK", "PW2", "PW3"):
        assert f":{secret}@" not in out and f"={secret}" not in out
    assert "http://***@127.0.0.1:5000/api/2.0" in out and "X-Amz-Signature=***&X-Amz-Date=1" in out
    assert "bucket/k.jsonl?token=***&b=2" in out and '"https://***@h/x"' in out and "<http://***@h/y>" in out
    # a reject's detail names its (already redacted) source and line: redacting it again keeps the line
    where = redact_uri("https://h/k.jsonl?X-Amz-Signature=SIG&X-Amz-Date=1") + ":18"
    assert redact_text(f"{where}: malformed JSON") == "https://h/k.jsonl?X-Amz-Signature=***&X-Amz-Date=1:18: " \
                                                      "malformed JSON"
    assert redact_text("https://h/k?sig=***:18 and http://***@h/x:3") == "https://h/k?sig=***:18 and http://***@h/x:3"
    # ordinary text, key=value words that are no query and JSON are left alone
    for text in ("token=abc is a word pair, not a query", "a = b", "x" * 100, '{"id": "n:1", "text": "voilà"}',
                 "see https://fr.wikipedia.org/wiki/Paris?action=raw"):
        assert redact_text(text) == text


def test_object_uri_names_the_object_however_it_is_signed():
    from pipeline.redact import object_uri

    base = "https://b.s3.amazonaws.com/in/news.jsonl"
    for signed in (f"{base}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F2&X-Amz-Date=20240101T000000Z"
                   f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=T&X-Amz-Signature=S",
                   f"{base}?AWSAccessKeyId=A&Signature=S&Expires=1", base.replace("https://", "https://u:p@")):
        assert object_uri(signed) == base
    assert object_uri("https://a.blob.core.windows.net/c/b.txt?sv=2022&se=2024&sp=r&sig=X") == \
        "https://a.blob.core.windows.net/c/b.txt"
    for kept in ("s3://b/k?versionId=3", "https://api.example.com/x?sp=1&lang=fr", "data/x?.txt", "runs/a"):
        assert object_uri(kept) == kept  # other parameters still tell objects apart; paths are themselves
    assert object_uri(f"{base}?versionId=7&X-Amz-Signature=S") == f"{base}?versionId=7"


def test_redact_walks_reports_and_results():
    obj = {"inputs": ["https://h/a.jsonl?sig=S", "data/b.txt"], "n": 3, "nested": [{"uri": "http://u:p@h"}],
           "t": ("https://h?token=T",), "ok": None}
    assert redact(obj) == {"inputs": ["https://h/a.jsonl?sig=***", "data/b.txt"], "n": 3,
                           "nested": [{"uri": "http://***@h"}], "t": ("https://h?token=***",), "ok": None}


@pytest.mark.parametrize("make", [
    lambda n: "a" * n + " ://x",                # a long 'scheme' cut short just before its '://'
    lambda n: ("ab" * 20 + ":/") * (n // 42) + "://",
    lambda n: "http://" + "@" * n,             # userinfo made of '@'
    lambda n: "http://" + ":" * n + "/" + "@" * n,
    lambda n: "?" + "a" * n + "=",             # a 'name' far over the 64 characters a query name may have
    lambda n: "&" * n + "=",
    lambda n: "a=" * n,
    lambda n: "https://h/x?" + "token=T&" * (n // 8),
    lambda n: "http://u:p@h " * (n // 13),
])
def test_redaction_is_linear_in_its_input(make):
    """A hostile log line or URI costs time in proportion to its length (no backtracking)."""
    def cost(n: int) -> float:
        text = make(n)
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            redact_text(text)
            redact_uri(text)
            best = min(best, time.perf_counter() - t)
        return best

    small, big = cost(250_000), cost(1_000_000)
    assert big < 2.0, f"{big:.2f}s for 1M characters"
    assert big < 10 * max(small, 1e-3), f"250k: {small:.3f}s, 1M: {big:.3f}s: not linear"


def test_a_redacted_uri_is_refused_with_a_message_naming_the_field():
    assert is_redacted("http://***@h:5000") and is_redacted("https://h/x?X-Amz-Signature=***")
    with pytest.raises(ValueError, match=r"registry\.tracking_uri: http://\*\*\*@h:5000 has its credential"):
        refuse_redacted("http://***@h:5000", "registry.tracking_uri")
    refuse_redacted("http://bf:real@h:5000", "registry.tracking_uri")  # the real one passes


def test_errors_naming_a_credential_are_raised_again_redacted():
    url = "https://h/k.jsonl?X-Amz-Signature=SIGNATURE9"
    with pytest.raises(FileNotFoundError) as e:
        with redacted_errors():
            raise FileNotFoundError(url)
    assert "SIGNATURE9" not in str(e.value) and "X-Amz-Signature=***" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # the original is not printed with it

    class Picky(Exception):
        def __init__(self, status, url):
            super().__init__(f"{status}, url={url!r}")

    with pytest.raises(RuntimeError, match=r"Picky: 403, url='https://h/k.jsonl\?X-Amz-Signature=\*\*\*'"):
        with redacted_errors():
            raise Picky(403, url)
    with pytest.raises(KeyError) as plain:  # an error without a credential is the very same exception
        with redacted_errors():
            raise KeyError("lang")
    assert plain.value.args == ("lang",)


def test_log_records_are_redacted_whatever_logger_or_handler():
    """The safety net under the redaction at the source: a library's log line (and a logged
    traceback) naming a URL with its credential reaches no handler with it."""
    install_log_redaction()
    install_log_redaction()  # once is once
    assert type(logging.getLogRecordFactory()).__name__ == "_RedactingRecords"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("GET %s -> %d", "https://h/x.jsonl?X-Amz-Signature=LOGSIG1", 403)
        logger.info("connecting to %s (%d%% sure)", "http://bf:LOGPW2@127.0.0.1:5000", 100)
        try:
            raise ConnectionError("cannot reach http://bf:LOGPW3@127.0.0.1:5000/api")
        except ConnectionError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "LOGSIG1" not in out and "LOGPW2" not in out and "LOGPW3" not in out
    assert "X-Amz-Signature=***" in out and "http://***@127.0.0.1:5000 (100% sure)" in out
    assert "ConnectionError: cannot reach http://***@127.0.0.1:5000/api" in out


# ---------------------------------------------------------------- secret config fields


def test_secret_fields_are_hidden_from_repr_and_dumps_but_kept_for_use(tmp_path):
    from pipeline.config import load_config, public_dump

    uri = "http://bf:CFGSECRET@mlflow.internal:5000"
    cfg = PipelineConfig.model_validate({
        "registry": {"tracking_uri": uri},
        "corpus": {"ingest": {"inputs": ["https://h/a.jsonl?X-Amz-Signature=INSIG", "data/b.txt"]}}})
    assert cfg.registry.tracking_uri == uri                    # the object keeps it: register connects with it
    assert cfg.corpus.ingest.inputs[0].endswith("INSIG")       # ... and the reader reads with it
    assert "CFGSECRET" not in repr(cfg) and "tracking_uri" not in repr(cfg.registry)
    dumped = cfg.model_dump(mode="json")                       # Prefect's flow-run parameters, fingerprints
    assert dumped["registry"]["tracking_uri"] == "http://***@mlflow.internal:5000"
    assert dumped["corpus"]["ingest"]["inputs"] == ["https://h/a.jsonl?X-Amz-Signature=***", "data/b.txt"]
    assert "CFGSECRET" not in cfg.model_dump_json() and "INSIG" not in cfg.model_dump_json()
    again = PipelineConfig.model_validate(cfg.model_dump())  # a Python dump keeps values (the CLI's --run-name)
    assert again.registry.tracking_uri == uri
    public = public_dump(cfg)                                  # MLflow params
    assert "tracking_uri" not in public["registry"] and public["registry"]["model_name"] == "babelforge-classifier"
    assert public["corpus"]["ingest"]["inputs"][0] == "https://h/a.jsonl?X-Amz-Signature=***"
    assert "CFGSECRET" not in json.dumps(public) and "INSIG" not in json.dumps(public)

    # YAML and --set give the real value; a redacted one read back is refused naming the field
    f = write(tmp_path / "c.yaml", f"registry:\n  tracking_uri: {uri}\n")
    assert load_config(f).registry.tracking_uri == uri
    assert load_config(None, [f"registry.tracking_uri={uri}"]).registry.tracking_uri == uri
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=r"--set registry.tracking_uri: .*credential replaced by '\*\*\*'"):
        load_config(None, ["registry.tracking_uri=http://***@mlflow.internal:5000"])
    with pytest.raises(ValueError, match="registry.tracking_uri"):
        PipelineConfig.model_validate(dumped)
    plain = PipelineConfig.model_validate({"registry": {"tracking_uri": "sqlite:////tmp/m.db"}})
    assert PipelineConfig.model_validate(plain.model_dump(mode="json")) == plain  # no credential: round trip


def test_secret_config_is_a_prefect_parameter_whose_stored_form_is_redacted():
    """The config stays a Prefect flow parameter: its schema builds (the UI's form; the secret
    field a plain string), validation keeps the real value for the run, and what Prefect sends
    to its API (and shows) is the redacted form."""
    from flows.prepare_corpus import prepare_corpus

    uri = "http://bf:PFSECRET@mlflow.internal:5000"
    schema = prepare_corpus.parameters.model_dump()
    registry = schema["definitions"]["RegistryConfig"]["properties"]["tracking_uri"]
    assert {"type": "string"} in registry["anyOf"]
    cfg = PipelineConfig.model_validate({"registry": {"tracking_uri": uri}})
    for given in (cfg, cfg.model_dump()):
        validated = prepare_corpus.validate_parameters({"config": given})
        assert validated["config"].registry.tracking_uri == uri
    sent = json.dumps(prepare_corpus.serialize_parameters({"config": cfg}))
    assert "PFSECRET" not in sent and "http://***@mlflow.internal:5000" in sent


def test_mlflow_gets_the_credentials_apart_from_the_uri(monkeypatch):
    """A tracking URI's user:password@ goes to MLflow as its basic-auth credentials, so no URL
    MLflow builds or prints carries it."""
    from mlflow.utils.credentials import get_default_host_creds

    from pipeline.register import registry_credentials, without_credentials

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "")
    with registry_credentials():
        assert without_credentials("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
        assert without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
        assert without_credentials("https://bf:p%40ss@mlflow.internal:5000/prefix") == \
            "https://mlflow.internal:5000/prefix"
        creds = get_default_host_creds("https://mlflow.internal:5000/prefix")
        assert (creds.username, creds.password) == ("bf", "p@ss")
    creds = get_default_host_creds("https://mlflow.internal:5000/prefix")  # the scope ended: taken back
    assert (creds.username, creds.password) == (None, None)  # "" as before: none


def test_registry_credentials_last_as_long_as_the_work_with_the_registry(monkeypatch):
    """register(), compare_versions() and promote() hand MLflow the tracking URI's user:password
    for their own requests only: afterwards (success or error) the credential variables are as
    they were, so a later client of this process on another host, or a child process, does not
    get them; an operator's own values come back."""
    import os

    from mlflow import MlflowClient
    from mlflow.utils.credentials import get_default_host_creds

    from pipeline import promotion, register

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "operator")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    cfg = PipelineConfig.model_validate({"registry": {"tracking_uri": "http://bf:REGPW@127.0.0.1:9"}})
    seen = []

    def probe(*args, **kwargs):  # the first request of each: what MLflow would authenticate with
        seen.append((os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")))
        raise ConnectionError("stop here")

    monkeypatch.setattr(MlflowClient, "get_model_version", probe)         # compare_versions
    monkeypatch.setattr(promotion, "champion", probe)                     # promote
    monkeypatch.setattr(register, "check_model_lineage", lambda *a, **k: {})
    monkeypatch.setattr(register, "registration_key", probe)              # register, once it has its client
    calls = (lambda: register.compare_versions(cfg, 2, 1), lambda: register.promote(cfg, 2),
             lambda: register.register("m", {}, {}, "0" * 64, cfg))
    for call in calls:
        with pytest.raises(ConnectionError):
            call()
        assert seen.pop() == ("bf", "REGPW")  # the work itself had them
        assert os.environ.get("MLFLOW_TRACKING_USERNAME") == "operator"
        assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
        other = get_default_host_creds("http://elsewhere.example:5000")
        assert (other.username, other.password) == ("operator", None)


def test_a_redacted_input_is_refused_before_any_work(tmp_path):
    from pipeline.corpus.prepare import prepare

    with pytest.raises(ValueError, match=r"corpus\.ingest\.inputs: https://h/a\.jsonl\?X-Amz-Signature=\*\*\*"):
        prepare(["https://h/a.jsonl?X-Amz-Signature=***"], str(tmp_path / "out"))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written (the run lock is let go)


def test_the_cli_never_prints_a_tracking_uri_with_its_credential(monkeypatch, capsys):
    import flows.multilingual_pipeline as mp
    from flows.cli import main

    def fake(cfg):  # what a run returns, had a registry handed back its URI whole
        return {"run_dir": "runs/x", "corpus": {"input": 1, "kept": 1, "unidentified": 0, "rejected": 0}, "eval": {},
                "registered": {"model_name": "m", "version": 1, "tracking_uri": "http://bf:CLISECRET@h:5000"}}

    monkeypatch.setattr(mp, "multilingual_pipeline", fake)
    assert main(["run", "--set", "registry.tracking_uri=http://bf:CLISECRET@h:5000"]) == 0
    out = capsys.readouterr()
    assert "CLISECRET" not in out.out + out.err and "registered m version 1 in http://***@h:5000" in out.out
    rc = main(["prepare", "https://127.0.0.1:9/none.jsonl?X-Amz-Signature=***", "--out", "o"])
    assert rc == 2 and "corpus.ingest.inputs" in capsys.readouterr().err


# ---------------------------------------------------------------- every stage, and language-ID training

STAGE_URL = "https://h.example/labelled/train.tsv?X-Amz-Signature=STAGESIG"


def _boom(*args, **kwargs):
    raise FileNotFoundError(f"input not found: {STAGE_URL}")


def _stages() -> list:
    from prefect import Task

    import tasks.corpus
    import tasks.evaluate
    import tasks.langid
    import tasks.register
    import tasks.train

    return [t for m in (tasks.corpus, tasks.evaluate, tasks.langid, tasks.register, tasks.train)
            for t in vars(m).values() if isinstance(t, Task)]


def test_every_stage_raises_its_errors_redacted(monkeypatch):
    """Whatever stage fails on a location with a credential (finetune.train_path, a presigned
    URL), the error it raises to Prefect names it redacted, of the same type (a retry still tells
    a permanent error): every task is made by tasks.stage_task."""
    import inspect

    import pipeline.corpus.prepare
    import pipeline.evaluation.evaluate
    import pipeline.register
    import pipeline.translation.labelled
    import tasks.langid
    from pipeline.training import finetune, pretrain, tokenizer

    for module, name in ((pipeline.corpus.prepare, "prepare"), (tokenizer, "train_tokenizer"),
                         (pretrain, "pretrain"), (finetune, "finetune"),
                         (pipeline.translation.labelled, "augment_labelled"),
                         (pipeline.evaluation.evaluate, "evaluate_finetuned"), (pipeline.register, "register"),
                         (tasks.langid, "train")):
        monkeypatch.setattr(module, name, _boom)
    stages = _stages()
    assert {t.name for t in stages} == {"prepare-corpus", "train-tokenizer", "pretrain", "finetune", "translate-train",
                                        "evaluate", "register-model", "train-langid"}
    for t in stages:
        assert getattr(t.fn, "redacts_errors", False), f"{t.name} is not made by tasks.stage_task"
        with pytest.raises(FileNotFoundError) as e:
            t.fn(*[PipelineConfig() if p == "cfg" else None for p in inspect.signature(t.fn).parameters])
        assert "STAGESIG" not in str(e.value) and "X-Amz-Signature=***" in str(e.value), t.name


def test_a_failed_stage_leaves_no_credential_in_its_prefect_state(prefect_api, monkeypatch):
    """Through Prefect: the failed task run's state message, as stored by the API, and the
    run-failure artifact name the location redacted (fine-tuning, whose task had no redaction)."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from pipeline.training import finetune
    from tasks import stage
    from tasks.train import finetune_task

    monkeypatch.setattr(finetune, "finetune", _boom)
    cfg = PipelineConfig.model_validate({"finetune": {"train_path": STAGE_URL}})

    @flow
    def probe() -> tuple[str, str]:
        state = stage(finetune_task, cfg)("pretrained", "model", cfg, return_state=True)
        return state.message, str(state.state_details.task_run_id)

    message, task_run_id = probe()
    with get_client(sync_client=True) as client:
        stored = client.read_task_run(task_run_id).state
    for text in (message, stored.message):
        assert "STAGESIG" not in text and "X-Amz-Signature=***" in text
    assert stored.is_failed()


def test_langid_training_keeps_its_inputs_credentials_out_of_report_and_parameters(http_files, tmp_path):
    """`LidTrainConfig.inputs` is a URI field: read with its credentials, written (report.json's
    config, the flow run's parameters, the returned report) without them."""
    from flows.train_langid import train_langid
    from pipeline.config import LidTrainConfig
    from pipeline.corpus.langid_train import train

    served, port = http_files
    lines = [f"eng\tthe small cat number {i} sees the big brown dog in the garden" for i in range(60)]
    lines += [f"fra\tle petit chat numéro {i} voit le grand chien brun dans le jardin" for i in range(60)]
    (served / "lid.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    url = f"http://lid:LIDPW@127.0.0.1:{port}/lid.tsv?X-Amz-Signature=LIDSIG"
    cfg = LidTrainConfig(inputs=[url], epoch=2, min_updates=0, min_per_label=20, cutoff=1000, bucket=10_000,
                         dim=8, reference_model=None)
    assert cfg.inputs == [url]  # the reader gets it whole
    sent = json.dumps(train_langid.serialize_parameters({"config": cfg, "out_dir": "o"}))
    assert "LIDPW" not in sent and "LIDSIG" not in sent and "http://***@127.0.0.1" in sent
    report = train(cfg, str(tmp_path / "out"))
    assert report["labels"] == 2
    written = (tmp_path / "out" / "report.json").read_text() + (tmp_path / "out" / "report.md").read_text()
    for text in (written, json.dumps(report)):
        assert "LIDPW" not in text and "LIDSIG" not in text
    assert report["config"]["inputs"] == [f"http://***@127.0.0.1:{port}/lid.tsv?X-Amz-Signature=***"]
    with pytest.raises(ValueError, match=r"inputs\[0\]: http://\*\*\*@"):  # a redacted copy read back
        train(LidTrainConfig.model_validate(report["config"]), str(tmp_path / "again"))


# ---------------------------------------------------------------- a whole run with planted secrets


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A plain MLflow server on loopback (SQLite store, artifacts served from a folder): yields
    (http URL, its folder). It ignores basic auth, so a URI with user:password@ works."""
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
                             "--port", str(port), "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def http_files(tmp_path_factory):
    """A loopback HTTP file server (it ignores basic auth) over a folder: yields (folder, port)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path_factory.mktemp("served")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, server.server_address[1]
    server.shutdown()
    server.server_close()


@flow(name="register-planted")
def register_planted(config: PipelineConfig, model_dir: str, eval_report: dict, manifest: dict,
                     manifest_sha256: str) -> dict:
    """Registration as the flows run it: the register-model task, with its options and artifacts."""
    from tasks import run_stage
    from tasks.register import register_task

    return run_stage(register_task, config, model_dir, eval_report, manifest, manifest_sha256, config)


def _presigned(s3, key: str, access_key: str, token: str) -> str:
    """A SigV4 presigned GET URL of `key` in the test bucket, signed with `access_key` (the moto
    server checks no signature) and carrying a session token."""
    import os

    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], aws_access_key_id=access_key,
                          aws_secret_access_key="not-checked", aws_session_token=token, region_name="us-east-1",
                          config=Config(signature_version="s3v4"))
    return client.generate_presigned_url("get_object", Params={"Bucket": "babelforge-test", "Key": key},
                                         ExpiresIn=3600)


def test_units_are_keyed_by_the_object_not_by_its_signature(s3, tmp_path):
    """The same object under two signatures is one unit (a resume with a URL signed again finds
    it); two objects are two units, whatever their signatures."""
    from pipeline.config import CorpusConfig
    from pipeline.corpus.ingest import Part
    from pipeline.corpus.prepare import unit_fingerprint

    news = [_presigned(s3, "in/news.jsonl", f"AKIAUNIT{i}", f"tok{i}") for i in range(2)]
    date = news[1].split("X-Amz-Date=", 1)[1].split("&", 1)[0]
    news[1] = news[1].replace(date, "20300101T000000Z")  # signed another day (moto checks no signature)
    forum = _presigned(s3, "in/forum.txt", "AKIAUNIT0", "tok0")
    assert news[0] != news[1] and redact_uri(news[0]) != redact_uri(news[1])

    def key(uri: str, inputs: list[str]) -> str:  # the run's config lists its inputs too
        return unit_fingerprint(Part(uri), CorpusConfig.model_validate({"ingest": {"inputs": inputs}}))

    keys = [key(news[0], [news[0], forum]), key(news[1], [news[1], forum]), key(forum, [news[0], forum])]
    assert keys[0] == keys[1] != keys[2]
    assert "AKIAUNIT" not in str(Part(news[0])) and "X-Amz-Signature=***" in str(Part(news[0]))
    s3.pipe("babelforge-test/in/news.jsonl", s3.cat("babelforge-test/in/news.jsonl") + b'{"text": "new"}\n')
    try:  # the same URL of a changed object is another unit
        assert key(news[0], [news[0], forum]) != keys[0]
    finally:
        s3.put(str(SAMPLE / "corpus" / "news.jsonl"), "babelforge-test/in/news.jsonl")


@pytest.mark.slow
def test_a_planted_secret_appears_in_no_output_of_a_run(s3, prefect_api, mlflow_server, http_files, tmp_path,
                                                        capfd, caplog, monkeypatch):
    """A secret planted in the tracking URI (user:password@ of an MLflow server) and in two
    input URIs (a SigV4 presigned URL with its access key, session token and signature; a
    user:password@ URL of an HTTP server): the corpus phase as a Prefect flow, registration as
    a Prefect task, and the CLI on the same inputs (signed again, another password) all work,
    and no file any of them wrote (the run folders, the MLflow server's store and artifacts,
    Prefect's database, results and home), no log line and nothing printed holds any of the
    secrets; rows, manifest and params hold the redacted URIs instead."""
    import os
    import uuid
    from pathlib import Path

    import pyarrow.parquet as pq
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL
    from transformers import BertForSequenceClassification

    from flows.cli import main
    from flows.prepare_corpus import prepare_corpus
    from pipeline.config import ModelConfig, TokenizerConfig
    from pipeline.training.model import bert_config
    from pipeline.training.tokenizer import train_tokenizer

    caplog.set_level(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's request log is the test's, not ours
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "")    # restored (removed) when the test ends
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "")
    secret = {name: f"PLANTED{name}{uuid.uuid4().hex[:12].upper()}" for name in
              ("TRACKING", "ACCESSKEY", "SESSIONTOKEN", "HTTPPASSWORD", "CLIPASSWORD")}
    mlflow_url, mlflow_root = mlflow_server
    tracking = mlflow_url.replace("http://", f"http://bf:{secret['TRACKING']}@")
    served, port = http_files
    lines = [t for t in (SAMPLE / "corpus" / "forum.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    write(served / "forum.jsonl", "".join(json.dumps({"id": f"f{i}", "text": t}) + "\n" for i, t in enumerate(lines))
          + '{"id": "broken", "text": oops\n')  # a malformed line: an ingest reject naming its source
    presigned = _presigned(s3, "in/news.jsonl", f"AKIA{secret['ACCESSKEY']}", secret["SESSIONTOKEN"])
    signature = presigned.rsplit("X-Amz-Signature=", 1)[1]
    userinfo = f"http://bf:{secret['HTTPPASSWORD']}@127.0.0.1:{port}/forum.jsonl"
    secrets = [*secret.values(), signature]

    cfg = PipelineConfig.model_validate({
        "run_name": "planted", "output_dir": str(tmp_path / "runs"),
        "corpus": {"ingest": {"inputs": [presigned, userinfo]}, "unit_cache": str(tmp_path / "units")},
        "registry": {"tracking_uri": tracking, "model_name": "planted-model", "auto_promote": False,
                     "require_lineage": False}})  # a hand-made model: no fine-tuning lineage

    # 1. the corpus phase as a Prefect flow (flow-run parameters, task artifacts, logs to the API)
    result = prepare_corpus(cfg)
    corpus = Path(result["corpus_dir"])
    report = result["report"]
    assert report["input"] == report["kept"] + report["unidentified"] + report["rejected"] and report["kept"] > 0
    manifest = json.loads((corpus / "manifest.json").read_text())
    shown = sorted([redact_uri(presigned), redact_uri(userinfo)])
    assert sorted(manifest["inputs"]) == shown and sorted(f["uri"] for f in manifest["input_files"]) == shown
    sources = {s for p in corpus.glob("shards/*/*.parquet") for s in pq.read_table(p, columns=["source"])["source"]
               .to_pylist()}
    assert sources == set(shown)  # both inputs were read, and every row names its input redacted
    ingest_rejects = pq.read_table(corpus / "rejects" / "ingest.parquet").to_pylist()
    served_shown = f"http://***@127.0.0.1:{port}/forum.jsonl"
    assert {r["source"] for r in ingest_rejects} <= set(shown)
    assert (f"{served_shown}:{len(lines) + 1}", served_shown, "malformed_json") in \
        {(r["id"], r["source"], r["reason"]) for r in ingest_rejects}
    assert all(r["detail"].startswith(r["id"]) for r in ingest_rejects)

    # 2. registration (a tiny classifier) as the Prefect task, in a flow, on the MLflow server
    tok = train_tokenizer(manifest, str(corpus), str(tmp_path / "runs" / "planted" / "tokenizer"),
                          TokenizerConfig(vocab_size=300))
    model_dir = tmp_path / "runs" / "planted" / "model"
    model = BertForSequenceClassification(bert_config(ModelConfig(hidden_size=16, intermediate_size=32), tok,
                                                      num_labels=2))
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    report_eval = {"classification": {"labels": ["a", "b"], "chance_accuracy": 0.5,
                                      "languages": {"fra_Latn": {"n": 4, "accuracy": 0.75, "macro_f1": 0.7}},
                                      "overall": {"n": 4, "micro_accuracy": 0.75, "macro_accuracy": 0.75,
                                                  "macro_f1": 0.7}}}

    registered = register_planted(cfg, str(model_dir), report_eval, manifest, result["manifest_sha256"])
    assert registered["tracking_uri"] == mlflow_url  # the credentials went to MLflow apart from the URI
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == ""  # ... for the registration only: taken back after it
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    params = client.get_run(registered["run_id"]).data.params
    assert "registry.tracking_uri" not in params and "registry.model_name" in params
    assert "X-Amz-Signature=***" in params["corpus.ingest.inputs"]
    with get_client(sync_client=True) as prefect:  # what the Prefect API stored (and its UI shows)
        runs = [r for r in prefect.read_flow_runs(limit=200)
                if (r.parameters.get("config") or {}).get("run_name") == "planted"]
    assert len(runs) == 2
    for run in runs:
        assert run.parameters["config"]["registry"]["tracking_uri"] == mlflow_url.replace("http://", "http://***@")
        assert sorted(run.parameters["config"]["corpus"]["ingest"]["inputs"]) == shown

    # 3. the CLI on the same objects, signed again and with another password: every unit is reused
    again = _presigned(s3, "in/news.jsonl", f"AKIA{secret['ACCESSKEY']}", secret["SESSIONTOKEN"] + "X")
    secrets.append(again.rsplit("X-Amz-Signature=", 1)[1])
    other = userinfo.replace(secret["HTTPPASSWORD"], secret["CLIPASSWORD"])
    cli_out = tmp_path / "cli-corpus"
    assert main(["prepare", again, other, "--out", str(cli_out), "--set", f"corpus.unit_cache={tmp_path / 'units'}",
                 "--set", f"corpus.ingest.inputs={json.dumps([again, other])}"]) == 0
    cli_report = json.loads((cli_out / "report.json").read_text())
    assert cli_report["units"]["reused"] == cli_report["units"]["total"] == 2
    assert main(["promote", "--version", str(registered["version"]), "--set", f"registry.tracking_uri={tracking}",
                 "--set", "registry.model_name=planted-model"]) == 0

    # 4. grep every output for every secret
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the log lines still queued reach the API's database
    db = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    roots = [tmp_path, mlflow_root, Path(PREFECT_HOME.value()), db.parent, Path(os.environ["BABELFORGE_CACHE"])]
    files = [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]
    assert db in files and any(p.suffix == ".parquet" for p in files) and any("artifacts" in p.parts for p in files)
    leaks = [(str(p), s) for p in files for s in secrets if s.encode() in p.read_bytes()]
    captured = capfd.readouterr()
    text = captured.out + captured.err + caplog.text
    leaks += [("output/log", s) for s in secrets if s in text]
    assert MASK in text  # the redacted URIs were logged
    assert not leaks, f"planted secrets found in: {leaks}"
