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
