"""Flow: per-language evaluation, then registration of the model in MLflow."""

from __future__ import annotations

from prefect import flow

from flows import run_folder_lease, run_label, this_run
from pipeline.config import PipelineConfig
from pipeline.corpus.shard import MANIFEST, read_manifest
from pipeline.storage import sha256_file
from tasks import run_stage
from tasks.evaluate import evaluate_task
from tasks.register import register_task


@flow(name="evaluate_and_register", log_prints=True, flow_run_name=run_label)
def evaluate_and_register(config: PipelineConfig = PipelineConfig()) -> dict:
    config = this_run(config, reads=("evaluate",))
    with run_folder_lease(config):
        corpus_dir = config.path("corpus")
        manifest = read_manifest(corpus_dir)
        manifest_uri = f"{corpus_dir}/{MANIFEST}"
        report = run_stage(evaluate_task, config, config.path("model"), config.path("model-pretrained"), manifest,
                           corpus_dir, config.path("eval"), config)
        registered = run_stage(register_task, config, config.path("model"), report, manifest,
                               sha256_file(manifest_uri), config)
    return {"eval": report, "registered": registered}
