"""Prefect task of the corpus phase, with per-language report artifacts."""

from __future__ import annotations

import base64

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from pipeline.config import CorpusConfig, RayConfig
from pipeline.corpus import prepare
from pipeline.storage import absolute, get_fs
from tasks import stage_task


def _language_rows(report: dict) -> list[dict]:
    rows = []
    for lang, info in report["languages"].items():
        rows.append({"language": lang, "input": info["input"], "kept": info["kept"],
                     "unidentified": info["unidentified"],
                     "rejected": info["input"] - info["kept"] - info["unidentified"],
                     "reasons": ", ".join(f"{k}: {v}" for k, v in info["rejected"].items()),
                     "back_translated": report["augmented"]["languages"].get(lang, {}).get("kept", 0),
                     "back_translation_rejects": ", ".join(
                         f"{k}: {v}" for k, v in report["augmented"]["languages"].get(lang, {})
                         .get("rejected_by_reason", {}).items())})
    for lang, info in report["augmented"]["languages"].items():  # a target with no real text at all
        if lang not in report["languages"]:
            rows.append({"language": lang, "input": 0, "kept": 0, "unidentified": 0, "rejected": 0, "reasons": "",
                         "back_translated": info["kept"],
                         "back_translation_rejects": ", ".join(f"{k}: {v}" for k, v in info["rejected_by_reason"].items())})
    return rows


@stage_task(name="prepare-corpus", task_run_name="prepare-corpus -> {out_dir}")
def prepare_corpus_task(inputs: list[str], out_dir: str, cfg: CorpusConfig, ray_cfg: RayConfig | None = None) -> dict:
    """The corpus phase; its work units run on the Ray cluster of `ray_cfg` when one is
    configured (`corpus.engine: auto`), else in the task's process."""
    report = prepare.prepare(inputs, out_dir, cfg, ray_cfg)
    create_table_artifact(key="corpus-languages", table=_language_rows(report),
                          description=f"Corpus per language: {out_dir}")
    chart_uri = f"{out_dir}/report.png"
    create_link_artifact(key="corpus-chart", link=absolute(chart_uri) if "://" in chart_uri else
                         "file://" + absolute(chart_uri), link_text="kept / rejected per language (PNG)")
    fs, path = get_fs(chart_uri)
    png = base64.b64encode(fs.cat_file(path)).decode()
    create_markdown_artifact(
        key="corpus-summary",
        markdown=(f"## Corpus `{out_dir}`\n\ninput **{report['input']}** = kept **{report['kept']}** + "
                  f"unidentified **{report['unidentified']}** (kept apart, not trained on) + "
                  f"rejected **{report['rejected']}**\n\nRejected by reason: "
                  + ", ".join(f"{k} {v}" for k, v in report["rejected_by_reason"].items())
                  + f"\n\n![kept and rejected per language](data:image/png;base64,{png})"
                  + f"\n\nBack-translation: {report['augmented']['kept']} kept of {report['augmented']['generated']} "
                  f"generated.\n\nManifest sha256 `{report['manifest_sha256']}`\n"),
        description="Corpus accounting",
    )
    return report
