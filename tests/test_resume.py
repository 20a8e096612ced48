"""Work units: a prepare killed with SIGKILL and rerun gives the same corpus as an
uninterrupted run; the Ray engine gives the same corpus as the in-process one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SAMPLE

from pipeline.config import CorpusConfig
from pipeline.corpus.prepare import prepare

sys.path.insert(0, str(SAMPLE))
from texts import DOCS, TOPICS  # noqa: E402

N_FILES = 40


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """40 files of 144 documents: sentence pairs in every sample language."""
    d = tmp_path_factory.mktemp("inputs")
    for f in range(N_FILES):
        rows = []
        for lang in sorted(DOCS):
            sents = [t for topic in TOPICS for t in DOCS[lang][topic]]
            for j in range(12):
                a, b = sents[(f + j) % len(sents)], sents[(3 * f + 5 * j + 1) % len(sents)]
                rows.append({"id": f"f{f}-{lang}-{j}", "text": f"{a} {b}"})
        (d / f"part-{f:02d}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(d / "*.jsonl")


def shards(out) -> list[tuple[str, int, str]]:
    m = json.loads((out / "manifest.json").read_text())
    return [(s["path"], s["rows"], s["sha256"]) for s in m["shards"]]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    report = prepare([inputs], str(out), CorpusConfig())
    return out, report


def test_sigkill_midway_then_rerun_gives_the_same_corpus(inputs, reference, tmp_path):
    ref_out, ref_report = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "prepare", inputs, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("_units/*/done.json"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = {p: p.stat().st_mtime_ns for p in out.glob("_units/*/done.json")}
    assert 3 <= len(committed) < N_FILES, len(committed)
    assert not (out / "manifest.json").exists()

    report = prepare([inputs], str(out), CorpusConfig())
    assert all(p.stat().st_mtime_ns == t for p, t in committed.items())  # finished units not redone
    assert shards(out) == shards(ref_out)
    for k in ("input", "kept", "rejected", "languages"):
        assert report[k] == ref_report[k]
    assert report["input"] == report["kept"] + report["unidentified"] + report["rejected"] == N_FILES * 144


def test_ray_engine_gives_the_same_corpus(inputs, reference, tmp_path):
    import ray

    ref_out, ref_report = reference
    cfg = CorpusConfig(engine="ray")
    try:
        report = prepare([inputs], str(tmp_path / "ray"), cfg)
    finally:
        ray.shutdown()
    assert shards(tmp_path / "ray") == shards(ref_out)
    assert report["kept"] == ref_report["kept"] and report["rejected"] == ref_report["rejected"]
