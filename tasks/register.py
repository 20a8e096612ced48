"""Prefect task of model registration in MLflow."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline import promotion, register
from pipeline.config import PipelineConfig
from tasks import stage_task


@stage_task(name="register-model")
def register_task(model_dir: str, eval_report: dict, manifest: dict, manifest_sha256: str, cfg: PipelineConfig) -> dict:
    info = register.register(model_dir, eval_report, manifest, manifest_sha256, cfg, cfg.path("model-pretrained"))
    decision = info["promotion"]
    create_markdown_artifact(
        key="registered-model",
        markdown=(f"Registered **{info['model_name']}** version **{info['version']}** "
                  f"(MLflow run `{info['run_id']}`, manifest sha256 `{manifest_sha256}`).\n\n"
                  + promotion.markdown(decision)
                  + (f"\nAlias `{cfg.registry.champion_alias}` -> version {info['version']}." if info["promoted"]
                     else f"\nAlias `{cfg.registry.champion_alias}` unchanged.")),
        description="MLflow model version and promotion decision")
    create_table_artifact(
        key="promotion-languages",
        table=[{"language": lang, **row} for lang, row in decision["languages"].items()],
        description=f"Promotion gate, per-language {decision['metric']}: "
                    f"{'promoted' if info['promoted'] else 'not promoted'}")
    return info
