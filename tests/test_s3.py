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

