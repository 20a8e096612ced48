"""`babelforge` command line.

    babelforge run --config FILE                       the whole DAG as a Prefect flow
    babelforge prepare INPUT... --out DIR [--config F]  the corpus phase alone (no Prefect)
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
    cls = result["eval"]["classification"]
    print(f"\nrun {cfg.run_name}: {time.monotonic() - start:.0f}s, outputs in {cfg.run_dir}")
    print(f"corpus: input {result['corpus']['input']} = kept {result['corpus']['kept']} + rejected "
          f"{result['corpus']['rejected']}")
    for lang, m in cls["languages"].items():
        print(f"  {lang}: accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  (n={m['n']})")
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
