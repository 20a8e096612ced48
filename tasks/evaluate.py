"""Prefect task of per-language evaluation; writes eval/report.json and report.md."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline import evaluate
from pipeline.config import PipelineConfig
from pipeline.storage import atomic_open, join, write_json


@task(name="evaluate")
def evaluate_task(classifier_dir: str, pretrained_dir: str, manifest: dict, corpus_dir: str, out_dir: str,
                  cfg: PipelineConfig) -> dict:
    task, test = evaluate.evaluate_finetuned(classifier_dir, cfg)
    report = {"lm": evaluate.evaluate_lm(pretrained_dir, manifest, corpus_dir, cfg.model, cfg.pretrain.seed),
              task: test}
    write_json(join(out_dir, "report.json"), report)
    md = evaluate.markdown(report)
    with atomic_open(join(out_dir, "report.md"), "wb") as f:
        f.write(md.encode())
    create_table_artifact(
        key="eval-languages",
        table=[{"language": lang, **m} for lang, m in report[task]["languages"].items()],
        description="Entity F1 per language" if task == "ner" else "Classifier accuracy and macro-F1 per language")
    create_markdown_artifact(key="eval-report", markdown="## Evaluation per language\n\n" + md,
                             description="Per-language evaluation")
    return report
