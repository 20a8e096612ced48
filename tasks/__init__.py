"""Prefect tasks: thin wrappers, one pipeline function each; `stage` gives each its run options."""

from __future__ import annotations

TRAINING = ("pretrain", "finetune")
STORAGE = ("prepare-corpus", "train-tokenizer", "translate-train", "evaluate", "register-model")


# errors that a retry cannot fix: bad input or config, a missing or corrupted corpus, a run
# trained on other data; everything else (network, storage, a killed process) is retried
PERMANENT = (ValueError, TypeError, KeyError, FileNotFoundError, PermissionError, NotADirectoryError,
             IsADirectoryError)


def transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry unless the failure is one a retry cannot fix."""
    error = getattr(state, "data", None)
    return not isinstance(error, PERMANENT)


def registration_key(context, parameters: dict) -> str:
    """Cache key of register-model: the registry, the run, the classifier's weights and config
    (not its model card, which registration writes), the corpus and the evaluation. A retried
    flow whose registration had already succeeded gets that version back instead of
    registering a duplicate."""
    import hashlib
    import json

    from pipeline.storage import sha256_dir

    cfg = parameters["cfg"]
    weights = sha256_dir(parameters["model_dir"], skip=lambda name: name == "README.md" or name.endswith(".png"))
    key = json.dumps([cfg.registry.model_dump(mode="json"), cfg.run_name, parameters["manifest_sha256"],
                      parameters["eval_report"], weights], sort_keys=True, default=str)
    return "babelforge-register-" + hashlib.sha256(key.encode()).hexdigest()


def stage(task, cfg):
    """`task` with the run options of `cfg.orchestration` for its stage: retries with exponential
    backoff (storage and network stages, and training, which resumes from its checkpoint), the
    stage's timeout, and the training tag (a Prefect concurrency limit on it serialises training
    across runs)."""
    from prefect.tasks import exponential_backoff

    o = cfg.orchestration
    name = task.name
    retries = o.training_retries if name in TRAINING else o.retries if name in STORAGE else 0
    options = {"retries": retries, "timeout_seconds": o.timeout_seconds.get(name)}
    if retries:
        options.update(retry_delay_seconds=exponential_backoff(backoff_factor=o.retry_delay_seconds)(retries),
                       retry_jitter_factor=0.5, retry_condition_fn=transient)
    if name in TRAINING:
        options["tags"] = {*task.tags, o.training_tag}
    if name == "register-model":  # idempotent under flow retries: one version per model and evaluation
        options.update(cache_key_fn=registration_key, persist_result=True)
        if o.result_storage:
            options["result_storage"] = result_storage(o.result_storage)
    return task.with_options(**options)


def result_storage(uri: str):
    """Prefect result storage for `orchestration.result_storage`: `block:<type>/<name>` names a
    saved file-system block (credentials kept in the block); a URI (s3:// and the other fsspec
    protocols) becomes a RemoteFileSystem block, saved under a name derived from the URI (Prefect
    needs result storage saved server-side; the credentials stay in the environment, as for every
    s3:// path); a local path is used as it is."""
    import hashlib
    from pathlib import Path

    from prefect.filesystems import RemoteFileSystem

    from pipeline.storage import absolute, is_remote

    if uri.startswith("block:"):
        return uri.removeprefix("block:")
    if not is_remote(uri):
        return Path(absolute(uri))
    basepath = uri.rstrip("/")
    block = RemoteFileSystem(basepath=basepath)
    block.save(f"babelforge-results-{hashlib.sha256(basepath.encode()).hexdigest()[:12]}", overwrite=True)
    return block


def failed_stage(name: str, run_name: str, error: BaseException) -> None:
    """Report a stage's failure as a Prefect artifact (`run-failure`: the run, the stage, the error)
    and on the exception itself, before it fails the flow."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key="run-failure",
        markdown=f"## Run `{run_name}` failed in stage **{name}**\n\n```\n{type(error).__name__}: {error}\n```\n",
        description=f"{run_name}: {name} failed")
    error.add_note(f"babelforge: stage {name} of run {run_name} failed")


def run_stage(task, cfg, *args, **kwargs):
    """Run a stage's task with its options; a failure is reported with the stage and the error."""
    try:
        return stage(task, cfg)(*args, **kwargs)
    except Exception as e:
        failed_stage(task.name, cfg.run_name, e)
        raise
