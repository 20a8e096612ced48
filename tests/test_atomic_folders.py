"""Models and tokenizers are replaced whole: a writer killed half way leaves the old folder
(local: switched in by rename) or a folder that readers refuse (s3://: `_WRITING` until the
`_COMPLETE.json` file list is written last)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from pipeline.storage import (
    COMPLETE,
    WRITING,
    IncompleteFolderError,
    folder_state,
    local_dir,
    require_whole,
    sha256_dir,
    writable_dir,
)

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import s3fs
    from pipeline.storage import writable_dir

    uri, version = sys.argv[1], sys.argv[2]
    real_put = s3fs.S3FileSystem.put_file
    calls = []

    def slow_put(self, lpath, rpath, *a, **k):  # the upload stalls after its second file: killed there
        calls.append(rpath)
        if len(calls) == 3:
            print("uploading", flush=True)
            time.sleep(120)
        return real_put(self, lpath, rpath, *a, **k)

    s3fs.S3FileSystem.put_file = slow_put
    with writable_dir(uri) as d:
        for i in range(5):
            Path(d, f"part-{i}.txt").write_text(f"{version} {i}")
            if i == 2 and "://" not in uri:
                print("uploading", flush=True)  # a local writer is killed while writing its files
                time.sleep(120)
""")


def _write(uri: str, version: str, n: int = 5) -> None:
    with writable_dir(uri) as d:
        for i in range(n):
            Path(d, f"part-{i}.txt").write_text(f"{version} {i}")


def _killed_writer(uri: str, version: str, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), uri, version], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "uploading"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_local_folder_is_switched_in_whole(tmp_path):
    target = tmp_path / "model"
    _write(str(target), "v1")
    assert folder_state(str(target)) == "complete"
    listed = json.loads((target / COMPLETE).read_text())["files"]
    assert sorted(listed) == [f"part-{i}.txt" for i in range(5)] and all(len(m["sha256"]) == 64 for m in listed.values())

    with pytest.raises(RuntimeError):  # an error in the writer: the old folder stays
        with writable_dir(str(target)) as d:
            Path(d, "part-0.txt").write_text("v2 0")
            raise RuntimeError("boom")
    assert (target / "part-0.txt").read_text() == "v1 0"

    _killed_writer(str(target), "v2", tmp_path)  # killed half way: the old folder stays, whole
    assert (target / "part-4.txt").read_text() == "v1 4" and folder_state(str(target)) == "complete"
    assert list(tmp_path.glob(".model.tmp-*")), "the killed writer's temporary folder is beside the target"
    _write(str(target), "v3", n=2)  # the next writer replaces the folder (no file of v1 left) and clears leftovers
    assert sorted(p.name for p in target.iterdir()) == [COMPLETE, "part-0.txt", "part-1.txt"]
    assert not list(tmp_path.glob(".model.*"))


def test_an_upload_killed_half_way_is_refused_until_a_rerun_replaces_it(s3, tmp_path):
    uri = "s3://babelforge-test/atomic/model"
    _write(uri, "v1")
    assert folder_state(uri) == "complete" and not s3.exists(f"babelforge-test/atomic/model/{WRITING}")
    assert Path(local_dir(uri), "part-3.txt").read_text() == "v1 3"

    _killed_writer(uri, "v2", tmp_path)
    assert folder_state(uri) == "partial"
    with pytest.raises(IncompleteFolderError, match="did not finish"):
        local_dir(uri)
    with pytest.raises(IncompleteFolderError):
        require_whole(uri)

    _write(uri, "v3")  # the retry replaces it whole
    assert folder_state(uri) == "complete"
    assert Path(local_dir(uri), "part-3.txt").read_text() == "v3 3"
    _write(str(tmp_path / "same"), "v3")  # its identity does not depend on where or how it was written
    assert sha256_dir(uri) == sha256_dir(str(tmp_path / "same"))


def test_a_folder_missing_a_listed_file_is_partial(s3):
    uri = "s3://babelforge-test/atomic/lost"
    _write(uri, "v1")
    s3.rm_file("babelforge-test/atomic/lost/part-2.txt")
    assert folder_state(uri) == "partial"


def test_a_tokenizer_left_half_uploaded_is_trained_again_not_reused(s3, tmp_path):
    from pipeline.config import TokenizerConfig, load_yaml
    from pipeline.corpus.prepare import prepare
    from pipeline.training.tokenizer import TRAINED_ON, train_tokenizer

    from conftest import SAMPLE

    prepare([str(SAMPLE / "corpus" / "news.jsonl")], str(tmp_path / "corpus"), load_yaml(ROOT / "configs" / "demo.yaml").corpus)
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    uri = "s3://babelforge-test/atomic/tok"
    train_tokenizer(manifest, str(tmp_path / "corpus"), uri, TokenizerConfig(vocab_size=300))
    good = sha256_dir(uri)
    # a crash of the old uploader: the reuse marker there, tokenizer.json not yet
    s3.rm_file("babelforge-test/atomic/tok/tokenizer.json")
    s3.pipe_file(f"babelforge-test/atomic/tok/{WRITING}", b"")
    assert s3.exists(f"babelforge-test/atomic/tok/{TRAINED_ON}")
    train_tokenizer(manifest, str(tmp_path / "corpus"), uri, TokenizerConfig(vocab_size=300))
    assert folder_state(uri) == "complete" and sha256_dir(uri) == good


def test_a_remote_key_that_climbs_out_of_its_folder_is_refused(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("BABELFORGE_CACHE", str(tmp_path / "cache"))
    s3.pipe_file("babelforge-test/atomic/evil/config.json", b"{}")
    s3.pipe_file("babelforge-test/atomic/evil/a/../../../../escaped.txt", b"x")
    if not any(".." in p for p in s3.find("babelforge-test/atomic/evil")):
        pytest.skip("this S3 server normalises '..' in keys")
    with pytest.raises(ValueError, match="outside its folder"):
        local_dir("s3://babelforge-test/atomic/evil")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_copy_that_differs_from_its_listing_is_refused_and_leaves_nothing(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("BABELFORGE_CACHE", str(tmp_path / "cache"))
    uri = "s3://babelforge-test/atomic/tampered"
    _write(uri, "v1")
    s3.pipe_file("babelforge-test/atomic/tampered/part-1.txt", b"XX 1")  # same size, other bytes
    with pytest.raises(IncompleteFolderError, match="differ from their listed sha256"):
        local_dir(uri)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # the download was removed
