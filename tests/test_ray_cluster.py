"""Against a Ray cluster of two nodes started on loopback by the fixture (`ray start --head`,
`ray start --address`), with an S3 server on loopback."""

import json
import os

from conftest import ROOT, SAMPLE


def test_prepare_flow_runs_units_on_the_configured_cluster(ray_head, s3, prefect_api, tmp_path):
    """With `ray.address` set, the Prefect flow's corpus units run as Ray tasks on the two
    nodes of the cluster (other processes), reading the inputs from s3:// and writing the
    corpus to s3:// (no shared local disk), the dedup stages as Ray tasks over partitions
    spilled to s3://; the shards are byte for byte those of one process (one partition)."""
    from flows.prepare_corpus import prepare_corpus
    from pipeline.config import load_yaml
    from pipeline.corpus.prepare import prepare

    address, _ = ray_head
    cfg = load_yaml(ROOT / "configs" / "demo.yaml")
    cfg.output_dir = "s3://babelforge-test/cluster"
    cfg.corpus.ingest.inputs = ["s3://babelforge-test/in/*"]
    cfg.ray.address = address
    cfg.corpus.dedup.partitions = 3  # the dedup stages as Ray tasks over 3 partitions spilled to s3://
    result = prepare_corpus(cfg)
    units = [json.loads(s3.cat(p)) for p in s3.glob("babelforge-test/cluster/demo/corpus/_units/*/done.json")]
    assert len(units) == 4 and all(u["pid"] != os.getpid() for u in units)
    assert len({u["node"] for u in units}) == 2          # both nodes did work
    report = json.loads(s3.cat("babelforge-test/cluster/demo/corpus/report.json"))
    assert report["dedup"]["partitions"] == 3 and report["dedup"]["spill_bytes"] > 0
    assert not s3.exists("babelforge-test/cluster/demo/corpus/_dedup")  # the spill is removed

    local = cfg.corpus.model_copy(deep=True)   # the same inputs, in this one process
    local.engine = "local"
    prepare(["s3://babelforge-test/in/*"], str(tmp_path / "local"), local)
    ref = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert [(s["path"], s["sha256"]) for s in result["manifest"]["shards"]] == \
        [(s["path"], s["sha256"]) for s in ref["shards"]]


def test_pretrain_runs_as_a_ray_job(ray_head, tmp_path):
    """`ray job submit --working-dir . -- babelforge pretrain --config F` against the head:
    the job trains on the cluster and writes the model and the held-out report."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from pipeline.config import CorpusConfig
    from pipeline.corpus.prepare import prepare

    _, dashboard = ray_head
    runs = tmp_path / "runs"
    prepare([str(SAMPLE / "corpus" / "*")], str(runs / "job" / "corpus"), CorpusConfig(engine="local"))
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({
        "tokenizer": {"vocab_size": 1000},
        "model": {"objective": "causal_lm", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                  "intermediate_size": 64, "max_length": 32},
        "pretrain": {"max_steps": 4, "batch_size": 4, "checkpoint_every": 2, "log_every": 2},
        "ray": {"num_workers": 2, "max_failures": 0}}))
    ray_bin = str(Path(sys.executable).with_name("ray"))
    import time

    from conftest import _wait_for_job_server

    _wait_for_job_server(ray_bin, dashboard, os.environ.copy())
    for attempt in range(6):  # the head's job agent may come up after its dashboard (busy CI machine)
        proc = subprocess.run(
            [ray_bin, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--",
             "babelforge", "pretrain", "--config", str(cfg), "--output-dir", str(runs), "--run-name", "job"],
            capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in proc.stdout + proc.stderr:
            break
        time.sleep(10)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout + proc.stderr
    assert (runs / "job" / "model-pretrained" / "model.safetensors").exists()
    assert "(step 4," in proc.stdout + proc.stderr
    report = json.loads((runs / "job" / "eval" / "report.json").read_text())  # the flow's file and schema
    assert len(report["lm"]["languages"]) == 12 and (runs / "job" / "eval" / "report.md").exists()
