import json

import pytest
import yaml

from conftest import ROOT, SAMPLE
from pipeline.config import ModelConfig, PipelineConfig, TokenizerConfig, load_yaml
from pipeline.corpus import prepare
from pipeline.model import bert_config
from pipeline.register import register
from pipeline.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def model_and_manifest(tmp_path_factory):
    from transformers import BertForSequenceClassification

    root = tmp_path_factory.mktemp("reg")
    prepare([str(SAMPLE / "corpus" / "news.jsonl")], str(root / "corpus"), load_yaml(ROOT / "configs" / "demo.yaml").corpus)
    manifest = json.loads((root / "corpus" / "manifest.json").read_text())
    tok = train_tokenizer(manifest, str(root / "corpus"), str(root / "tok"), TokenizerConfig(vocab_size=300))
    model = BertForSequenceClassification(bert_config(ModelConfig(hidden_size=16, intermediate_size=32), tok, num_labels=2))
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return root, manifest


EVAL = {"classification": {"labels": ["a", "b"], "chance_accuracy": 0.5,
                           "languages": {"fr": {"n": 4, "accuracy": 0.75, "macro_f1": 0.7},
                                         "de": {"n": 4, "accuracy": 0.5, "macro_f1": 0.4}},
                           "overall": {"n": 8, "micro_accuracy": 0.625, "macro_accuracy": 0.625, "macro_f1": 0.55}},
        "lm": {"languages": {"fr": {"loss": 5.0}}}}


def test_register_creates_versions_with_metrics_card_and_checksum(model_and_manifest, tmp_path):
    from mlflow import MlflowClient

    root, manifest = model_and_manifest
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig.model_validate({"run_name": "t1", "registry": {"tracking_uri": uri, "model_name": "m"}})
    first = register(str(root / "model"), EVAL, manifest, "abc123", cfg)
    second = register(str(root / "model"), EVAL, manifest, "abc123", cfg)
    assert (first["version"], second["version"]) == (1, 2)

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version("m", "1")
    assert mv.tags["manifest_sha256"] == "abc123" and mv.run_id == first["run_id"]
    run = client.get_run(first["run_id"])
    assert run.data.metrics["accuracy.fr"] == 0.75 and run.data.metrics["macro_f1.de"] == 0.4
    assert run.data.params["pretrain.max_steps"] == str(cfg.pretrain.max_steps)
    files = {f.path for f in client.list_artifacts(first["run_id"], "model")}
    assert "model/model.safetensors" in files and "model/README.md" in files
    assert (tmp_path / "artifacts").is_dir()   # artifacts beside the SQLite store

    card = (root / "model" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert set(meta["language"]) >= {"fr", "de"}
    configs = {r["dataset"]["config"] for r in meta["model-index"][0]["results"]}
    assert configs == {"fr", "de"}
    assert "abc123" in card and "| fr |" in card
