"""`babelforge` command line.

    babelforge run --config FILE                       the whole DAG as a Prefect flow
    babelforge prepare INPUT... --out DIR [--config F]  the corpus phase alone (no Prefect)
    babelforge pretrain --config FILE                  tokenizer + Ray Train pretraining + held-out loss
    babelforge finetune --config FILE                  Ray Train fine-tuning + per-language evaluation

`pretrain` and `finetune` run the functions the Prefect tasks run, without Prefect, so they
also work as Ray Jobs: `ray job submit --working-dir . -- babelforge pretrain --config F`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from pipeline.config import ConfigError, PipelineConfig, load_yaml


def _config(path: str | None) -> PipelineConfig:
    return load_yaml(path) if path else PipelineConfig()


def _prefect_env() -> None:
    # Set before Prefect is imported: its settings are read at import time.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    if args.run_name:
        cfg = cfg.model_copy(update={"run_name": args.run_name})
    _prefect_env()
    from flows.multilingual_pipeline import multilingual_pipeline

    start = time.monotonic()
    result = multilingual_pipeline(cfg)
    print(f"\nrun {cfg.run_name}: {time.monotonic() - start:.0f}s, outputs in {cfg.run_dir}")
    print(f"corpus: input {result['corpus']['input']} = kept {result['corpus']['kept']} + rejected "
          f"{result['corpus']['rejected']}")
    from pipeline.evaluate import language_line

    for task in ("classification", "ner"):
        for lang, m in result["eval"].get(task, {}).get("languages", {}).items():
            print(language_line(lang, m))
    reg = result["registered"]
    print(f"registered {reg['model_name']} version {reg['version']} in {reg['tracking_uri']}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.corpus import prepare

    cfg = _config(args.config)
    report = prepare(args.inputs, args.out, cfg.corpus, cfg.ray)
    summary = {k: report[k] for k in ("input", "kept", "rejected", "rejected_by_reason")}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"per-language report: {args.out}/report.json; manifest: {args.out}/manifest.json")
    return 0


def _with_overrides(args: argparse.Namespace) -> PipelineConfig:
    cfg = _config(args.config)
    update = {k: v for k, v in (("run_name", args.run_name), ("output_dir", args.output_dir)) if v}
    return PipelineConfig.model_validate({**cfg.model_dump(), **update}) if update else cfg


def cmd_pretrain(args: argparse.Namespace) -> int:
    from pipeline import evaluate, pretrain, tokenizer
    from pipeline.storage import read_json

    cfg = _with_overrides(args)
    corpus_dir = args.corpus or cfg.path("corpus")
    manifest = read_json(f"{corpus_dir}/manifest.json")
    tokenizer.train_tokenizer(manifest, corpus_dir, cfg.path("tokenizer"), cfg.tokenizer, cfg.model.objective)
    result = pretrain.pretrain(corpus_dir, manifest, cfg.path("tokenizer"), cfg.path("model-pretrained"), cfg)
    report = evaluate.evaluate_lm(result["model_dir"], manifest, corpus_dir, cfg.model, cfg.pretrain.seed)
    from pipeline.storage import write_json

    write_json(cfg.path("eval", "pretrain.json"), {"train": result, "heldout": report})
    print(f"pretrained {cfg.model.objective} model: {result['model_dir']} (step {result['step']}, "
          f"loss {result['loss']:.4f}, {result['tokens_per_s']:.0f} tokens/s)")
    print("held-out loss per language (trained / at init):")
    for lang, m in report["languages"].items():
        extra = f"  {m['bits_per_byte']} bits/byte" if "bits_per_byte" in m else ""
        print(f"  {lang}: {m['loss']:.4f} / {m['loss_init']:.4f}{extra}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from pipeline import evaluate, finetune
    from pipeline.storage import write_json

    cfg = _with_overrides(args)
    pretrained = args.pretrained or cfg.path("model-pretrained")
    result = finetune.finetune(pretrained, cfg.path("model"), cfg)
    task, report = evaluate.evaluate_finetuned(cfg.path("model"), cfg)
    write_json(cfg.path("eval", "finetune.json"), {"train": result, "test": report})
    chance = f" (chance accuracy {report['chance_accuracy']})" if task == "classification" else ""
    print(f"fine-tuned model: {cfg.path('model')}; test results per language{chance}:")
    for lang, m in report["languages"].items():
        print(evaluate.language_line(lang, m))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="babelforge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the whole DAG (Prefect flow multilingual_pipeline)")
    p.add_argument("--config", help="YAML config (default: embedded defaults)")
    p.add_argument("--run-name", help="override run_name")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("prepare", help="run the corpus phase: shards, manifest, rejects, report")
    p.add_argument("inputs", nargs="+", help="files, globs, directories or URIs (s3://...)")
    p.add_argument("--out", required=True, help="output directory or URI")
    p.add_argument("--config", help="YAML config; its corpus section is used")
    p.set_defaults(func=cmd_prepare)
    for name, func, help_ in (("pretrain", cmd_pretrain, "train the tokenizer and pretrain on the corpus (Ray Train)"),
                              ("finetune", cmd_finetune, "fine-tune the pretrained model and evaluate per language")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="YAML config (default: embedded defaults)")
        p.add_argument("--run-name", help="override run_name")
        p.add_argument("--output-dir", help="override output_dir (use an absolute path or URI in a Ray Job)")
        if name == "pretrain":
            p.add_argument("--corpus", help="corpus directory (default: <output_dir>/<run_name>/corpus)")
        else:
            p.add_argument("--pretrained", help="pretrained model directory (default: <run>/model-pretrained)")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"babelforge: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
