"""Flow: the corpus phase (ingest -> language ID -> clean -> dedup -> augment -> shards)."""

from __future__ import annotations

from prefect import flow

from flows import run_folder_lease, run_label, this_run
from pipeline.config import PipelineConfig
from pipeline.storage import read_json
from tasks import run_stage
from tasks.corpus import prepare_corpus_task


@flow(name="prepare_corpus", log_prints=True, flow_run_name=run_label)
def prepare_corpus(config: PipelineConfig = PipelineConfig()) -> dict:
    config = this_run(config, reads=("corpus",))
    with run_folder_lease(config):
        corpus_dir = config.path("corpus")
        report = run_stage(prepare_corpus_task, config, config.corpus.ingest.inputs, corpus_dir, config.corpus,
                           config.ray)
        return {"corpus_dir": corpus_dir, "report": report,
                "manifest": read_json(f"{corpus_dir}/manifest.json"), "manifest_sha256": report["manifest_sha256"]}
