"""deploy/prefect.yaml against a real Prefect server and worker, the way the README tells a user
to run it: `prefect server start` on loopback (its own PREFECT_HOME), the process work pool,
`prefect --no-prompt deploy --all`, a worker; a run triggered through the API with a custom
parameter, as the UI's "Custom run" does, runs on the worker and leaves its outputs and
artifacts. (Everything in subprocesses: the test's own Prefect settings are not used.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

PREFECT = str(Path(sys.executable).with_name("prefect"))
DEPLOYMENTS = {"nightly", "prepare-corpus", "train", "evaluate-and-register", "train-langid"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"prefect server at {url} not healthy in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server():
    """A Prefect server on a free loopback port with its own PREFECT_HOME; the environment
    for CLI commands and workers that talk to it."""
    home = Path(tempfile.mkdtemp(prefix="babelforge-prefect-server-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_SERVER_LOGGING_LEVEL="WARNING")
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home)
    try:
        _wait_healthy(url, proc, log)
        client_env = {**env, "PREFECT_API_URL": url, "BABELFORGE_HOME": str(ROOT)}
        yield {"url": url, "env": client_env, "home": home}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cli(server: dict, *args: str, timeout: float = 300) -> str:
    r = subprocess.run([PREFECT, *args], env=server["env"], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"prefect {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _api(server: dict, path: str, body: dict | None = None):
    req = urllib.request.Request(f"{server['url']}{path}", method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_deploy_the_project_and_run_a_custom_ui_run_on_a_worker(server, tmp_path):
    _cli(server, "work-pool", "create", "babelforge-process", "--type", "process")
    _cli(server, "--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml")

    # every deployment of the file is on the server, the nightly one with its cron schedule
    deployments = {d["name"]: d for d in _api(server, "/deployments/filter", {})}
    assert set(deployments) == DEPLOYMENTS
    nightly = deployments["nightly"]
    assert nightly["work_pool_name"] == "babelforge-process"
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in nightly["schedules"]] == \
        [("0 2 * * *", "UTC", True)]
    assert nightly["parameter_openapi_schema"]["properties"]["config"]  # the typed form the UI renders

    # a custom run from the UI: the deployment's `config` replaced by the user's
    out = tmp_path / "runs"
    config = {"run_name": "ui-custom", "output_dir": str(out),
              "corpus": {"ingest": {"inputs": [str(ROOT / "data" / "sample" / "corpus" / "*")]}}}
    run = _api(server, f"/deployments/{deployments['prepare-corpus']['id']}/create_flow_run",
               {"parameters": {"config": config}})
    assert run["parameters"]["config"]["run_name"] == "ui-custom"
    # two runs of the same deployment with a run id from the flow run (as the nightly one has):
    # each gets its own run; they share a unit cache, so the later one redoes no work unit
    config = {**config, "run_name": "ui-{flow_run}", "corpus": {**config["corpus"], "unit_cache": str(out / "cache")}}
    twins = [_api(server, f"/deployments/{deployments['prepare-corpus']['id']}/create_flow_run",
                  {"parameters": {"config": config}}) for _ in range(2)]
    runs = [run, *twins]

    worker_log = tmp_path / "worker.log"
    with open(worker_log, "wb") as log:
        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "babelforge-process", "--limit", "1"],
                                  env=server["env"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            ended = [_api(server, f"/flow_runs/{r['id']}") for r in runs]
            if all(r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in ended):
                break
            time.sleep(2)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    states = [r["state"]["type"] for r in ended]
    assert states == ["COMPLETED"] * 3, f"flow runs ended {states}:\n{worker_log.read_text()[-4000:]}"

    # the run's outputs and its artifacts
    manifest = json.loads((out / "ui-custom" / "corpus" / "manifest.json").read_text())
    assert len(manifest["languages"]) >= 10
    artifacts = _api(server, "/artifacts/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    keys = {a["key"] for a in artifacts}
    assert {"corpus-languages", "corpus-summary", "corpus-chart"} <= keys
    table = next(a for a in artifacts if a["key"] == "corpus-languages")
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert set(manifest["languages"]) <= {r["language"] for r in rows}

    # the twins: a run id each, from their own flow run, in the flow-run name the UI lists
    ids = [r["id"].replace("-", "")[:8] for r in ended[1:]]
    assert ids[0] != ids[1]
    assert [r["name"] for r in ended[1:]] == [f"prepare_corpus: ui-{i}" for i in ids]
    reports = [json.loads((out / f"ui-{i}" / "corpus" / "report.json").read_text()) for i in ids]
    assert sorted(r["units"]["reused"] for r in reports) == [0, reports[0]["units"]["total"]]
    first, second = (json.loads((out / f"ui-{i}" / "corpus" / "manifest.json").read_text()) for i in ids)
    assert [(s["path"], s["rows"], s["sha256"]) for s in first["shards"]] == \
        [(s["path"], s["rows"], s["sha256"]) for s in second["shards"]]
