"""Flow: tokenizer -> Ray Train masked-LM pretraining -> Ray Train fine-tuning."""

from __future__ import annotations

from prefect import flow

from flows import run_folder_lease, run_label, this_run
from pipeline.config import PipelineConfig
from pipeline.corpus.shard import read_manifest
from tasks import run_stage
from tasks.train import finetune_task, pretrain_task, train_tokenizer_task, translate_train_task


@flow(name="train", log_prints=True, flow_run_name=run_label)
def train(config: PipelineConfig = PipelineConfig(), corpus_dir: str | None = None) -> dict:
    config = this_run(config, reads=("pretrain", "finetune"))
    with run_folder_lease(config):
        corpus_dir = corpus_dir or config.path("corpus")
        manifest = read_manifest(corpus_dir)
        tokenizer_dir = run_stage(train_tokenizer_task, config, manifest, corpus_dir, config.path("tokenizer"), config)
        pretrained = run_stage(pretrain_task, config, corpus_dir, manifest, tokenizer_dir,
                               config.path("model-pretrained"), config)
        finetune_cfg = config
        if config.finetune.translate_train or config.finetune.paraphrase:
            made = run_stage(translate_train_task, config, config.path("labelled"), config)
            finetune_cfg = config.model_copy(deep=True)
            finetune_cfg.finetune.extra_train_paths = [*config.finetune.extra_train_paths, made["path"]]
        classifier = run_stage(finetune_task, config, pretrained["model_dir"], config.path("model"), finetune_cfg)
        return {"tokenizer_dir": tokenizer_dir, "pretrain": pretrained, "finetune": classifier}
