"""Prefect task of model registration in MLflow."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from pipeline import register
from pipeline.config import PipelineConfig


@task(name="register-model")
def register_task(model_dir: str, eval_report: dict, manifest: dict, manifest_sha256: str, cfg: PipelineConfig) -> dict:
    info = register.register(model_dir, eval_report, manifest, manifest_sha256, cfg)
    create_markdown_artifact(
        key="registered-model",
        markdown=(f"Registered **{info['model_name']}** version **{info['version']}** "
                  f"(MLflow run `{info['run_id']}`, manifest sha256 `{manifest_sha256}`)."),
        description="MLflow model version")
    return info
