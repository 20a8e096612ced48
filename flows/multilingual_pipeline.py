"""Flow: the whole DAG. corpus -> training -> evaluation and registration."""

from __future__ import annotations

from prefect import flow

from flows import run_folder_lease, run_label, this_run
from flows.evaluate_and_register import evaluate_and_register
from flows.prepare_corpus import prepare_corpus
from flows.train import train
from pipeline.config import PipelineConfig


@flow(name="multilingual_pipeline", log_prints=True, flow_run_name=run_label)
def multilingual_pipeline(config: PipelineConfig = PipelineConfig()) -> dict:
    config = this_run(config)
    with run_folder_lease(config):  # one run at a time per run folder; the subflows pass through
        corpus = prepare_corpus(config)
        trained = train(config, corpus_dir=corpus["corpus_dir"])
        result = evaluate_and_register(config)
    return {"run_dir": config.run_dir, "corpus": corpus["report"], "train": trained, **result}
