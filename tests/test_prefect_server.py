"""deploy/prefect.yaml against a real Prefect server and worker, the way the README tells a user
to run it: `prefect server start` on loopback (its own PREFECT_HOME), the process work pool,
`prefect --no-prompt deploy --all`, a worker; runs triggered through the API with a custom
`config`, as the UI's "Custom run" does, run on the worker and leave their outputs, artifacts
and registered models: the corpus deployment (three runs), and two nights of the `nightly`
deployment (the whole DAG with real Ray Train fits, evaluation, MLflow registration and the
promotion gate; the second night on a changed input). The slowest test module (~6 min).
(Everything in subprocesses: the test's own Prefect settings are not used.)"""

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
        client_env = {**env, "PREFECT_API_URL": url, "BABELFORGE_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "2"}
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


def _api(server: dict, path: str, body: dict | None = None, attempts: int = 10):
    """One REST call; a 503 (the server's SQLite busy with its own services, on a loaded 2-core
    machine) is retried, as Prefect's own client does."""
    import urllib.error

    for attempt in range(attempts):
        req = urllib.request.Request(f"{server['url']}{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code not in (502, 503) or attempt == attempts - 1:
                raise
            time.sleep(2)


@pytest.fixture(scope="module")
def deployments(server) -> dict:
    """The project deployed as the README says: work pool, then every deployment of the file."""
    _cli(server, "work-pool", "create", "babelforge-process", "--type", "process")
    _cli(server, "--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml")
    return {d["name"]: d for d in _api(server, "/deployments/filter", {})}


def _create_run(server: dict, deployment: dict, config: dict) -> dict:
    """A run of a deployment with the user's `config`, as the UI's "Custom run" creates it."""
    return _api(server, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"config": config}})


class Worker:
    """`prefect worker start` on the process pool (one run at a time), for a `with` block."""

    def __init__(self, server: dict, cwd: Path):
        self.server, self.cwd, self.log = server, cwd, cwd / "worker.log"

    def __enter__(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", "babelforge-process", "--limit", "1"],
                                         env=self.server["env"], cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait(self, runs: list[dict], timeout: float) -> list[dict]:
        """The runs once all have ended (asserted COMPLETED, with the worker's log if not)."""
        deadline = time.monotonic() + timeout
        while True:
            ended = [_api(self.server, f"/flow_runs/{r['id']}") for r in runs]
            done = all(r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in ended)
            if done or time.monotonic() > deadline:
                break
            time.sleep(2)
        states = [r["state"]["type"] for r in ended]
        assert states == ["COMPLETED"] * len(runs), f"flow runs ended {states}:\n{self.log.read_text()[-4000:]}"
        return ended

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def test_deploy_the_project_and_run_a_custom_ui_run_on_a_worker(server, deployments, tmp_path):
    # every deployment of the file is on the server, the nightly one with its cron schedule
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
    run = _create_run(server, deployments["prepare-corpus"], config)
    assert run["parameters"]["config"]["run_name"] == "ui-custom"
    # two runs of the same deployment with a run id from the flow run (as the nightly one has):
    # each gets its own run; they share a unit cache, so the later one redoes no work unit
    config = {**config, "run_name": "ui-{flow_run}", "corpus": {**config["corpus"], "unit_cache": str(out / "cache")}}
    twins = [_create_run(server, deployments["prepare-corpus"], config) for _ in range(2)]
    with Worker(server, tmp_path) as worker:
        ended = worker.wait([run, *twins], timeout=420)

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


def _nightly_config(tmp_path: Path, inputs: Path) -> dict:
    """The demo's config, small: what a user would put in the nightly deployment's form."""
    from pipeline.config import load_yaml

    cfg = load_yaml(ROOT / "configs" / "demo.yaml").model_copy(deep=True)
    cfg.run_name = "nightly-{flow_run}"  # as deploy/prefect.yaml has it: a run of its own per flow run
    cfg.output_dir = str(tmp_path / "runs")
    cfg.corpus.ingest.inputs = [str(inputs / "*")]
    cfg.corpus.unit_cache = str(tmp_path / "unit-cache")  # shared by the nights
    cfg.finetune.train_path = str(ROOT / "data" / "sample" / "labelled" / "train.tsv")
    cfg.finetune.test_path = str(ROOT / "data" / "sample" / "labelled" / "test.tsv")
    cfg.pretrain.max_steps = 6
    cfg.pretrain.checkpoint_every = 3
    cfg.finetune.epochs = 2
    cfg.finetune.checkpoint_every_epochs = 1
    cfg.tokenizer.vocab_size = 1500
    cfg.registry.tracking_uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    return cfg.model_dump(mode="json")


@pytest.mark.slow
def test_two_nights_of_the_nightly_deployment_register_two_versions(server, deployments, tmp_path):
    """The `nightly` deployment run twice on the worker, the whole DAG each time (corpus, Ray
    Train pretraining and fine-tuning, evaluation, MLflow registration, promotion gate); one
    input changes between the nights. Each night is a run of its own (run id from its flow
    run), redoes only what changed, trains on its own corpus (the checkpoint's lineage) and
    registers its own version; the second is gated against the first."""
    import shutil

    from conftest import SAMPLE_LANGS, label
    from mlflow import MlflowClient

    from pipeline.storage import model_sha256, sha256_file

    inputs = tmp_path / "inputs"
    shutil.copytree(ROOT / "data" / "sample" / "corpus", inputs)
    config = _nightly_config(tmp_path, inputs)
    nights = []
    with Worker(server, tmp_path) as worker:
        nights += worker.wait([_create_run(server, deployments["nightly"], config)], timeout=600)
        with open(inputs / "forum.txt", "a", encoding="utf-8") as f:  # the next day's new text
            f.write("The night train to the coast was late again, so we walked along the harbour until dawn.\n"
                    "Le boulanger du village ouvre sa boutique à cinq heures et vend tout son pain avant midi.\n"
                    "El museo de la ciudad abrió una sala nueva dedicada a los mapas antiguos del puerto.\n")
        nights += worker.wait([_create_run(server, deployments["nightly"], config)], timeout=600)

    ids = [n["id"].replace("-", "")[:8] for n in nights]
    assert ids[0] != ids[1] and all(n["name"].endswith(f"nightly-{i}") for n, i in zip(nights, ids))
    runs = [tmp_path / "runs" / f"nightly-{i}" for i in ids]
    reports = [json.loads((r / "corpus" / "report.json").read_text()) for r in runs]
    assert all(r["input"] == r["kept"] + r["unidentified"] + r["rejected"] for r in reports)
    assert [(r["units"]["processed"], r["units"]["reused"]) for r in reports] == [(4, 0), (1, 3)]
    shas = [sha256_file(str(r / "corpus" / "manifest.json")) for r in runs]
    assert shas[0] != shas[1]
    for run, sha in zip(runs, shas):
        # checkpoints through ray.train.report, pruned to num_to_keep=2, trained on this night's corpus
        ckpts = sorted(p for p in (run / "ray" / f"{run.name}-pretrain").glob("checkpoint_*") if p.is_dir())
        assert len(ckpts) == 2 and (ckpts[-1] / "model.safetensors").exists()
        meta = json.loads((ckpts[-1] / "trainer_meta.json").read_text())
        assert meta["step"] == 6 and meta["lineage"]["manifest_sha256"] == sha
        assert (run / "model-pretrained" / "model.safetensors").exists()
        assert not (run / "model" / "trainer_state.pt").exists()
        ev = json.loads((run / "eval" / "report.json").read_text())
        assert sorted(ev["classification"]["languages"]) == sorted(label(lang) for lang in SAMPLE_LANGS)

    uri = config["registry"]["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = config["registry"]["model_name"]
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
    assert sorted(versions, key=int) == ["1", "2"]
    for version, run, sha, night in zip(("1", "2"), runs, shas, nights):
        tags = versions[version].tags
        assert tags["manifest_sha256"] == sha and tags["pretrained.manifest_sha256"] == sha
        assert tags["run_name"] == run.name and tags["flow_run_id"] == night["id"]
        assert tags["pretrained_sha256"] == model_sha256(str(run / "model-pretrained"))
        assert len(tags["config_sha256"]) == 64
        run_data = client.get_run(versions[version].run_id).data
        assert all(f"accuracy.{label(lang)}" in run_data.metrics for lang in SAMPLE_LANGS)
    assert versions["1"].tags["promotion"] == "promoted" and versions["2"].tags["promotion.against"] == "1"
    champion = client.get_model_version_by_alias(name, config["registry"]["champion_alias"])
    assert str(champion.version) == ("2" if versions["2"].tags["promotion"] == "promoted" else "1")

    keys = {a["key"] for a in _api(server, "/artifacts/filter", {"limit": 200})}
    assert {"corpus-languages", "corpus-chart", "eval-languages", "registered-model", "pretrain-languages",
            "tokenizer-fertility", "promotion-languages"} <= keys
