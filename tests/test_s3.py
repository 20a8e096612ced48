"""The corpus phase reads from and writes to s3:// (a moto S3 server on loopback)."""

import json
import socket

import pytest
from conftest import ROOT, SAMPLE

from pipeline.config import load_yaml
from pipeline.corpus.prepare import prepare


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    mp = pytest.MonkeyPatch()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        mp.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("babelforge-test")
    for f in sorted((SAMPLE / "corpus").iterdir()):
        fs.put(str(f), f"babelforge-test/in/{f.name}")
    yield fs
    mp.undo()
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def test_prepare_s3_to_s3_matches_local(s3, tmp_path):
    cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    remote = prepare(["s3://babelforge-test/in/*"], "s3://babelforge-test/out", cfg)
    local = prepare([str(SAMPLE / "corpus" / "*")], str(tmp_path), cfg)
    for k in ("input", "kept", "rejected", "rejected_by_reason"):
        assert remote[k] == local[k]
    manifest = json.loads(s3.cat("babelforge-test/out/manifest.json"))
    local_manifest = json.loads((tmp_path / "manifest.json").read_text())
    # same shards and rows (checksums differ only because `source` holds the input URI)
    assert [(s["path"], s["rows"]) for s in manifest["shards"]] == \
        [(s["path"], s["rows"]) for s in local_manifest["shards"]]
    for s in manifest["shards"]:
        assert s3.exists(f"babelforge-test/out/{s['path']}")
    assert not [p for p in s3.find("babelforge-test/out") if ".tmp-" in p]   # no temporary leftovers
    assert s3.exists("babelforge-test/out/rejects/ingest.parquet")


def test_training_checkpoints_go_to_s3(s3, tmp_path):
    """`ray.storage_path: s3://...`: Ray Train writes its checkpoints (safetensors weights,
    optimizer state) to the bucket, and the final model is exported from there. The model is
    `torch.compile`d (`pretrain.compile`); the checkpoint holds the plain HF weights."""
    import ray

    from pipeline.config import CorpusConfig, PipelineConfig, TokenizerConfig
    from pipeline.training.pretrain import pretrain
    from pipeline.training.tokenizer import train_tokenizer

    ray.shutdown()  # the workers must start with this module's S3 endpoint in their environment
    corpus = tmp_path / "corpus"
    prepare([str(SAMPLE / "corpus" / "*")], str(corpus), CorpusConfig(engine="local"))
    manifest = json.loads((corpus / "manifest.json").read_text())
    train_tokenizer(manifest, str(corpus), str(tmp_path / "tok"), TokenizerConfig(vocab_size=1000), "causal_lm")
    cfg = PipelineConfig.model_validate({
        "run_name": "s3ckpt", "output_dir": str(tmp_path / "runs"),
        "model": {"objective": "causal_lm", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                  "intermediate_size": 64, "max_length": 32},
        "pretrain": {"max_steps": 4, "batch_size": 4, "checkpoint_every": 2, "log_every": 2, "compile": True},
        "ray": {"num_workers": 2, "max_failures": 0, "storage_path": "s3://babelforge-test/ray"}})
    try:
        result = pretrain(str(corpus), manifest, str(tmp_path / "tok"), str(tmp_path / "model"), cfg)
    finally:
        ray.shutdown()
    assert result["step"] == 4 and (tmp_path / "model" / "model.safetensors").exists()
    stored = s3.find("babelforge-test/ray/s3ckpt-pretrain")
    assert any(p.endswith("/model.safetensors") for p in stored)
    assert any(p.endswith("/trainer_state.pt") for p in stored)


def test_registration_result_persisted_to_s3_and_reused_by_a_retried_flow(s3, tmp_path, prefect_api):
    """`orchestration.result_storage: s3://...`: the cached stage (register-model) persists its
    result in the bucket, and a second flow with the same inputs (a retried flow) gets it back
    without running the stage again."""
    from prefect import flow, task

    from pipeline.config import PipelineConfig
    from tasks import stage

    calls = tmp_path / "calls"

    @task(name="register-model")
    def register(model_dir: str, eval_report: dict, manifest: dict, manifest_sha256: str, cfg) -> dict:
        calls.open("a").write("x")
        return {"version": len(calls.read_text()), "model_dir": model_dir}

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    cfg = PipelineConfig.model_validate({"run_name": "s3-results", "output_dir": str(tmp_path / "runs"),
                                         "orchestration": {"result_storage": "s3://babelforge-test/results/"}})

    @flow
    def registration() -> dict:
        return stage(register, cfg)(str(model), {"macro": 0.5}, {"languages": {}}, "ab" * 32, cfg)

    first, second = registration(), registration()
    assert first == second == {"version": 1, "model_dir": str(model)}
    assert calls.read_text() == "x"  # the stage ran once
    stored = s3.find("babelforge-test/results")
    assert len(stored) == 1 and stored[0].split("/")[-1].startswith("babelforge-register-")
    # other weights: another version
    (model / "model.safetensors").write_bytes(b"other weights")
    assert registration()["version"] == 2
