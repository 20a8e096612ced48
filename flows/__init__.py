"""Prefect flows: composition of tasks; parameters are pipeline config models."""

from __future__ import annotations

from pipeline.redact import install_log_redaction

install_log_redaction()  # every log line of a flow run (Prefect's, the libraries') without credentials


def _flow_run():
    from prefect.runtime import flow_run

    when = flow_run.scheduled_start_time
    return flow_run.id, (when if hasattr(when, "astimezone") else None)


def this_run(config, reads=None):
    """The config of this flow run: `run_name` placeholders ({flow_run}, {date}, {time}) filled
    from the Prefect flow run (a subflow gets its parent's already-filled config). First, before
    any work, every location the flow's parts `reads` read (default: all) is checked against the
    allowed roots, and its Ray cluster against the allowed ones (`pipeline.allowed_roots.check_run`:
    a UI run chooses them all)."""
    from pipeline.allowed_roots import READS, check_run

    check_run(config, reads=READS if reads is None else reads)
    return config.resolved(*_flow_run())


def run_label() -> str:
    """Flow-run name: the run it works on (the filled run_name), so the UI lists runs by run id."""
    from prefect.runtime import flow_run

    from pipeline.config import PipelineConfig, resolve_run_name

    cfg = flow_run.parameters.get("config")
    name = cfg.run_name if isinstance(cfg, PipelineConfig) else (cfg or {}).get("run_name", "demo")
    return f"{flow_run.flow_name}: {resolve_run_name(name, *_flow_run())}"


def run_folder_lease(config):
    """Hold the run folder's lease (pipeline/lock.py) for the flow: a second run on the same
    run folder fails at once, naming this flow run; this flow's own subflows pass through."""
    from prefect.runtime import flow_run

    from pipeline.lock import hold_run

    owner = {"flow_run": str(flow_run.root_flow_run_id or flow_run.id or ""), "flow_run_name": flow_run.name}
    return hold_run(config, owner=owner, purpose=f"{flow_run.flow_name or 'flow'} of run {config.run_name}")
