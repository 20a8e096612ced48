"""Prefect tasks: thin wrappers, one pipeline function each; `stage` gives each its run options."""

from __future__ import annotations

TRAINING = ("pretrain", "finetune")
STORAGE = ("prepare-corpus", "train-tokenizer", "translate-train", "evaluate", "register-model")


# errors that a retry cannot fix: bad input or config, a missing or corrupted corpus, a run
# trained on other data; everything else (network, storage, a killed process) is retried
PERMANENT = (ValueError, TypeError, KeyError, FileNotFoundError, PermissionError, NotADirectoryError,
             IsADirectoryError)


def transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry unless the failure is one a retry cannot fix (nor one
    of a run that lost its run folder to another run)."""
    from pipeline.lock import LeaseLostError

    error = getattr(state, "data", None)
    return not isinstance(error, (*PERMANENT, LeaseLostError))


def stage_task(**options):
    """`prefect.task(**options)` for a babelforge stage, which every task here is made with: the
    stage's errors leave it with the credentials of the URIs they name redacted
    (`pipeline.redact.redacted_errors`: an input's presigned URL, finetune.train_path's
    `user:password@`, the tracking URI), so neither the task run's state message and log nor the
    flow's state (which Prefect stores and shows) carries them, whatever the stage."""
    import functools

    from prefect import task

    from pipeline.redact import redacted_errors

    def make(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with redacted_errors():
                return fn(*args, **kwargs)
        run.redacts_errors = True
        return task(**options)(run)
    return make


def stage(task, cfg):
    """`task` with the run options of `cfg.orchestration` for its stage: retries with exponential
    backoff (storage and network stages, and training, which resumes from its checkpoint), the
    stage's timeout, and the training tag (a Prefect concurrency limit on it serialises training
    across runs). No stage persists its result, whatever PREFECT_RESULTS_PERSIST_BY_DEFAULT says:
    Prefect stores results as pickles (a writable result store would run code on a cache hit), and
    every stage finds its finished work itself (manifest, checkpoints, the registry)."""
    from prefect.tasks import exponential_backoff

    o = cfg.orchestration
    name = task.name
    retries = o.training_retries if name in TRAINING else o.retries if name in STORAGE else 0
    options = {"retries": retries, "timeout_seconds": o.timeout_seconds.get(name), "persist_result": False}
    if retries:
        options.update(retry_delay_seconds=exponential_backoff(backoff_factor=o.retry_delay_seconds)(retries),
                       retry_jitter_factor=0.5, retry_condition_fn=transient)
    if name in TRAINING:
        options["tags"] = {*task.tags, o.training_tag}
    return task.with_options(**options)


def failed_stage(name: str, run_name: str, error: BaseException) -> None:
    """Report a stage's failure as a Prefect artifact (`run-failure`: the run, the stage, the error)
    and on the exception itself, before it fails the flow."""
    from prefect.artifacts import create_markdown_artifact

    from pipeline.redact import redact_text

    create_markdown_artifact(
        key="run-failure",
        markdown=f"## Run `{run_name}` failed in stage **{name}**\n\n```\n{type(error).__name__}: "
                 f"{redact_text(str(error))}\n```\n",
        description=f"{run_name}: {name} failed")
    error.add_note(f"babelforge: stage {name} of run {run_name} failed")


def run_stage(task, cfg, *args, **kwargs):
    """Run a stage's task with its options; a failure is reported with the stage and the error.
    A run whose lease was taken over by another run (pipeline/lock.py) stops here instead."""
    from pipeline.lock import check_leases

    try:
        check_leases(f"stage {task.name}")
        return stage(task, cfg)(*args, **kwargs)
    except Exception as e:
        failed_stage(task.name, cfg.run_name, e)
        raise
