"""Everything on s3:// (a moto S3 server on loopback): the corpus phase, results. The whole DAG
on s3:// (one node, and a Ray Job on two nodes): tests/test_ray_cluster.py."""

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
