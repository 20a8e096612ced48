"""Prefect flows: composition of tasks; parameters are pipeline config models."""

from __future__ import annotations


def _flow_run():
    from prefect.runtime import flow_run

    when = flow_run.scheduled_start_time
    return flow_run.id, (when if hasattr(when, "astimezone") else None)


def this_run(config):
    """The config of this flow run: `run_name` placeholders ({flow_run}, {date}, {time}) filled
    from the Prefect flow run (a subflow gets its parent's already-filled config)."""
    return config.resolved(*_flow_run())


def run_label() -> str:
    """Flow-run name: the run it works on (the filled run_name), so the UI lists runs by run id."""
    from prefect.runtime import flow_run

    from pipeline.config import PipelineConfig, resolve_run_name

    cfg = flow_run.parameters.get("config")
    name = cfg.run_name if isinstance(cfg, PipelineConfig) else (cfg or {}).get("run_name", "demo")
    return f"{flow_run.flow_name}: {resolve_run_name(name, *_flow_run())}"
