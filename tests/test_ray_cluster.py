"""Against a Ray cluster of two nodes started on loopback by the fixture (`ray start --head`,
`ray start --address`), with an S3 server on loopback."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import ROOT, SAMPLE, _wait_for_job_server


def _dag_config(output_dir: str, tracking_db: Path):
    """The demo config, shortened, with every input on s3:// and every output under
    `output_dir`; the dedup spread over 3 partitions (Ray tasks spilling to s3:// on a cluster)."""
    from pipeline.config import load_yaml

    cfg = load_yaml(ROOT / "configs" / "demo.yaml").model_copy(deep=True)
    cfg.run_name = "dag"
    cfg.output_dir = output_dir
    cfg.corpus.ingest.inputs = ["s3://babelforge-test/in/*"]
    cfg.corpus.dedup.partitions = 3
    cfg.finetune.train_path = "s3://babelforge-test/labelled/train.tsv"
    cfg.finetune.test_path = "s3://babelforge-test/labelled/test.tsv"
    cfg.tokenizer.vocab_size = 1000
    cfg.pretrain.max_steps = 4
    cfg.pretrain.checkpoint_every = 2
    cfg.pretrain.compile = True
    cfg.finetune.epochs = 1
    cfg.registry.tracking_uri = f"sqlite:///{tracking_db}"
    return cfg


def _sha(s3, path: str) -> str:
    return hashlib.sha256(s3.cat(path)).hexdigest()


def _outputs(s3, run: str) -> dict:
    """What two runs of the same config must agree on, byte for byte or number for number."""
    manifest = json.loads(s3.cat(f"{run}/corpus/manifest.json"))
    report = json.loads(s3.cat(f"{run}/eval/report.json"))
    return {"shards": [(s["path"], s["rows"], s["sha256"]) for s in manifest["shards"]],
            "rejects": json.loads(s3.cat(f"{run}/corpus/report.json"))["rejected_by_reason"],
            "tokenizer": _sha(s3, f"{run}/tokenizer/tokenizer.json"),
            "pretrained": _sha(s3, f"{run}/model-pretrained/model.safetensors"),
            "finetuned": _sha(s3, f"{run}/model/model.safetensors"),
            "eval": {k: v for k, v in report.items() if k != "charts"}}  # charts: paths in the run


def test_the_whole_dag_runs_as_a_ray_job_on_s3_as_on_one_node(ray_head, s3, prefect_api, tmp_path, monkeypatch):
    """The whole DAG twice on the same config, every input and output on s3:// (the tokenizer,
    the exported models and Ray Train's checkpoints included):
    - on one node, in this process (a local Ray): nothing of the run lands on local disk, the
      model is `torch.compile`d and its checkpoint holds the plain HF weights, the registered
      model is the one in the bucket (same sha256);
    - as a Ray Job (`ray job submit --working-dir . -- babelforge run --config F`) on the
      two-node cluster: the corpus units run as Ray tasks on both nodes, the dedup as Ray tasks
      over 3 partitions spilled to s3:// (removed afterwards), the training workers across
      the nodes (DDP over the network, no shared disk);
    and the two runs agree: the same shards, tokenizer, pretrained and fine-tuned weights (byte
    for byte) and the same per-language evaluation."""
    import ray
    from mlflow import MlflowClient
    from prefect.settings import PREFECT_API_URL

    from flows.multilingual_pipeline import multilingual_pipeline
    from pipeline.storage import model_sha256

    for name in ("train.tsv", "test.tsv"):
        s3.put(str(SAMPLE / "labelled" / name), f"babelforge-test/labelled/{name}")

    # 1. one node: this process, a local Ray of its own beside the cluster
    ray.shutdown()
    local_dir = tmp_path / "cwd"
    local_dir.mkdir()
    monkeypatch.chdir(local_dir)
    cfg = _dag_config("s3://babelforge-test/one-node", tmp_path / "mlruns-one" / "mlflow.db")
    try:
        result = multilingual_pipeline(cfg)
    finally:
        ray.shutdown()
    one = "babelforge-test/one-node/dag"
    stored = set(s3.find(one))
    ckpts = [p for p in stored if p.startswith(f"{one}/ray/dag-pretrain/checkpoint_")]
    assert any(p.endswith("/model.safetensors") for p in ckpts) and any(p.endswith("/trainer_state.pt") for p in ckpts)
    assert f"{one}/model/README.md" in stored and f"{one}/eval/report.md" in stored
    assert list(local_dir.iterdir()) == []  # nothing of the run on local disk
    assert result["train"]["pretrain"]["step"] == 4
    reg = result["registered"]
    client = MlflowClient(tracking_uri=reg["tracking_uri"], registry_uri=reg["tracking_uri"])
    mv = client.get_model_version(reg["model_name"], str(reg["version"]))
    assert mv.tags["pretrained_sha256"] == model_sha256(f"s3://{one}/model-pretrained")
    assert mv.tags["run_name"] == "dag"

    # 2. the same config as a Ray Job on the two-node cluster
    _, dashboard = ray_head
    job_cfg = _dag_config("s3://babelforge-test/cluster", tmp_path / "mlruns-job" / "mlflow.db")
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(yaml.safe_dump(job_cfg.model_dump(mode="json"), allow_unicode=True))
    env = {"PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(tmp_path / "prefect-job")}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    _wait_for_job_server(ray_bin, dashboard, os.environ.copy())
    job_id = f"dag-{os.getpid()}-{time.monotonic_ns()}"
    for _ in range(6):  # the head's job agent may come up after its dashboard (busy CI machine)
        proc = subprocess.run(
            [ray_bin, "job", "submit", "--address", dashboard, "--no-wait", "--submission-id", job_id,
             "--working-dir", str(ROOT), "--runtime-env-json", json.dumps({"env_vars": env}), "--",
             "babelforge", "run", "--config", str(cfg_file)],
            capture_output=True, text=True, timeout=300)
        if "No available agent to submit job" not in proc.stdout + proc.stderr:
            break
        time.sleep(10)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    # poll the job's status rather than follow its log stream (a CLI tailing logs for minutes
    # on a busy machine is one more thing that can break)
    deadline, status = time.monotonic() + 900, ""
    while time.monotonic() < deadline:
        st = subprocess.run([ray_bin, "job", "status", "--address", dashboard, job_id],
                            capture_output=True, text=True, timeout=120)
        status = st.stdout + st.stderr
        if any(f"' {s}" in status for s in ("succeeded", "failed", "was stopped")):  # "Job 'id' succeeded"
            break
        time.sleep(5)
    logs = subprocess.run([ray_bin, "job", "logs", "--address", dashboard, job_id],
                          capture_output=True, text=True, timeout=120)
    log = logs.stdout + logs.stderr
    assert f"Job '{job_id}' succeeded" in status, status[-1000:] + log[-4000:]
    assert "registered babelforge-demo-classifier version 1" in log, log[-4000:]
    job = "babelforge-test/cluster/dag"
    units = [json.loads(s3.cat(p)) for p in s3.glob(f"{job}/corpus/_units/*/done.json")]
    assert len(units) == 4 and len({u["node"] for u in units}) == 2  # both nodes did corpus work
    corpus_report = json.loads(s3.cat(f"{job}/corpus/report.json"))
    assert corpus_report["dedup"]["partitions"] == 3 and corpus_report["dedup"]["spill_bytes"] > 0
    assert not s3.exists(f"{job}/corpus/_dedup")  # the spill is removed
    assert not (tmp_path / "cluster").exists()

    # 3. the same outputs
    a, b = _outputs(s3, one), _outputs(s3, job)
    for key in a:
        assert a[key] == b[key], key
    assert len(a["eval"]["lm"]["languages"]) == 12
