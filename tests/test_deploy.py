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
