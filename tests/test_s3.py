"""Everything on s3:// (a moto S3 server on loopback): the corpus phase, the whole DAG, results."""

import json

from conftest import ROOT, SAMPLE

from pipeline.config import load_yaml
from pipeline.corpus.prepare import prepare


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


def test_the_whole_dag_runs_with_every_output_on_s3(s3, tmp_path, prefect_api, monkeypatch):
    """`output_dir: s3://...` with inputs on s3:// too: every stage reads and writes the bucket,
    the tokenizer and the exported models included, and nothing lands on local disk (Ray Train's
    checkpoints go to <run>/ray in the bucket). The model is `torch.compile`d
    (`pretrain.compile`): the checkpoint holds the plain HF weights. The registered model is
    the one in the bucket (same sha256)."""
    import ray
    from mlflow import MlflowClient

    from flows.multilingual_pipeline import multilingual_pipeline
    from pipeline.storage import sha256_dir

    ray.shutdown()  # the workers must start with this module's S3 endpoint in their environment
    monkeypatch.chdir(tmp_path)
    cfg = load_yaml(ROOT / "configs" / "demo.yaml").model_copy(deep=True)
    cfg.run_name = "s3run"
    cfg.output_dir = "s3://babelforge-test/runs"
    cfg.corpus.ingest.inputs = ["s3://babelforge-test/in/*"]
    cfg.finetune.train_path = str(SAMPLE / "labelled" / "train.tsv")
    cfg.finetune.test_path = str(SAMPLE / "labelled" / "test.tsv")
    cfg.pretrain.max_steps = 4
    cfg.pretrain.checkpoint_every = 2
    cfg.pretrain.compile = True
    cfg.finetune.epochs = 1
    cfg.tokenizer.vocab_size = 1000
    cfg.registry.tracking_uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    try:
        result = multilingual_pipeline(cfg)
    finally:
        ray.shutdown()
    run = "babelforge-test/runs/s3run"
    stored = set(s3.find(run))
    for f in ("corpus/manifest.json", "tokenizer/tokenizer.json", "tokenizer/babelforge_tokenizer.json",
              "model-pretrained/model.safetensors", "model-pretrained/tokenizer.json", "model/model.safetensors",
              "model/README.md", "eval/report.json", "eval/report.md"):
        assert f"{run}/{f}" in stored, f
    ckpts = [p for p in stored if p.startswith(f"{run}/ray/s3run-pretrain/checkpoint_")]
    assert any(p.endswith("/model.safetensors") for p in ckpts) and any(p.endswith("/trainer_state.pt") for p in ckpts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns"]  # nothing of the run on local disk
    assert result["train"]["pretrain"]["step"] == 4
    reg = result["registered"]
    client = MlflowClient(tracking_uri=reg["tracking_uri"], registry_uri=reg["tracking_uri"])
    mv = client.get_model_version(reg["model_name"], str(reg["version"]))
    assert mv.tags["pretrained_sha256"] == sha256_dir(f"s3://{run}/model-pretrained")
    assert mv.tags["run_name"] == "s3run"


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
