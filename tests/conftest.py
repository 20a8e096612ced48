"""Shared fixtures. Prefect settings are set here, before anything imports Prefect."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_TEMP = {"PREFECT_HOME": "babelforge-prefect-", "BABELFORGE_CT2_CACHE": "babelforge-ct2-",  # not the user's
         "BABELFORGE_CACHE": "babelforge-cache-"}
for _var, _prefix in _TEMP.items():
    if _var not in os.environ:
        os.environ[_var] = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, os.environ[_var], True)  # removed when the test session ends
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE_LANGS = ["ar", "de", "en", "es", "eu", "fr", "hi", "ja", "ru", "sw", "th", "zh"]  # keys of data/sample/texts.py


def label(code: str) -> str:
    """The pipeline's canonical label of a data set's language code ('fr' -> 'fra_Latn')."""
    from pipeline.language_codes import normalize

    return normalize(code)


@pytest.fixture
def sample_corpus() -> list[str]:
    return [str(SAMPLE / "corpus" / "*")]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real multilingual data not present at {SHARED_DATA} (a fresh clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture
def demo_corpus_config():
    from pipeline.config import load_yaml

    return load_yaml(ROOT / "configs" / "demo.yaml").corpus


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect API on loopback for the session (SQLite in a temporary PREFECT_HOME),
    stopped cleanly at the end."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_job_server(ray_bin: str, url: str, env: dict, timeout: float = 180.0) -> None:
    """`ray start` returns before the dashboard and its job agent answer (on a busy 2-core
    machine, tens of seconds later): wait until `ray job list` (the CLI, as the tests use it,
    with the auth token) answers."""
    import subprocess
    import time

    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        proc = subprocess.run([ray_bin, "job", "list", "--address", url], capture_output=True, text=True,
                              timeout=60, env=env)
        if proc.returncode == 0:
            return
        last = (proc.stdout + proc.stderr)[-300:]
        time.sleep(3)
    logs = Path(tempfile.gettempdir()) / "ray" / "session_latest" / "logs" / "dashboard.log"
    tail = logs.read_text(errors="replace")[-2000:] if logs.exists() else "(no dashboard.log)"
    raise RuntimeError(f"Ray job server at {url} did not answer in {timeout:.0f} s ({last}); dashboard.log:\n{tail}")


@pytest.fixture(scope="module")
def ray_head(s3):
    """A two-node Ray cluster on loopback: a head (`ray start --head`, dashboard + job server,
    2 CPUs) and a second node (`ray start --address`, 2 CPUs, its own agent ports), both
    started with the S3 server's environment (`s3`), so no work needs a shared local disk;
    token authentication as Ray 2.59+ sets up clusters: the token is Ray's default file
    (~/.ray/auth_token, created by `ray get-auth-token --generate` when missing), which this
    process and its subprocesses read too (a process caches the token it first loads, so a
    different file per cluster would not work). Yields (GCS address, dashboard URL)."""
    import subprocess
    import sys

    import ray

    ray.shutdown()  # a local Ray of an earlier test would keep this process away from the head
    ray_bin = str(Path(sys.executable).with_name("ray"))
    saved = os.environ.get("RAY_AUTH_MODE")
    # token mode for this process too: Ray caches its config at first use, and only a new local
    # cluster (an earlier test's ray.init) would switch it on: run alone, this module's
    # ray.init(address=...) was refused ("RAY_AUTH_MODE is currently 'disabled'")
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()
    subprocess.run([ray_bin, "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)
    port, dashboard = _free_port(), _free_port()
    # the node's agents on free ports too: their fixed defaults (52365, ...) may still be held by
    # a local Ray an earlier test's subprocess started, and a head whose job agent cannot bind
    # answers every submission with "No available agent to submit job"
    def agents() -> list[str]:
        return [f"--{flag}={_free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                          "metrics-export-port", "runtime-env-agent-port")]

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                    f"--ray-client-server-port={_free_port()}", *agents(), "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=180, env=env)
    # the second node's own temporary folder (sessions, logs, runtime-env files), as on its own
    # machine: sharing the head's, its runtime-env agent removed a job's working_dir under the driver
    node2 = tempfile.mkdtemp(prefix="bfray-")
    subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    f"--temp-dir={node2}", *agents(), "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=180, env=env)
    try:
        _wait_for_job_server(ray_bin, f"http://127.0.0.1:{dashboard}", env)
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"
    finally:
        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(node2, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="session", autouse=True)
def _no_ray_left_behind():
    """The suite leaves no Ray process behind: whatever local Ray a test started (Ray Train's
    controller and workers included) is shut down when the session ends."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


# Conveniences of the tests (the library works on batches and units, not single texts or files)
def read_file(uri: str, text_field: str = "text", id_field: str = "id"):
    """One whole input (a file, or a saved HF dataset folder) -> (documents, rejects)."""
    from pipeline.corpus.ingest import Part, read_part

    return read_part(Part(uri), text_field, id_field)


def write_shards(docs, corpus_dir: str, cfg) -> dict:
    """All shards of an in-memory table (a one-batch ShardSink); the manifest body."""
    from pipeline.corpus.shard import ShardSink

    sink = ShardSink(corpus_dir, cfg, docs.schema)
    sink.add(docs)
    return sink.close()


def detect_script(text: str) -> str:
    from pipeline.corpus.langid import detect_scripts

    return detect_scripts([text])[0]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on loopback with bucket `babelforge-test` (the sample corpus under `in/`);
    the AWS_* environment points this process (and what it starts) at it. Yields an s3fs."""
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    mp = pytest.MonkeyPatch()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        mp.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if fs.exists("babelforge-test"):  # moto keeps its state per process: an earlier module's bucket
        fs.rm("babelforge-test", recursive=True)
    fs.mkdir("babelforge-test")
    for f in sorted((SAMPLE / "corpus").iterdir()):
        fs.put(str(f), f"babelforge-test/in/{f.name}")
    yield fs
    fs.rm("babelforge-test", recursive=True)
    mp.undo()
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()
