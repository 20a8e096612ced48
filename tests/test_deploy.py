"""deploy/prefect.yaml: every entrypoint imports to a Prefect flow and its parameters validate."""

import importlib.util

import pytest
import yaml
from conftest import ROOT

SPEC = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())


def load_flow(entrypoint: str):
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"_deploy_{name}", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_declares_a_scheduled_multilingual_pipeline():
    nightly = next(d for d in SPEC["deployments"] if d["name"] == "nightly")
    assert nightly["entrypoint"] == "flows/multilingual_pipeline.py:multilingual_pipeline"
    assert nightly["work_pool"]["name"] == "babelforge-process"
    from prefect.client.schemas.schedules import CronSchedule

    for s in nightly["schedules"]:
        CronSchedule(cron=s["cron"], timezone=s["timezone"])


@pytest.mark.parametrize("deployment", SPEC["deployments"], ids=lambda d: d["name"])
def test_entrypoint_imports_and_parameters_validate(deployment):
    from prefect import Flow

    flow = load_flow(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    from pipeline.config import LidTrainConfig, PipelineConfig

    expected = LidTrainConfig if deployment["name"] == "train-langid" else PipelineConfig
    assert isinstance(validated["config"], expected)


def test_bad_parameters_are_refused_before_running():
    from prefect.exceptions import ParameterTypeError

    flow = load_flow("flows/multilingual_pipeline.py:multilingual_pipeline")
    with pytest.raises(ParameterTypeError, match="max_steps"):
        flow.validate_parameters({"config": {"pretrain": {"max_steps": 0}}})


def test_run_name_placeholders_give_every_flow_run_its_own_run():
    """{flow_run} / {date} / {time} in run_name: filled from the flow-run id and its scheduled
    time (a retry of the same flow run gets the same run back); unknown ones refused."""
    import datetime as dt

    from pipeline.config import ConfigError, PipelineConfig, load_config

    cfg = PipelineConfig(run_name="nightly-{date}-{flow_run}")
    when = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.timezone.utc)
    a = cfg.resolved("0a1b2c3d-0000-4000-8000-000000000001", when)
    assert a.run_name == "nightly-20261123-0a1b2c3d" and a.run_dir.endswith("/nightly-20261123-0a1b2c3d")
    assert cfg.resolved("0a1b2c3d-0000-4000-8000-000000000001", when).run_name == a.run_name  # a retry
    assert cfg.resolved("ffee0011-0000-4000-8000-000000000002", when).run_name != a.run_name
    assert PipelineConfig(run_name="fixed").resolved("0a1b2c3d").run_name == "fixed"
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_config(None, ["run_name=x-{user}"])


def test_two_flow_runs_of_one_config_work_on_two_runs(prefect_api):
    """Inside Prefect: the flow's own run id fills {flow_run}; the flow-run name carries it."""
    from prefect import flow

    from flows import run_label, this_run
    from pipeline.config import PipelineConfig

    @flow(flow_run_name=run_label)
    def probe(config: PipelineConfig) -> tuple[str, str]:
        from prefect.runtime import flow_run

        return this_run(config).run_name, f"{flow_run.id}|{flow_run.name}"

    cfg = PipelineConfig(run_name="nightly-{flow_run}")
    (name1, run1), (name2, run2) = probe(cfg), probe(cfg)
    assert name1 != name2
    for name, run in ((name1, run1), (name2, run2)):
        run_id, label = run.split("|")
        assert name == "nightly-" + run_id.replace("-", "")[:8]
        assert label.endswith(name)


def test_each_stage_gets_its_retries_timeout_and_tag():
    from types import SimpleNamespace

    from pipeline.config import PipelineConfig
    from tasks import stage, transient
    from tasks.corpus import prepare_corpus_task
    from tasks.train import pretrain_task

    cfg = PipelineConfig.model_validate({"orchestration": {"retries": 3, "retry_delay_seconds": 5,
                                                           "timeout_seconds": {"pretrain": 60}}})
    storage, training = stage(prepare_corpus_task, cfg), stage(pretrain_task, cfg)
    # a stage not given keeps its default timeout; one set to null has none
    assert storage.retries == 3 and storage.retry_delay_seconds == [5, 10, 20] and storage.timeout_seconds == 12 * 3600
    assert training.retries == 1 and training.timeout_seconds == 60 and "babelforge-training" in training.tags
    cfg.orchestration.timeout_seconds = {"prepare-corpus": None}
    assert stage(prepare_corpus_task, cfg).timeout_seconds is None
    assert "babelforge-training" not in storage.tags
    # retried: network and storage trouble; not retried: what a retry cannot fix
    assert transient(None, None, SimpleNamespace(data=ConnectionError("reset")))
    assert transient(None, None, SimpleNamespace(data=OSError("EIO")))
    assert not transient(None, None, SimpleNamespace(data=FileNotFoundError("no input")))
    assert not transient(None, None, SimpleNamespace(data=ValueError("bad config")))


def test_a_failed_stage_is_reported_with_the_stage_and_the_error(prefect_api, tmp_path):
    """A run whose corpus stage fails: the flow fails, a `run-failure` artifact names the run,
    the stage and the error, and an error no retry can fix is not retried."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    from flows.prepare_corpus import prepare_corpus
    from pipeline.config import PipelineConfig

    cfg = PipelineConfig.model_validate({"run_name": "broken", "output_dir": str(tmp_path),
                                         "corpus": {"ingest": {"inputs": [str(tmp_path / "nothing-here" / "*.txt")]}}})
    state = prepare_corpus(cfg, return_state=True)
    assert state.is_failed()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["run-failure"])),
                                           flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    assert "Run `broken` failed in stage **prepare-corpus**" in artifact.data
    assert "nothing-here" in artifact.data
    [prepare] = [t for t in task_runs if t.name.startswith("prepare-corpus")]
    assert prepare.run_count == 1  # FileNotFoundError: no retry


def test_deployments_that_read_inputs_restrict_where_from():
    """The deployments that run the corpus phase set corpus.ingest.allowed_roots, and their own
    default inputs lie inside them (from BABELFORGE_HOME, as the worker runs them)."""
    from pipeline.allowed_roots import check
    from pipeline.config import PipelineConfig

    ingesting = {"nightly", "prepare-corpus"}
    for d in SPEC["deployments"]:
        if d["name"] not in ingesting:
            continue
        cfg = PipelineConfig.model_validate(d["parameters"]["config"])
        assert cfg.corpus.ingest.allowed_roots, f"{d['name']}: no corpus.ingest.allowed_roots"
        check(cfg.corpus.ingest.inputs, cfg.corpus.ingest.allowed_roots)
