"""Prefect task: train a language-ID model, with its per-language evaluation as artifacts."""

from __future__ import annotations

import base64

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline.config import LidTrainConfig
from pipeline.corpus.langid_train import train
from pipeline.storage import get_fs, join
from tasks import stage_task


@stage_task(name="train-langid", task_run_name="train-langid -> {out_dir}")
def train_langid_task(cfg: LidTrainConfig, out_dir: str) -> dict:
    report = train(cfg, out_dir)
    create_table_artifact(
        key="langid-languages",
        table=[{"language": k, **v} for k, v in report["languages"].items()],
        description=f"Language ID on held-out lines, per language: {report['model']}")
    fs, path = get_fs(join(out_dir, "confusion.png"))
    png = base64.b64encode(fs.cat_file(path)).decode()
    create_markdown_artifact(
        key="langid-summary",
        markdown=(f"## Language-ID model `{report['model']}`\n\n{report['labels']} labels; held-out macro F1 "
                  f"**{report['macro_f1']}** (lines), **{report['doc_macro_f1']}** (documents)\n\n"
                  "| true | predicted | share |\n|---|---|---:|\n"
                  + "".join(f"| {c['gold']} | {c['predicted']} | {c['share']} |\n" for c in report["confused"][:10])
                  + f"\n![confusion](data:image/png;base64,{png})\n"),
        description="Language-ID training")
    return report
