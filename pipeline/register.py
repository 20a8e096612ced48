"""Model registration in MLflow: the model folder (safetensors + tokenizer + model card) as
run artifacts, the run's parameters, per-language metrics, and the corpus manifest checksum,
registered as a new version of a named model.

Default store: SQLite under `mlruns/` (no server). Point `registry.tracking_uri` or
MLFLOW_TRACKING_URI at an MLflow server for a shared registry; credentials for its artifact
store come from the environment, never from config files.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .config import PipelineConfig
from .evaluation.evaluate import markdown
from .storage import get_fs
from .training import tasks

log = logging.getLogger(__name__)


def tracking_uri(configured: str | None) -> str:
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    Path("mlruns").mkdir(exist_ok=True)
    return f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return {k: v[:500] for k, v in out.items()}


def model_card(name: str, eval_report: dict, manifest: dict, manifest_sha256: str, cfg: PipelineConfig) -> str:
    """The model's README.md: a Hugging Face model card (`huggingface_hub.ModelCardData`, whose
    `EvalResult`s build and check the `model-index`: one result per test language) with the
    training corpus and the per-language evaluation tables."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    task = tasks.get(cfg.finetune.task)
    test = eval_report.get(task.key, {})
    languages = sorted(set(manifest.get("languages", {})) | set(test.get("languages", {})))
    results = [EvalResult(task_type=task.pipeline_tag, task_name=task.title, dataset_type=cfg.finetune.test_path,
                          dataset_name="babelforge labelled set", dataset_config=lang, dataset_split="test",
                          metric_type=metric["type"], metric_value=metric["value"], metric_name=metric.get("name"))
               for lang, m in sorted(test.get("languages", {}).items()) for metric in task.card_metrics(m)]
    data = ModelCardData(
        # HF card metadata wants ISO 639 codes: the language part of our `<ISO 639-3>_<script>` labels
        language=sorted({lang.partition("_")[0] for lang in languages}), library_name="transformers",
        pipeline_tag=task.pipeline_tag, tags=["babelforge", "multilingual"], model_name=name,
        eval_results=results or None)
    corpus_rows = "\n".join(
        f"| {lang} | {info['rows']} | {info.get('augmented_rows', 0)} | {info['weight']} |"
        for lang, info in sorted(manifest.get("languages", {}).items())
    )
    arch = ("Llama-style decoder pretrained with causal LM" if cfg.model.objective == "causal_lm"
            else "BERT-style encoder pretrained with masked LM")
    body = (
        f"# {name}\n\n"
        f"A {arch} on the babelforge corpus of run `{cfg.run_name}`, then fine-tuned for {task.title.lower()} "
        f"({cfg.finetune.strategy}). Languages: {', '.join(languages)}.\n\n"
        f"## Training data\n\nCorpus manifest sha256 `{manifest_sha256}`; temperature alpha {manifest.get('alpha')}.\n\n"
        f"| language | documents | of which back-translated | sampling weight |\n|---|---:|---:|---:|\n{corpus_rows}\n\n"
        f"## Evaluation (per language)\n\n{markdown(eval_report)}\n"
        f"Weights are stored as safetensors.\n"
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def register(model_dir: str, eval_report: dict, manifest: dict, manifest_sha256: str, cfg: PipelineConfig) -> dict:
    import mlflow
    from mlflow import MlflowClient

    rcfg = cfg.registry
    uri = tracking_uri(rcfg.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name(rcfg.experiment)
    if exp is None:
        # beside a SQLite store, artifacts go next to the database file (mlruns/artifacts)
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri() \
            if uri.startswith("sqlite:///") else None
        exp_id = client.create_experiment(rcfg.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id

    for name, chart in eval_report.get("charts", {}).items():  # beside the card, which shows them (<name>.png)
        fs, path = get_fs(chart)
        if fs.exists(path):
            fs.get(path, str(Path(model_dir, f"{name}.png")))
    Path(model_dir, "README.md").write_text(model_card(rcfg.model_name, eval_report, manifest, manifest_sha256, cfg),
                                            encoding="utf-8")
    task = tasks.get(cfg.finetune.task)
    test = eval_report.get(task.key, {})
    metrics = task.metrics(test)
    metrics.update({f"lm_loss.{lang}": m["loss"] for lang, m in eval_report.get("lm", {}).get("languages", {}).items()})
    retrieval = eval_report.get("retrieval", {})
    metrics.update({f"retrieval_accuracy.{key}": m["accuracy"] for key, m in retrieval.get("pairs", {}).items()})
    if retrieval:
        metrics["retrieval_accuracy.macro"] = retrieval["macro_accuracy"]
    with mlflow.start_run(experiment_id=exp_id, run_name=cfg.run_name) as run:
        mlflow.log_params(flatten(cfg.model_dump(mode="json")))
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"manifest_sha256": manifest_sha256, "task": task.name,
                         "languages": ",".join(sorted(test.get("languages", {})))})
        mlflow.log_artifacts(model_dir, artifact_path="model")
        mlflow.log_dict(eval_report, "eval/report.json")
        mlflow.log_dict(manifest, "corpus/manifest.json")
        artifact_uri = run.info.artifact_uri
        run_id = run.info.run_id
    try:
        client.get_registered_model(rcfg.model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(rcfg.model_name, description="babelforge multilingual model")
    version = client.create_model_version(
        rcfg.model_name, source=f"{artifact_uri}/model", run_id=run_id,
        tags={"manifest_sha256": manifest_sha256, "run_name": cfg.run_name},
        description=f"run {cfg.run_name}; {task.title.lower()}: {task.summary(test)}",
    )
    log.info("register: %s version %s (run %s) in %s", rcfg.model_name, version.version, run_id, uri)
    return {"model_name": rcfg.model_name, "version": int(version.version), "run_id": run_id,
            "source": version.source, "tracking_uri": uri}
