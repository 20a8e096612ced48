"""Against a Ray cluster: a head node started on loopback by the fixture (`ray start --head`)."""

import json
import os

from conftest import ROOT, SAMPLE


def test_prepare_flow_runs_units_on_the_configured_cluster(ray_head, prefect_api, tmp_path):
    """With `ray.address` set, the Prefect flow's corpus units run as Ray tasks on the cluster
    (other processes) and the shards are the same as in-process."""
    from flows.prepare_corpus import prepare_corpus
    from pipeline.config import load_yaml
    from pipeline.corpus import prepare

    address, _ = ray_head
    cfg = load_yaml(ROOT / "configs" / "demo.yaml")
    cfg.output_dir = str(tmp_path / "runs")
    cfg.corpus.ingest.inputs = [str(SAMPLE / "corpus" / "*")]
    cfg.ray.address = address
    result = prepare_corpus(cfg)
    units = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "demo" / "corpus" / "_units").glob("*/done.json")]
    assert len(units) == 4 and all(u["pid"] != os.getpid() for u in units)

    local = cfg.corpus.model_copy(deep=True)
    local.engine = "local"
    prepare([str(SAMPLE / "corpus" / "*")], str(tmp_path / "local"), local)
    ref = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert [(s["path"], s["sha256"]) for s in result["manifest"]["shards"]] == \
        [(s["path"], s["sha256"]) for s in ref["shards"]]
