"""Prefect task of per-language evaluation; writes eval/report.json and report.md."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline import charts
from pipeline.config import PipelineConfig
from pipeline.evaluation import evaluate
from pipeline.training import tasks
from tasks import stage_task


@stage_task(name="evaluate")
def evaluate_task(classifier_dir: str, pretrained_dir: str, manifest: dict, corpus_dir: str, out_dir: str,
                  cfg: PipelineConfig) -> dict:
    key, test = evaluate.evaluate_finetuned(classifier_dir, cfg)
    sections = evaluate.evaluate_pretrained(pretrained_dir, manifest, corpus_dir, cfg)
    report = evaluate.write_report(out_dir, {**sections, key: test}, merge=False)
    task = tasks.get(cfg.finetune.task)
    create_table_artifact(
        key="eval-languages",
        table=[{"language": lang, **m} for lang, m in test["languages"].items()],
        description=f"{task.title}: {', '.join(task.table(test)[0][1:])} per language")
    if "retrieval" in report:
        create_table_artifact(
            key="eval-retrieval",
            table=[{"language_pair": k, **m} for k, m in report["retrieval"]["pairs"].items()],
            description=f"Sentence retrieval on held-out pairs (macro {report['retrieval']['macro_accuracy']})")
    create_markdown_artifact(key="eval-report", markdown="## Evaluation per language\n\n" + evaluate.markdown(report),
                             description="Per-language evaluation")
    for name, uri in report.get("charts", {}).items():  # the pictures, inline (data URIs) in markdown artifacts
        create_markdown_artifact(key=f"eval-chart-{name.replace('_', '-')}",
                                 markdown=f"![{name}]({charts.png_data_uri(uri)})",
                                 description=f"Per-language chart: {name}")
    return report
