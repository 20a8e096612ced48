import json

import pytest
import yaml
from conftest import ROOT, SAMPLE

from pipeline.config import ModelConfig, PipelineConfig, TokenizerConfig, load_yaml
from pipeline.corpus.prepare import prepare
from pipeline.register import register
from pipeline.training.model import bert_config
from pipeline.training.tokenizer import train_tokenizer


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
    cfg = PipelineConfig.model_validate({"run_name": "t1", "registry": {"tracking_uri": uri, "model_name": "m", "require_lineage": False}})
    first = register(str(root / "model"), EVAL, manifest, "abc123", cfg)
    again = register(str(root / "model"), EVAL, manifest, "abc123", cfg)  # the same model and evaluation
    other = {**EVAL, "lm": {"languages": {"fr": {"loss": 4.0}}}}
    second = register(str(root / "model"), other, manifest, "abc123", cfg)  # another evaluation: a new version
    assert (first["version"], again["version"], second["version"]) == (1, 1, 2)
    assert again["run_id"] == first["run_id"]

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


NER_EVAL = {"ner": {"labels": ["B-PER", "I-PER", "O"],
                    "languages": {"swh_Latn": {"n": 10, "precision": 0.6, "recall": 0.5, "f1": 0.5455, "entities": 12},
                                  "hau_Latn": {"n": 8, "precision": 0.4, "recall": 0.5, "f1": 0.4444, "entities": 9}},
                    "overall": {"n": 18, "macro_f1": 0.495, "micro_precision": 0.5, "micro_recall": 0.5,
                                "micro_f1": 0.5, "micro_entities": 21}},
            "lm": {"languages": {"swh_Latn": {"docs": 3, "loss": 5.0, "loss_init": 6.0}}}}


def test_ner_model_is_registered_with_its_entity_f1(model_and_manifest, tmp_path):
    """A token-classification run: the card's tables and model-index carry entity F1 per
    language, MLflow gets entity_f1.<lang> metrics and the languages tag, and the version
    description names the task and its score (all three were empty or None for NER before)."""
    from mlflow import MlflowClient

    root, manifest = model_and_manifest
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig.model_validate({"run_name": "ner", "registry": {"tracking_uri": uri, "model_name": "n", "require_lineage": False},
                                         "finetune": {"task": "token_classification", "train_path": "x/*/train.txt"}})
    info = register(str(root / "model"), NER_EVAL, manifest, "def456", cfg)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(info["run_id"])
    assert run.data.metrics["entity_f1.swh_Latn"] == 0.5455 and run.data.tags["languages"] == "hau_Latn,swh_Latn"
    assert "entity F1" in client.get_model_version("n", "1").description
    card = (root / "model" / "README.md").read_text()
    assert "| language | test sentences | entities | entity precision | entity recall | entity F1 |" in card
    assert "| swh_Latn | 10 | 12 | 0.6 | 0.5 | 0.5455 |" in card
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["pipeline_tag"] == "token-classification"
    f1 = {r["dataset"]["config"]: m["value"] for r in meta["model-index"][0]["results"]
          for m in r["metrics"] if m.get("name") == "entity F1"}
    assert f1 == {"hau_Latn": 0.4444, "swh_Latn": 0.5455}


def test_every_configurable_task_has_one_class():
    import typing

    from pipeline.config import FinetuneConfig
    from pipeline.training.tasks import TASKS

    assert set(typing.get_args(FinetuneConfig.model_fields["task"].annotation)) == set(TASKS)
    assert len({t.key for t in TASKS.values()}) == len(TASKS)


RETRIEVAL = {"pooling": "mean", "layer": -1, "macro_accuracy": 0.6, "macro_margin_accuracy": 0.65, "margin_k": 4,
             "pairs": {"eng_Latn-fra_Latn": {"pairs": 20, "eng_Latn->fra_Latn": 0.7, "fra_Latn->eng_Latn": 0.5,
                                             "accuracy": 0.6, "margin_accuracy": 0.65, "chance": 0.05}}}


def test_charts_and_retrieval_reach_report_card_and_mlflow(model_and_manifest, tmp_path):
    """eval/report.md shows a PNG per table; the model card carries tables and pictures; MLflow
    gets the retrieval accuracy per language pair and the pictures with the model."""
    import shutil

    from mlflow import MlflowClient

    from pipeline.evaluation.evaluate import write_report

    root, manifest = model_and_manifest
    # a second collection of pairs (another folder) is a section of its own
    # (and a report written before the margin figures existed still renders: no margin column)
    udhr = {"pooling": "mean", "layer": -1, "collection": "udhr", "macro_accuracy": 0.8,
            "pairs": {"eng_Latn-fra_Latn": {"pairs": 20, "eng_Latn->fra_Latn": 0.7, "fra_Latn->eng_Latn": 0.9,
                                            "accuracy": 0.8, "chance": 0.05}}}
    sections = {**EVAL, "lm": {"languages": {"fr": {"docs": 3, "loss": 5.0, "loss_init": 6.0}}},
                "retrieval": RETRIEVAL, "retrieval_udhr": udhr}
    report = write_report(str(tmp_path / "eval"), sections, merge=False)
    assert set(report["charts"]) == {"classification", "lm", "retrieval", "retrieval_udhr"}
    for name in report["charts"]:
        assert (tmp_path / "eval" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "![retrieval](retrieval.png)" in md and "| eng_Latn-fra_Latn | 20 | 0.7 | 0.5 | 0.6 | 0.65 | 0.05 |" in md
    assert "by ratio margin" in md and "| eng_Latn-fra_Latn | 20 | 0.7 | 0.9 | 0.8 | 0.05 |" in md
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig.model_validate({"run_name": "charts", "registry": {"tracking_uri": uri, "model_name": "m", "require_lineage": False}})
    reg = register(str(model), report, manifest, "abc", cfg)
    card = (model / "README.md").read_text()
    assert "Sentence retrieval" in card and "![classification](classification.png)" in card
    assert (model / "classification.png").exists() and (model / "retrieval.png").exists()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    metrics = client.get_run(reg["run_id"]).data.metrics
    assert metrics["retrieval_accuracy.eng_Latn-fra_Latn"] == 0.6 and metrics["retrieval_accuracy.macro"] == 0.6
    assert metrics["retrieval_margin_accuracy.eng_Latn-fra_Latn"] == 0.65 and metrics["retrieval_margin_accuracy.macro"] == 0.65
    assert metrics["retrieval_udhr_accuracy.eng_Latn-fra_Latn"] == 0.8 and metrics["retrieval_udhr_accuracy.macro"] == 0.8
    assert not any(k.startswith("retrieval_udhr_margin") for k in metrics)
    assert "Sentence retrieval on held-out translation pairs (udhr)" in card and (model / "retrieval_udhr.png").exists()
    files = {f.path for f in client.list_artifacts(reg["run_id"], "model")}
    assert {"model/retrieval.png", "model/lm.png", "model/classification.png"} <= files


def test_a_model_that_records_no_lineage_or_another_task_is_not_registered(model_and_manifest, tmp_path):
    """A model without the lineage a babelforge fine-tuning export records (an older export, or
    one made elsewhere) would be tagged with this run's pretrained model and corpus: refused
    unless registry.require_lineage is off (then tagged `lineage: unrecorded`); a model whose
    lineage names another task is refused too. Nothing reaches MLflow before the check."""
    import shutil

    from mlflow import MlflowClient

    from pipeline.register import LineageError

    root, manifest = model_and_manifest
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = {"run_name": "lin", "registry": {"tracking_uri": uri, "model_name": "lin"}}
    with pytest.raises(LineageError, match="records no lineage.*require_lineage"):
        register(str(root / "model"), EVAL, manifest, "abc123", PipelineConfig.model_validate(raw))
    assert not MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()

    other = tmp_path / "ner-model"
    shutil.copytree(root / "model", other)
    (other / "trainer_meta.json").write_text(json.dumps({"lineage": {"task": "token_classification",
                                                                     "manifest_sha256": "abc123"}}))
    with pytest.raises(LineageError, match="task token_classification"):
        register(str(other), EVAL, manifest, "abc123", PipelineConfig.model_validate(raw))

    raw["registry"]["require_lineage"] = False
    info = register(str(root / "model"), EVAL, manifest, "abc123", PipelineConfig.model_validate(raw))
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("lin", str(info["version"])).tags["lineage"] == "unrecorded"
