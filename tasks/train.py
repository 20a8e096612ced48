"""Prefect tasks of the training phase: tokenizer, Ray Train pretraining and fine-tuning."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from pipeline.config import PipelineConfig
from pipeline.corpus.shard import read_texts
from pipeline.training import finetune, pretrain, tokenizer
from tasks import stage_task


@stage_task(name="train-tokenizer")
def train_tokenizer_task(manifest: dict, corpus_dir: str, out_dir: str, cfg: PipelineConfig) -> str:
    tok = tokenizer.train_tokenizer(manifest, corpus_dir, out_dir, cfg.tokenizer, cfg.model.objective)
    heldout = {lang: read_texts(manifest, corpus_dir, lang) for lang in manifest["languages"]}
    fert = tokenizer.fertility(tok, heldout)
    if fert:
        create_table_artifact(key="tokenizer-fertility",
                              table=[{"language": k, **v} for k, v in fert.items()],
                              description="Tokens per character / word on held-out text, per language")
    return out_dir


@stage_task(name="pretrain")
def pretrain_task(corpus_dir: str, manifest: dict, tokenizer_dir: str, out_dir: str, cfg: PipelineConfig) -> dict:
    result = pretrain.pretrain(corpus_dir, manifest, tokenizer_dir, out_dir, cfg)
    rows = [{"language": k.removeprefix("loss/"), "training_loss": v}
            for k, v in sorted(result.items()) if k.startswith("loss/")]
    if rows:
        create_table_artifact(key="pretrain-languages", table=rows,
                              description=f"Training loss per language over the last {cfg.pretrain.log_every} "
                              f"steps (step {result['step']}, {result['tokens_per_s']:.0f} tokens/s)")
    objectives = ("tlm_loss", "contrastive_loss", "contrastive_acc", "pair_lm_loss")
    pairs = sorted({k.split("/", 1)[1] for k in result if k.split("/", 1)[0] in objectives and "/" in k})
    if pairs:
        create_table_artifact(key="pretrain-language-pairs",
                              table=[{"language_pair": p, **{o: result.get(f"{o}/{p}") for o in objectives
                                                             if f"{o}/{p}" in result}} for p in pairs],
                              description="Alignment objectives per language pair over the last "
                              f"{cfg.pretrain.log_every} steps (step {result['step']})")
    return result


@stage_task(name="finetune")
def finetune_task(pretrained_dir: str, out_dir: str, cfg: PipelineConfig) -> dict:
    return finetune.finetune(pretrained_dir, out_dir, cfg)


@stage_task(name="translate-train")
def translate_train_task(out_dir: str, cfg: PipelineConfig) -> dict:
    """Translate-train and paraphrase examples for fine-tuning (finetune.translate_train / paraphrase)."""
    from pipeline.translation.labelled import augment_labelled

    report = augment_labelled(cfg, out_dir)
    create_table_artifact(key="translate-train-languages",
                          table=[{"kind_language": k, "kept": v["kept"],
                                  "rejected": ", ".join(f"{r}: {n}" for r, n in v["rejected"].items())}
                                 for k, v in report["languages"].items()],
                          description=f"Fine-tuning examples made by translation: {report['kept']} kept, "
                                      f"{report['rejected']} rejected")
    return report
