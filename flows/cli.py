"""`babelforge` command line.

    babelforge run --config FILE                       the whole DAG as a Prefect flow
    babelforge prepare INPUT... --out DIR [--config F]  the corpus phase alone (no Prefect)
    babelforge pretrain --config FILE                  tokenizer + Ray Train pretraining + held-out loss
    babelforge finetune --config FILE                  Ray Train fine-tuning + per-language evaluation
    babelforge translate-train --config FILE           labelled examples translated (and paraphrased), labels kept
    babelforge evaluate --config FILE                  the evaluation suite on a run's existing models
    babelforge langid train INPUT... --out DIR         train + evaluate a fastText language-ID model
    babelforge profiles derive INPUT...                per-language filter thresholds from clean text

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

from pipeline.config import ConfigError, PipelineConfig, load_config
from pipeline.redact import install_log_redaction, redact_text, redact_uri


# what each command reads (pipeline/allowed_roots.py `run_inputs`), checked before it starts
READS = {"run": ("corpus", "pretrain", "finetune", "evaluate"), "prepare": ("corpus",), "profiles": ("corpus",),
         "pretrain": ("pretrain",), "finetune": ("finetune", "evaluate"), "translate-train": ("translate",),
         "evaluate": ("evaluate",), "compare": (), "promote": ()}


def _config(args: argparse.Namespace, new_run: bool = False) -> PipelineConfig:
    """The run config: --config's YAML (or the embedded defaults) with --set overrides on top.
    Placeholders in run_name ({flow_run}, {date}, {time}) name a new run: only `run` starts one;
    the stage commands work on an existing run, named in full. Every location the command reads
    (`READS`; its INPUT arguments in place of corpus.ingest.inputs) is checked against the
    allowed roots, and the Ray cluster against the allowed ones, before any work."""
    from pipeline.allowed_roots import check_run

    cfg = load_config(getattr(args, "config", None), getattr(args, "set", None))
    name = getattr(args, "run_name", None) or cfg.run_name
    if not new_run and "{" in name:
        raise ConfigError(f"run_name {name!r} has placeholders, which name a new run; this command works on an "
                          f"existing run: pass its full name with --run-name")
    check_run(cfg, getattr(args, "inputs", None), READS.get(getattr(args, "command", None), READS["run"]))
    return cfg


def _prefect_env() -> None:
    # Set before Prefect is imported: its settings are read at import time.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _holds(folder_of):
    """Decorator: the command holds the lease (pipeline/lock.py) of the folder it writes,
    `folder_of(args, cfg)`, while it runs, so it cannot run beside another run on that folder."""
    import functools

    def wrap(cmd):
        @functools.wraps(cmd)
        def run(args: argparse.Namespace) -> int:
            from pipeline.lock import hold_run

            cfg = _with_overrides(args) if hasattr(args, "output_dir") else _config(args)
            with hold_run(cfg, folder=folder_of(args, cfg), purpose=f"babelforge {args.command}"):
                return cmd(args)
        return run
    return wrap


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args, new_run=True)
    if args.run_name:
        cfg = PipelineConfig.model_validate({**cfg.model_dump(), "run_name": args.run_name})
    _prefect_env()
    from flows.multilingual_pipeline import multilingual_pipeline

    start = time.monotonic()
    result = multilingual_pipeline(cfg)
    print(f"\nrun {result['run_dir']}: {time.monotonic() - start:.0f}s")
    print(f"corpus: input {result['corpus']['input']} = kept {result['corpus']['kept']} + unidentified "
          f"{result['corpus']['unidentified']} + rejected "
          f"{result['corpus']['rejected']}")
    from pipeline.evaluation.evaluate import language_lines

    for line in language_lines(result["eval"]):
        print(line)
    reg = result["registered"]
    print(f"registered {reg['model_name']} version {reg['version']} in {redact_uri(reg['tracking_uri'])}")
    return 0


@_holds(lambda args, cfg: args.out)
def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.corpus.prepare import prepare

    cfg = _config(args)
    report = prepare(args.inputs, args.out, cfg.corpus, cfg.ray)
    summary = {k: report[k] for k in ("input", "kept", "unidentified", "rejected", "rejected_by_reason")}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"per-language report: {args.out}/report.json; manifest: {args.out}/manifest.json")
    return 0


def cmd_langid_train(args: argparse.Namespace) -> int:
    from pipeline.config import LidTrainConfig, load_yaml
    from pipeline.corpus.langid_train import train

    base = load_yaml(args.config, LidTrainConfig).model_dump() if args.config else {}
    given = {k: v for k, v in vars(args).items() if k in LidTrainConfig.model_fields and v is not None}
    cfg = LidTrainConfig.model_validate({**base, **given, "inputs": args.inputs})
    report = train(cfg, args.out)
    print(f"model: {report['model']} ({report['bytes'] / 1e6:.1f} MB, {report['labels']} labels, "
          f"{report['seconds']:.0f} s)")
    print(f"held-out macro F1: {report['macro_f1']} (lines), {report['doc_macro_f1']} (documents of "
          f"{report['doc_lines']} lines); per language: {args.out}/report.md, chart: {args.out}/confusion.png")
    worst = sorted(report["languages"].items(), key=lambda kv: kv[1]["f1"])[:10]
    print("lowest F1: " + ", ".join(f"{k} {v['f1']}" for k, v in worst))
    return 0


def cmd_profiles_derive(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.corpus.profile_stats import derive
    from pipeline.corpus.profiles import DERIVED, PROFILE_DIR

    out = args.out or str(PROFILE_DIR / DERIVED)
    if not args.tables_only:
        cfg = _config(args)
        derived = derive(args.inputs, langid_cfg=cfg.corpus.langid)
        header = ("# Thresholds derived from clean text per language-script label (pipeline/corpus/profile_stats.py).\n"
                  f"# Made by: babelforge profiles derive {' '.join(args.inputs)}\n"
                  "# Hand-written <code>.yaml profiles and the run config override these values.\n")
        with open(out, "w", encoding="utf-8") as f:
            f.write(header + yaml.safe_dump(derived, allow_unicode=True, sort_keys=True, width=120))
        print(f"{len(derived)} labels with derived thresholds -> {out}")
    from pipeline.corpus import letter_pairs
    from pipeline.corpus.profile_stats import reference_amounts
    from pipeline.corpus.profiles import REFERENCE

    amounts = reference_amounts(args.inputs)
    ref_out = os.path.join(os.path.dirname(out), REFERENCE)
    with open(ref_out, "w", encoding="utf-8") as f:
        f.write("# Clean reference text per language-script label that the derived thresholds were measured on\n"
                "# (docs: documents of 5 lines); checks that need more abstain (pipeline/corpus/profiles.py).\n"
                f"# Made by: babelforge profiles derive {' '.join(args.inputs)}\n"
                + yaml.safe_dump(amounts, sort_keys=True, default_flow_style=None, width=120))
    print(f"reference amounts for {len(amounts)} labels -> {ref_out}")
    tables = letter_pairs.build(letter_pairs.texts_by_script(args.inputs))
    pairs_out = os.path.join(os.path.dirname(out), os.path.basename(letter_pairs.PATH))
    letter_pairs.save(tables, pairs_out)
    print(f"letter-pair tables for {len(tables)} scripts -> {pairs_out}")
    return 0


def _with_overrides(args: argparse.Namespace) -> PipelineConfig:
    cfg = _config(args)
    update = {k: v for k, v in (("run_name", args.run_name), ("output_dir", args.output_dir)) if v}
    return PipelineConfig.model_validate({**cfg.model_dump(), **update}) if update else cfg


@_holds(lambda args, cfg: cfg.run_dir)
def cmd_pretrain(args: argparse.Namespace) -> int:
    from pipeline.corpus.shard import read_manifest
    from pipeline.evaluation import evaluate
    from pipeline.training import pretrain, tokenizer

    cfg = _with_overrides(args)
    corpus_dir = args.corpus or cfg.path("corpus")
    manifest = read_manifest(corpus_dir)
    tokenizer.train_tokenizer(manifest, corpus_dir, cfg.path("tokenizer"), cfg.tokenizer, cfg.model.objective)
    result = pretrain.pretrain(corpus_dir, manifest, cfg.path("tokenizer"), cfg.path("model-pretrained"), cfg)
    sections = evaluate.evaluate_pretrained(result["model_dir"], manifest, corpus_dir, cfg)
    evaluate.write_report(cfg.path("eval"), sections)
    print(f"pretrained {cfg.model.objective} model: {result['model_dir']} (step {result['step']}, "
          f"loss {result['loss']:.4f}, {result['tokens_per_s']:.0f} tokens/s)")
    _print_pretrained(sections, cfg.path("eval"))
    return 0


def _print_pretrained(sections: dict, eval_dir: str) -> None:
    from pipeline.evaluation.retrieval import collection_suffix, sections_of

    print(f"held-out loss per language (trained / at init), also in {eval_dir}/report.md:")
    for lang, m in sections["lm"]["languages"].items():
        extra = f"  {m['bits_per_byte']} bits/byte" if "bits_per_byte" in m else ""
        print(f"  {lang}: {m['loss']:.4f} / {m['loss_init']:.4f}{extra}")
    for name, r in sections_of(sections):
        margin = f" (ratio margin: {r['macro_margin_accuracy']})" if "macro_margin_accuracy" in r else ""
        print(f"sentence retrieval on held-out pairs{collection_suffix(name, r)}: macro accuracy {r['macro_accuracy']}"
              f"{margin} over {len(r['pairs'])} language pairs (per pair in {eval_dir}/report.md)")


@_holds(lambda args, cfg: cfg.run_dir)
def cmd_evaluate(args: argparse.Namespace) -> int:
    """The evaluation suite on existing models of a run, so two runs (or two checkpoints) are
    compared on the same tests: the pretrained model (held-out LM loss, retrieval) and the
    fine-tuned model (its task's test report), whichever exist."""
    from pipeline.corpus.shard import read_manifest
    from pipeline.evaluation import evaluate
    from pipeline.storage import exists

    cfg = _with_overrides(args)
    corpus_dir = args.corpus or cfg.path("corpus")
    pretrained = args.pretrained or cfg.path("model-pretrained")
    model = args.model or cfg.path("model")
    sections: dict = {}
    if exists(f"{pretrained}/config.json"):
        sections.update(evaluate.evaluate_pretrained(pretrained, read_manifest(corpus_dir), corpus_dir, cfg))
    if exists(f"{model}/config.json"):
        key, test = evaluate.evaluate_finetuned(model, cfg)
        sections[key] = test
    if not sections:
        raise FileNotFoundError(f"no model to evaluate: neither {pretrained} nor {model} holds a saved model "
                                f"(run `babelforge pretrain` / `babelforge finetune` first, or pass --pretrained / --model)")
    eval_dir = args.out or cfg.path("eval")
    report = evaluate.write_report(eval_dir, sections)
    if "lm" in sections:
        _print_pretrained(sections, eval_dir)
    for line in evaluate.language_lines(sections):
        print(line)
    print(f"report: {eval_dir}/report.md, charts: {', '.join(f'{eval_dir}/{n}.png' for n in report.get('charts', {}))}")
    return 0


@_holds(lambda args, cfg: cfg.run_dir)
def cmd_finetune(args: argparse.Namespace) -> int:
    from pipeline.evaluation import evaluate
    from pipeline.training import finetune

    cfg = _with_overrides(args)
    if cfg.finetune.translate_train or cfg.finetune.paraphrase:
        made = _translate_train(cfg)
        cfg = cfg.model_copy(deep=True)
        cfg.finetune.extra_train_paths = [*cfg.finetune.extra_train_paths, made["path"]]
    finetune.finetune(args.pretrained or cfg.path("model-pretrained"), cfg.path("model"), cfg)
    key, test = evaluate.evaluate_finetuned(cfg.path("model"), cfg)
    evaluate.write_report(cfg.path("eval"), {key: test})
    chance = f" (chance accuracy {test['chance_accuracy']})" if "chance_accuracy" in test else ""
    print(f"fine-tuned model: {cfg.path('model')}; test results per language{chance} "
          f"(also in {cfg.path('eval', 'report.md')}):")
    for line in evaluate.language_lines({key: test}):
        print(line)
    return 0


def _translate_train(cfg: PipelineConfig) -> dict:
    from pipeline.translation.labelled import augment_labelled

    report = augment_labelled(cfg, cfg.path("labelled"))
    print(f"translate-train / paraphrase: {report['kept']} examples kept, {report['rejected']} rejected -> "
          f"{report['path']}")
    for key, info in report["languages"].items():
        print(f"  {key}: kept {info['kept']}, rejected {info['rejected'] or 0}")
    return report


@_holds(lambda args, cfg: cfg.run_dir)
def cmd_translate_train(args: argparse.Namespace) -> int:
    cfg = _with_overrides(args)
    if not (cfg.finetune.translate_train or cfg.finetune.paraphrase):
        cfg = cfg.model_copy(deep=True)
        cfg.finetune.translate_train = True
    _translate_train(cfg)
    return 0


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override one config field, dotted path, value as YAML (repeatable): "
                        "--set corpus.dedup.threshold=0.6 --set 'corpus.langid.languages=[fr, de]'")


def cmd_compare(args: argparse.Namespace) -> int:
    from pipeline import promotion, register

    decision = register.compare_versions(_config(args), args.version, args.against)
    print(promotion.markdown(decision))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from pipeline import promotion, register

    cfg = _config(args)
    decision = register.promote(cfg, args.version, args.force)
    print(promotion.markdown(decision))
    state = "now holds" if decision["promoted"] else "does not take"
    print(f"{cfg.registry.model_name} version {args.version} {state} alias {cfg.registry.champion_alias}")
    return 0 if decision["promoted"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="babelforge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the whole DAG (Prefect flow multilingual_pipeline)")
    p.add_argument("--config", help="YAML config (default: embedded defaults)")
    p.add_argument("--run-name", help="override run_name")
    _set_option(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("prepare", help="run the corpus phase: shards, manifest, rejects, report")
    p.add_argument("inputs", nargs="+", help="files, globs, directories or URIs (s3://...)")
    p.add_argument("--out", required=True, help="output directory or URI")
    p.add_argument("--config", help="YAML config; its corpus section is used")
    _set_option(p)
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("langid", help="language-ID models: train one from labelled text")
    lsub = p.add_subparsers(dest="langid_command", required=True)
    p = lsub.add_parser("train", help="train a fastText language-ID model and write its per-language evaluation")
    p.add_argument("inputs", nargs="+", help="folders of <label>.txt files, label<TAB>text TSVs, Parquet (label, text)")
    p.add_argument("--out", required=True, help="output folder: model.ftz, report.{json,md}, confusion.png")
    p.add_argument("--config", help="YAML with LidTrainConfig fields (pipeline/config.py)")
    for name in ("dim", "epoch", "minn", "maxn", "max_per_label", "min_per_label", "threads", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int)
    p.add_argument("--heldout-fraction", dest="heldout_fraction", type=float)
    p.set_defaults(func=cmd_langid_train)
    p = sub.add_parser("profiles", help="cleaning profiles: derive per-language thresholds from clean text")
    psub = p.add_subparsers(dest="profiles_command", required=True)
    p = psub.add_parser("derive", help="measure clean text per language and write lang_profiles/_derived.yaml")
    p.add_argument("inputs", nargs="+", help="folders of <label>.txt files (clean text, one paragraph a line)")
    p.add_argument("--out", help="output YAML (default: pipeline/corpus/lang_profiles/_derived.yaml)")
    p.add_argument("--config", help="YAML config; its corpus.langid section picks the models")
    p.add_argument("--tables-only", action="store_true",
                   help="skip _derived.yaml (its language-ID thresholds need the models); write only "
                   "_reference.yaml and _letter_pairs.npz")
    p.set_defaults(func=cmd_profiles_derive)
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
        _set_option(p)
        p.set_defaults(func=func)
    p = sub.add_parser("translate-train", help="translate the labelled training set (and round-trip paraphrase "
                                               "it) with corpus.augment.models, labels kept: <run>/labelled/")
    p.add_argument("--config", help="YAML config (default: embedded defaults)")
    p.add_argument("--run-name", help="override run_name")
    p.add_argument("--output-dir", help="override output_dir")
    _set_option(p)
    p.set_defaults(func=cmd_translate_train)
    p = sub.add_parser("evaluate", help="run the evaluation suite on a run's existing models (compare runs)")
    p.add_argument("--config", help="YAML config (default: embedded defaults)")
    p.add_argument("--run-name", help="override run_name")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--corpus", help="corpus directory (default: <run>/corpus): its held-out text and pairs")
    p.add_argument("--pretrained", help="pretrained model directory (default: <run>/model-pretrained)")
    p.add_argument("--model", help="fine-tuned model directory (default: <run>/model)")
    p.add_argument("--out", help="report folder (default: <run>/eval)")
    _set_option(p)
    p.set_defaults(func=cmd_evaluate)
    for name, func, help_ in (
            ("compare", cmd_compare, "compare a registered model version with the champion (or --against) per "
                                     "language, as the promotion gate does"),
            ("promote", cmd_promote, "move the champion alias to a version that passes the promotion gate")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="YAML config; its registry section names the model and the gate")
        p.add_argument("--version", type=int, required=True, help="registered model version")
        if name == "compare":
            p.add_argument("--against", type=int, help="compare with this version instead of the champion")
        else:
            p.add_argument("--force", action="store_true", help="move the alias even if the gate says no "
                                                                 "(recorded as forced)")
        _set_option(p)
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    install_log_redaction()  # no credential (a tracking URI's password, a presigned URL's signature) in a log line
    from pipeline.lock import LeaseHeldError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, LeaseHeldError) as e:
        print(f"babelforge: error: {redact_text(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
