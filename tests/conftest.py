"""Shared fixtures. Prefect settings are set here, before anything imports Prefect."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="babelforge-prefect-"))
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
    from pipeline.labels import normalize

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


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head node on loopback (`ray start --head`, dashboard + job server), with token
    authentication as a real cluster should have; yields (GCS address, dashboard URL) and
    sets RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH for this process while it runs."""
    import secrets
    import subprocess
    import sys

    ray_bin = str(Path(sys.executable).with_name("ray"))
    token = tmp_path_factory.mktemp("ray-auth") / "token"
    token.write_text(secrets.token_hex(32))
    env_keys = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    port, dashboard = _free_port(), _free_port()
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=4",
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"
    finally:
        import ray

        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
