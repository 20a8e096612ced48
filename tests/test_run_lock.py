"""One run at a time per run folder (pipeline/lock.py): a second run on a run name fails at once
naming the holder and removes nothing of the first; a killed holder's lease goes stale and is
taken over; the same on s3://; the promotion decision and the alias move are atomic."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLE

from pipeline.config import PipelineConfig, load_yaml
from pipeline.lock import LOCK, Lease, LeaseHeldError, LeaseLostError, hold, hold_run

NEWS = str(SAMPLE / "corpus" / "news.jsonl")


def _files(folder: Path) -> dict[str, str]:
    """Every file under `folder` but the leases, with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(LOCK)}


def _cli_prepare(out: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", "prepare", NEWS, "--out", out,
                           "--config", str(ROOT / "configs" / "demo.yaml"), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_second_run_on_a_run_name_fails_fast_naming_the_holder_and_removes_nothing(tmp_path, monkeypatch):
    """Run A holds runs/same and prepares its corpus (paused half way, then while it "trains" on
    the shards); `babelforge prepare` into the same run (another process, another corpus
    config, which would remove the manifest and the shards) and a direct `prepare` call (another
    thread) fail at once, naming A; A's files are untouched and A completes. Once A has
    released the folder, the same command runs."""
    from pipeline.corpus import prepare as prepare_mod
    from pipeline.corpus.shard import read_manifest, verify_corpus

    cfg = PipelineConfig.model_validate({"run_name": "same", "output_dir": str(tmp_path / "runs")})
    corpus_cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    run_dir, corpus_dir = tmp_path / "runs" / "same", tmp_path / "runs" / "same" / "corpus"
    paused, resume, prepared, trained = (threading.Event() for _ in range(4))
    outcome: dict = {}
    real_dedup = prepare_mod.dedup_partitioned.dedup

    def slow_dedup(*args, **kwargs):  # A stops here, its units committed, its corpus not yet
        if threading.current_thread().name == "run-A":
            paused.set()
            assert resume.wait(120)
        return real_dedup(*args, **kwargs)

    monkeypatch.setattr(prepare_mod.dedup_partitioned, "dedup", slow_dedup)

    def run_a():
        try:
            with hold_run(cfg, purpose="run A") as lease:
                outcome["token"] = lease.token
                outcome["report"] = prepare_mod.prepare([NEWS], str(corpus_dir), corpus_cfg)
                prepared.set()
                assert trained.wait(120)  # "training": reading the shards
        except BaseException as e:  # noqa: BLE001 - reported by the test
            outcome["error"] = e
            paused.set()
            prepared.set()

    a = threading.Thread(target=run_a, name="run-A")
    a.start()
    try:
        assert paused.wait(120) and "error" not in outcome, outcome.get("error")
        before = _files(run_dir)
        assert any(name.startswith("corpus/_units/") for name in before)  # A's committed work units

        start = time.monotonic()
        other = _cli_prepare(str(corpus_dir), "--set", "corpus.clean.min_chars=5")
        assert other.returncode == 2, other.stderr
        for fact in (f"pid {os.getpid()}", "run A", "since ", "last heartbeat", f"delete {run_dir / LOCK}",
                     "goes stale 300 s after its last heartbeat"):
            assert fact in other.stderr, (fact, other.stderr)
        assert time.monotonic() - start < 120  # the time to start Python, not to wait for A

        errors = []
        t = threading.Thread(target=lambda: errors.append(_raises(prepare_mod.prepare, [NEWS], str(corpus_dir),
                                                                  corpus_cfg)))
        t.start()
        t.join(60)
        assert isinstance(errors[0], LeaseHeldError) and "run A" in str(errors[0])
        assert _files(run_dir) == before
        assert json.loads((run_dir / LOCK).read_text())["token"] == outcome["token"]

        resume.set()
        assert prepared.wait(120) and "error" not in outcome, outcome.get("error")
        committed = _files(run_dir)
        assert "corpus/manifest.json" in committed
        other = _cli_prepare(str(corpus_dir), "--set", "corpus.clean.min_chars=5")  # while A trains
        assert other.returncode == 2 and "run A" in other.stderr, other.stderr
        assert _files(run_dir) == committed
        manifest = read_manifest(str(corpus_dir))
        assert verify_corpus(manifest, str(corpus_dir)) > 0
        assert outcome["report"]["input"] == (outcome["report"]["kept"] + outcome["report"]["unidentified"]
                                               + outcome["report"]["rejected"])
    finally:
        resume.set()
        trained.set()
        a.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert not (run_dir / LOCK).exists()  # released
    again = _cli_prepare(str(corpus_dir))
    assert again.returncode == 0, again.stderr


def _raises(fn, *args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001
        return e
    return None


def test_leases_are_reentrant_for_their_run_and_cover_the_folders_around(tmp_path):
    run = tmp_path / "runs" / "x"
    with hold(str(run)) as lease:
        assert lease is not None and (run / LOCK).exists()
        with hold(str(run)) as inner, hold(str(run / "corpus")) as below:  # a subflow, a stage of this run
            assert inner is None and below is None
        assert not (run / "corpus" / LOCK).exists()
        for folder in (run, run / "corpus", f"{run}/../x/corpus"):  # other runs: refused
            with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()}"):
                _in_new_context(lambda f=folder: Lease(str(f)).acquire())
        assert not (run / "corpus" / LOCK).exists()  # the refused run's attempt is gone
    # a run inside the folder, then one around it
    with hold(str(run / "corpus"), purpose="babelforge prepare"):
        with pytest.raises(LeaseHeldError, match="babelforge prepare") as e:
            _in_new_context(lambda: Lease(str(run)).acquire())
        assert "which holds" not in str(e.value) and "inside" in str(e.value)
    assert not (run / LOCK).exists() and not (run / "corpus" / LOCK).exists()
    # a symlink to the run folder is the same folder
    (tmp_path / "alias").symlink_to(run)
    with hold(str(run)):
        with pytest.raises(LeaseHeldError):
            _in_new_context(lambda: Lease(str(tmp_path / "alias")).acquire())


def _in_new_context(fn):
    """Run `fn` as another run would: in a thread of its own (no lease of this run's context)."""
    out: list = []

    def go():
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # noqa: BLE001
            out.append(("error", e))

    t = threading.Thread(target=go)
    t.start()
    t.join(60)
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


def test_a_lease_is_released_on_error_and_kept_fresh_by_its_heartbeat(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stage failed"):
        with hold(str(run)):
            raise RuntimeError("stage failed")
    assert not (run / LOCK).exists()
    with hold(str(run), ttl_s=2.0, heartbeat_s=0.3):
        first = json.loads((run / LOCK).read_text())["heartbeat_unix"]
        time.sleep(3.0)  # longer than the TTL: still held, because it is refreshed
        assert json.loads((run / LOCK).read_text())["heartbeat_unix"] > first
        with pytest.raises(LeaseHeldError):
            _in_new_context(lambda: Lease(str(run), ttl_s=2.0, heartbeat_s=0.3).acquire())
    with pytest.raises(ValueError, match="under half the TTL"):
        Lease(str(run), ttl_s=10, heartbeat_s=6)


HOLDER = """
import sys, time
from pipeline.lock import hold
with hold(sys.argv[1], ttl_s=2.0, heartbeat_s=0.4, purpose="doomed run"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    time.sleep(1.0)  # a heartbeat or two
    return proc


def test_a_killed_holder_of_this_machine_is_taken_over_at_once(tmp_path, caplog):
    """SIGKILL (the OOM killer, a hard stop): its lease stays, naming a pid that no longer runs
    on this host, and the next run takes it over without waiting for the TTL."""
    run = tmp_path / "run"
    proc = _holder(run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert json.loads((run / LOCK).read_text())["pid"] == proc.pid  # left behind
    lease = Lease(str(run), ttl_s=60.0).acquire()
    assert any("took over the stale lease" in r.getMessage() and f"pid {proc.pid}" in r.getMessage()
               and "its process is gone" in r.getMessage() for r in caplog.records)
    lease.release()
    assert not (run / LOCK).exists()


def test_a_holder_without_heartbeat_keeps_its_lease_until_the_ttl_then_loses_it(tmp_path, caplog):
    """A paused process (SIGSTOP; as a stalled or unreachable machine): alive, no heartbeat. The
    next run is refused, naming it, until its TTL has run out since its last beat, then takes it
    over; the paused holder, resumed, finds at its next beat that its lease is gone."""
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        for _ in range(50):  # not while it holds the lease file's mutex (a beat takes a millisecond)
            os.kill(proc.pid, signal.SIGSTOP)
            if not (run / f"{LOCK}.mutex").exists():
                break
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
        stopped = time.monotonic()
        with pytest.raises(LeaseHeldError, match=f"pid {proc.pid}, doomed run"):
            Lease(str(run), ttl_s=2.0, heartbeat_s=0.4).acquire()
        lease = None
        while lease is None and time.monotonic() - stopped < 30:
            try:
                lease = Lease(str(run), ttl_s=2.0, heartbeat_s=0.4).acquire()
            except LeaseHeldError:
                time.sleep(0.2)
        assert lease is not None
        assert time.monotonic() - stopped > 2.0 - 0.4 - 0.1  # not before its TTL ran out since its last beat
        assert json.loads((run / LOCK).read_text())["token"] == lease.token
        assert any("took over the stale lease" in r.getMessage() and "no heartbeat for over 2 s" in r.getMessage()
                   for r in caplog.records)
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(1.5)  # its next beat: it must not write over the new holder's lease
        assert json.loads((run / LOCK).read_text())["token"] == lease.token
        lease.release()
        assert not (run / LOCK).exists()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(30)


def _race(folder: str, n: int, **kw) -> list:
    barrier, out = threading.Barrier(n), []

    def go():
        barrier.wait()
        try:
            out.append(Lease(folder, **kw).acquire())
        except LeaseHeldError:
            out.append(None)

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return [x for x in out if x is not None]


def _make_stale(read, write) -> None:
    body = json.loads(read())
    body["heartbeat_unix"] -= 1000
    write(json.dumps(body).encode())


def test_of_runs_starting_together_exactly_one_gets_the_folder_and_one_takes_a_stale_lease_over(tmp_path):
    run = tmp_path / "run"
    [winner] = _race(str(run), 8)
    winner._stop.set()  # its process "hangs": no more heartbeats
    winner._thread.join()
    _make_stale((run / LOCK).read_bytes, (run / LOCK).write_bytes)
    [taker] = _race(str(run), 6)
    with pytest.raises(LeaseLostError, match="taken over by another run"):
        winner.release()
    assert json.loads((run / LOCK).read_text())["token"] == taker.token  # the loser did not remove it
    taker.release()
    assert not (run / LOCK).exists()


def test_leases_on_s3(s3, caplog):
    """The same on s3:// (moto): atomic create (If-None-Match), heartbeats and takeovers
    conditional on the ETag (If-Match), folders around covered, release removes the object."""
    folder = "s3://babelforge-test/runs/x"
    key = "babelforge-test/runs/x/.lock.json"
    with hold(folder, ttl_s=2.0, heartbeat_s=0.3, purpose="s3 run") as lease:
        first = json.loads(s3.cat_file(key))
        assert first["token"] == lease.token and first["purpose"] == "s3 run"
        with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()}, s3 run") as e:
            _in_new_context(lambda: Lease(folder).acquire())
        assert f"delete {folder}/.lock.json" in str(e.value)
        with pytest.raises(LeaseHeldError, match="s3 run"):
            _in_new_context(lambda: Lease(f"{folder}/corpus").acquire())
        s3.invalidate_cache()
        assert not s3.exists(f"{folder}/corpus/.lock.json")
        time.sleep(1.0)
        assert json.loads(s3.cat_file(key))["heartbeat_unix"] > first["heartbeat_unix"]
        assert lease.lost is None
    s3.invalidate_cache()
    assert not s3.exists(key)

    [winner] = _race(folder, 8)
    winner._stop.set()
    winner._thread.join()
    _make_stale(lambda: s3.cat_file(key), lambda data: s3.pipe_file(key, data))
    [taker] = _race(folder, 6)
    assert any("took over the stale lease" in r.getMessage() for r in caplog.records)
    with pytest.raises(LeaseLostError):
        winner.release()
    assert json.loads(s3.cat_file(key))["token"] == taker.token
    taker.release()
    s3.invalidate_cache()
    assert not s3.exists(key)


# --------------------------------------------------------------------------- promotion

def _report(score: float) -> dict:
    langs = {lang: {"n": 20, "accuracy": score, "macro_f1": score, "majority_accuracy": 0.5}
             for lang in ("eng_Latn", "fra_Latn")}
    return {"classification": {"labels": ["a", "b"], "chance_accuracy": 0.5, "languages": langs,
                               "overall": {"n": 40, "micro_accuracy": score, "macro_accuracy": score,
                                           "macro_f1": score}}}


@pytest.mark.parametrize("first", ["better", "worse"])
def test_two_concurrent_registrations_give_one_champion_consistent_with_the_gate(tmp_path, monkeypatch, first):
    """v1 holds the alias (0.5). Two registrations, `better` (0.7) and `worse` (0.6), both judge
    themselves against v1 before either records its decision; then one records, then the
    other. Whatever the order, the alias ends on `better`, and the second decision recorded is
    the gate's against the version that took the alias first, not against v1."""
    from mlflow import MlflowClient

    from pipeline import promotion
    from pipeline.register import register

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig.model_validate({"run_name": "race", "output_dir": str(tmp_path / "runs"),
                                         "registry": {"tracking_uri": uri, "model_name": "race-model"}})
    manifest = {"alpha": 0.3, "languages": {"eng_Latn": {"rows": 10, "weight": 0.5},
                                            "fra_Latn": {"rows": 10, "weight": 0.5}}}

    def model(name: str) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        return str(tmp_path / name)

    assert register(model("v1"), _report(0.5), manifest, "0" * 64, cfg)["promoted"]

    second = "worse" if first == "better" else "better"
    decided = {name: threading.Event() for name in ("better", "worse")}
    first_done = threading.Event()
    real_decide = promotion.decide

    def decide(*args, **kwargs):
        out = real_decide(*args, **kwargs)
        name = threading.current_thread().name
        if name in decided and not decided[name].is_set():  # the registration's own decision
            decided[name].set()
            if name == second:
                assert first_done.wait(300)  # judged against v1; records only after the first
        return out

    monkeypatch.setattr(promotion, "decide", decide)
    results: dict = {}

    def registration(name: str, score: float):
        try:
            if name == first:
                assert decided[second].wait(300)  # both have judged against v1 before either records
            results[name] = register(model(name), _report(score), manifest, "0" * 64, cfg)
        except BaseException as e:  # noqa: BLE001
            results[name] = e
        finally:
            if name == first:
                first_done.set()

    threads = [threading.Thread(target=registration, args=a, name=a[0]) for a in (("better", 0.7), ("worse", 0.6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert all(isinstance(r, dict) for r in results.values()), results
    better, worse = results["better"], results["worse"]
    earlier, later = results[first], results[second]
    assert earlier["promotion"]["champion_version"] == 1 and earlier["promoted"]
    assert later["promotion"]["champion_version"] == earlier["version"]  # re-judged against the new champion
    assert later["promotion"]["first_against"] == 1
    assert later["promoted"] == (second == "better")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("race-model", "champion").version) == str(better["version"])
    tags = client.get_model_version("race-model", str(later["version"])).tags
    assert tags["promotion.against"] == str(earlier["version"])
    assert tags["promotion"] == ("promoted" if second == "better" else "rejected")
    if second == "worse":
        assert any("fell 0.1000" in r for r in worse["promotion"]["reasons"])
    import mlflow

    assert mlflow.artifacts.load_dict(f"runs:/{later['run_id']}/eval/promotion.json")["champion_version"] == \
        earlier["version"]


def test_a_registration_waits_for_the_promotion_lock_and_names_its_holder(tmp_path):
    from pipeline.register import promotion_lock_folder

    cfg = PipelineConfig.model_validate({"output_dir": str(tmp_path / "runs"),
                                         "registry": {"tracking_uri": f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}",
                                                      "model_name": "m/odd name"},
                                         "lock": {"promotion_wait_seconds": 1}})
    folder = promotion_lock_folder(cfg)
    assert Path(folder).parent == tmp_path / "db" / ".registry-locks" and "/" not in Path(folder).name
    with hold(folder, related=False, purpose="registration elsewhere"):
        from pipeline.register import settle_decision

        start = time.monotonic()
        with pytest.raises(LeaseHeldError, match="promotion lock of registered model m/odd name.*registration "
                                                 "elsewhere"):
            _in_new_context(lambda: settle_decision(None, cfg, 2, {"promote": True}, True))
        assert 0.9 <= time.monotonic() - start < 30  # waited promotion_wait_seconds, then named the holder
    other = PipelineConfig.model_validate({"output_dir": "s3://bucket/runs", "registry": {
        "tracking_uri": "http://mlflow:5000", "model_name": "m"}})
    assert promotion_lock_folder(other).startswith("s3://bucket/runs/.registry-locks/m-")


def test_flows_hold_their_run_folder_and_their_subflows_pass_through(prefect_api, tmp_path):
    """A flow holding the run folder runs the real prepare_corpus subflow (which takes the same
    lease, its task calling prepare(), which takes the corpus folder's) without deadlock; a
    second flow run of prepare_corpus on the same run, started meanwhile, fails at once naming
    the first flow run; the lease is gone when the flow ends."""
    from prefect import flow
    from prefect.runtime import flow_run

    from flows import run_folder_lease, this_run
    from flows.prepare_corpus import prepare_corpus

    cfg = load_yaml(ROOT / "configs" / "demo.yaml").model_copy(update={"run_name": "flowrun",
                                                                       "output_dir": str(tmp_path / "runs")})
    cfg.corpus.ingest.inputs = [NEWS]
    run_dir = tmp_path / "runs" / "flowrun"

    @flow
    def outer(config: PipelineConfig) -> dict:
        config = this_run(config)
        with run_folder_lease(config):
            corpus = prepare_corpus(config)
            holder = json.loads((run_dir / LOCK).read_text())
            other: dict = {}
            t = threading.Thread(target=lambda: other.update(state=prepare_corpus(config, return_state=True)))
            t.start()
            t.join(300)
            return {"corpus": corpus, "holder": holder, "me": str(flow_run.id), "other": other["state"]}

    out = outer(cfg)
    assert out["corpus"]["report"]["kept"] > 0 and (run_dir / "corpus" / "manifest.json").exists()
    assert out["holder"]["flow_run"] == out["me"] and out["holder"]["pid"] == os.getpid()
    assert out["other"].is_failed()
    error = out["other"].result(raise_on_failure=False)
    assert isinstance(error, LeaseHeldError) and f"Prefect flow run {out['me']}" in str(error)
    assert not (run_dir / LOCK).exists() and not (run_dir / "corpus" / LOCK).exists()
