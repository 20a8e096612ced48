"""The whole DAG as a Prefect flow (ephemeral API) on the sample corpus, with real Ray Train
fits (2 CPU workers, gloo), evaluation and MLflow registration; then a second run of the same
flow on a changed input, as the next night's scheduled run. The slowest test (~4 min)."""

import json

import pytest
from conftest import ROOT, SAMPLE, SAMPLE_LANGS, label

LABELS = sorted(label(lang) for lang in SAMPLE_LANGS)   # fra_Latn, ...

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_local():
    import ray

    yield
    ray.shutdown()


def test_multilingual_pipeline_end_to_end(tmp_path, ray_local, prefect_api, monkeypatch):
    from flows.multilingual_pipeline import multilingual_pipeline
    from pipeline.config import load_yaml

    monkeypatch.chdir(tmp_path)
    cfg = load_yaml(ROOT / "configs" / "demo.yaml").model_copy(deep=True)
    cfg.run_name = "e2e-{flow_run}"  # a run of its own, named by the flow run
    cfg.output_dir = str(tmp_path / "runs")
    import shutil

    inputs = tmp_path / "inputs"
    shutil.copytree(SAMPLE / "corpus", inputs)
    cfg.corpus.ingest.inputs = [str(inputs / "*")]
    cfg.corpus.unit_cache = str(tmp_path / "unit-cache")  # shared by the runs, as in the nightly deployment
    cfg.finetune.train_path = str(SAMPLE / "labelled" / "train.tsv")
    cfg.finetune.test_path = str(SAMPLE / "labelled" / "test.tsv")
    cfg.pretrain.max_steps = 12
    cfg.pretrain.checkpoint_every = 6
    cfg.finetune.epochs = 2
    cfg.finetune.checkpoint_every_epochs = 1
    cfg.tokenizer.vocab_size = 1500

    result = multilingual_pipeline(cfg)

    from pathlib import Path

    run = Path(result["run_dir"])
    assert run.parent == tmp_path / "runs" and run.name.startswith("e2e-") and len(run.name) == len("e2e-") + 8
    report = json.loads((run / "corpus" / "report.json").read_text())
    assert report["input"] == report["kept"] + report["unidentified"] + report["rejected"]
    assert (run / "corpus" / "manifest.json").exists()
    # checkpoints through ray.train.report, pruned to num_to_keep=2
    ckpts = sorted(p for p in (run / "ray" / f"{run.name}-pretrain").glob("checkpoint_*") if p.is_dir())
    assert len(ckpts) == 2 and (ckpts[-1] / "model.safetensors").exists()
    meta = json.loads((ckpts[-1] / "trainer_meta.json").read_text())
    assert meta["step"] == 12
    # trained on this run's corpus and tokenizer (what a rerun under this name is checked against)
    assert meta["lineage"]["manifest_sha256"] == result["corpus"]["manifest_sha256"]
    assert (run / "model-pretrained" / "model.safetensors").exists()
    assert not (run / "model" / "trainer_state.pt").exists()
    assert result["train"]["pretrain"]["step"] == 12 and result["train"]["finetune"]["epoch"] == 2

    ev = json.loads((run / "eval" / "report.json").read_text())
    assert sorted(ev["classification"]["languages"]) == LABELS
    assert sorted(ev["lm"]["languages"]) == LABELS
    md = (run / "eval" / "report.md").read_text()
    assert all(f"| {lang} |" in md for lang in LABELS)

    reg = result["registered"]
    assert reg["version"] == 1 and reg["tracking_uri"].startswith("sqlite:///")
    assert reg["promoted"] and reg["promotion"]["champion_version"] is None  # the first version: champion
    assert (tmp_path / "mlruns" / "mlflow.db").exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=reg["tracking_uri"], registry_uri=reg["tracking_uri"])
    mv = client.get_model_version(reg["model_name"], "1")
    assert mv.tags["manifest_sha256"] == result["corpus"]["manifest_sha256"] and mv.tags["run_name"] == run.name
    # lineage: code, config, flow run, and the pretrained model (with the corpus it was trained on)
    assert len(mv.tags["git_commit"]) in (7, 40) or mv.tags["git_commit"] == "unknown"
    assert len(mv.tags["config_sha256"]) == 64
    assert mv.tags["flow_run_id"].replace("-", "")[:8] == run.name.removeprefix("e2e-")  # the DAG's own flow run
    assert mv.tags["pretrained.manifest_sha256"] == result["corpus"]["manifest_sha256"]
    from pipeline.storage import sha256_dir

    assert mv.tags["pretrained_sha256"] == sha256_dir(str(run / "model-pretrained"))
    assert {a.path for a in client.list_artifacts(reg["run_id"])} >= {"model", "pretrained", "eval", "corpus"}
    metrics = client.get_run(reg["run_id"]).data.metrics
    assert all(f"accuracy.{lang}" in metrics for lang in LABELS)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        # every filter passed explicitly (with FastAPI >= 0.151, Prefect 3.8's server rejected nulls)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(), flow_run_filter=FlowRunFilter(),
                                          task_run_filter=TaskRunFilter(), sort=ArtifactSort.KEY_ASC,
                                          limit=200, offset=0)
        keys = {a.key for a in artifacts}
    assert {"corpus-languages", "corpus-chart", "corpus-summary", "eval-languages", "registered-model", "pretrain-languages",
            "tokenizer-fertility", "promotion-languages"} <= keys

    # The next night: one input changed. A run of its own (new flow run, new run id) that redoes
    # only the changed input, trains on its own corpus and registers version 2 with that corpus's
    # checksum; the gate compares it with the champion (version 1).
    with open(inputs / "forum.txt", "a", encoding="utf-8") as f:
        f.write("The night train to the coast was late again, so we walked along the harbour until dawn.\n"
                "Le boulanger du village ouvre sa boutique à cinq heures et vend tout son pain avant midi.\n"
                "El museo de la ciudad abrió una sala nueva dedicada a los mapas antiguos del puerto.\n")
    second = multilingual_pipeline(cfg)
    run2 = Path(second["run_dir"])
    assert run2 != run and run2.name.startswith("e2e-")
    assert second["corpus"]["units"] == {"total": 4, "reused": 3, "processed": 1, "cache": cfg.corpus.unit_cache}
    assert result["corpus"]["units"]["processed"] == 4
    sha2 = second["corpus"]["manifest_sha256"]
    assert sha2 != result["corpus"]["manifest_sha256"]
    ckpt2 = sorted(p for p in (run2 / "ray" / f"{run2.name}-pretrain").glob("checkpoint_*") if p.is_dir())[-1]
    assert json.loads((ckpt2 / "trainer_meta.json").read_text())["lineage"]["manifest_sha256"] == sha2
    reg2 = second["registered"]
    assert reg2["version"] == 2 and reg2["promotion"]["champion_version"] in (1, "1")
    client = MlflowClient(tracking_uri=reg2["tracking_uri"], registry_uri=reg2["tracking_uri"])
    mv2 = client.get_model_version(reg2["model_name"], "2")
    assert mv2.tags["manifest_sha256"] == sha2 and mv2.tags["pretrained.manifest_sha256"] == sha2
    assert mv2.tags["run_name"] == run2.name and mv2.tags["flow_run_id"] != mv.tags["flow_run_id"]
    champion = client.get_model_version_by_alias(reg2["model_name"], cfg.registry.champion_alias)
    assert str(champion.version) == ("2" if reg2["promoted"] else "1")
