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
                                         "registry": {"tracking_uri": uri, "model_name": "race-model",
                                                      "require_lineage": False}})
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


# --------------------------------------------------------------------------- review fixes (issue 31)

def _take_over(folder: Path, purpose: str = "run B") -> str:
    """What another run's takeover leaves: the lease, now naming that run (a fresh heartbeat)."""
    body = json.loads((folder / LOCK).read_text())
    body.update(token="b" * 32, pid=424242, purpose=purpose, heartbeat_unix=time.time())
    tmp = folder / f"{LOCK}.tmp-test"
    tmp.write_text(json.dumps(body))
    os.replace(tmp, folder / LOCK)
    return body["token"]


def _until_lost(lease: Lease) -> None:
    deadline = time.monotonic() + 10
    while lease.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease.lost is not None, "the heartbeat did not notice the takeover"


def test_a_run_whose_lease_was_taken_over_stops_at_its_next_commit_point(tmp_path, monkeypatch):
    """M2: a holder that was paused past its TTL and taken over keeps running; it must not
    commit anything more into the folder: no corpus manifest, no model switched in, no further
    stage, each refused with LeaseLostError naming the new holder; the new holder's lease stays."""
    import tasks
    from pipeline.corpus import prepare as prepare_mod
    from pipeline.storage import writable_dir

    run = tmp_path / "run"
    corpus_cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    real_dedup = prepare_mod.dedup_partitioned.dedup
    holder: dict = {}

    def dedup_then_taken_over(*args, **kwargs):  # the units are written; the run "pauses" here
        if not holder.get("token"):
            holder["token"] = _take_over(run)
            _until_lost(holder["lease"])
        return real_dedup(*args, **kwargs)

    monkeypatch.setattr(prepare_mod.dedup_partitioned, "dedup", dedup_then_taken_over)
    with pytest.raises(LeaseLostError, match=r"taken over by another run \(host .*pid 424242, run B.*stopped before "
                                             r"writing .*manifest\.json"):
        with hold(str(run), ttl_s=2.0, heartbeat_s=0.2) as lease:
            holder["lease"] = lease
            prepare_mod.prepare([NEWS], str(run / "corpus"), corpus_cfg)
    assert (run / "corpus" / "_units").exists() and not (run / "corpus" / "manifest.json").exists()
    assert json.loads((run / LOCK).read_text())["token"] == holder["token"]  # not removed by the loser
    os.unlink(run / LOCK)

    # a model folder: the old one stays, the new one is not switched in
    (run / "model").mkdir()
    (run / "model" / "weights").write_text("old")
    with pytest.raises(LeaseLostError, match="run B.*stopped before replacing"):
        with hold(str(run), ttl_s=2.0, heartbeat_s=0.2) as lease:
            with writable_dir(str(run / "model")) as d:
                Path(d, "weights").write_text("new")
                _take_over(run)
                _until_lost(lease)
    assert (run / "model" / "weights").read_text() == "old"
    os.unlink(run / LOCK)

    # the next stage of a flow is not started
    started, reported = [], []
    monkeypatch.setattr(tasks, "stage", lambda task, cfg: lambda *a, **k: started.append(task.name))
    monkeypatch.setattr(tasks, "failed_stage", lambda name, run_name, e: reported.append((name, e)))
    task = type("Task", (), {"name": "pretrain"})()
    cfg = type("Cfg", (), {"run_name": "run"})()
    with pytest.raises(LeaseLostError, match="run B.*stopped before stage pretrain"):
        with hold(str(run), ttl_s=2.0, heartbeat_s=0.2) as lease:
            tasks.run_stage(task, cfg)
            assert started == ["pretrain"]  # held: the stage runs
            _take_over(run)
            _until_lost(lease)
            tasks.run_stage(task, cfg)
    assert started == ["pretrain"] and reported[0][0] == "pretrain"
    assert not tasks.transient(None, None, type("State", (), {"data": reported[0][1]})())  # not retried
    os.unlink(run / LOCK)


def test_a_paused_holder_whose_heartbeat_has_not_run_yet_finds_its_lease_lost(tmp_path):
    """A resumed process may reach a commit point before its heartbeat thread runs: a late
    heartbeat makes the check read the lease itself."""
    from pipeline.lock import check_leases

    run = tmp_path / "run"
    with pytest.raises(LeaseLostError, match="run B"):
        with hold(str(run), ttl_s=2.0, heartbeat_s=0.2) as lease:
            lease._stop.set()  # its heartbeat thread has not run since the pause
            lease._thread.join()
            check_leases("x")  # its last beat is recent: no read, passes
            lease.beat_unix -= 5.0
            check_leases("x")  # late, but the lease is still its own: passes
            _take_over(run)
            check_leases("writing the manifest")
    assert json.loads((run / LOCK).read_text())["purpose"] == "run B"


def test_a_lease_is_not_left_behind_when_the_folders_around_cannot_be_read(tmp_path, monkeypatch, s3):
    """M3: the check of the folders around fails after the lease was created (no heartbeat
    runs yet): the lease is removed before the error is raised."""
    run = tmp_path / "run"
    run.mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == run:
            raise OSError(5, "Input/output error", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(OSError, match="Input/output error"):
        Lease(str(run)).acquire()
    assert not (run / LOCK).exists()
    monkeypatch.undo()

    folder = "s3://babelforge-test/runs/m3"

    async def lsdir(*args, **kwargs):  # what s3fs's `ls` awaits
        raise OSError(5, "An error occurred (InternalError) when calling the ListObjectsV2 operation")

    monkeypatch.setattr(type(s3), "_lsdir", lsdir)
    with pytest.raises(OSError, match="InternalError"):
        Lease(folder).acquire()
    monkeypatch.undo()
    s3.invalidate_cache()
    assert not s3.exists(f"{folder}/{LOCK}")


def test_s3_conflicting_conditional_writes_lose_the_race_instead_of_failing(s3):
    """L7: S3 answers 409 ConditionalRequestConflict to a conditional write racing another one:
    as a 412, the writer lost the race (create and takeover return None, a run retries)."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    from pipeline.lock import _S3Store

    path = "babelforge-test/runs/conflict/.lock.json"
    store = _S3Store(s3, path)
    assert store.create({"token": "a" * 32, "heartbeat_unix": time.time()}) is not None

    class Conflicting:  # the store's filesystem, whose conditional puts meet another one in flight
        def __getattr__(self, name):
            return getattr(s3, name)

        def pipe_file(self, *args, **kwargs):
            raise translate_boto_error(ClientError(
                {"Error": {"Code": "ConditionalRequestConflict", "Message": "A conflicting conditional operation "
                           "is currently in progress against this resource. Please try again."},
                 "ResponseMetadata": {"HTTPStatusCode": 409}}, "PutObject"))

    store.fs = Conflicting()
    assert store.swap(lambda cur: True, {"token": "b" * 32}) is None
    s3.rm_file(path)
    assert store.create({"token": "b" * 32}) is None


def test_a_heartbeat_in_flight_at_release_cannot_recreate_the_lease(monkeypatch):
    """L7: on storage without conditional writes (here fsspec's memory://), a heartbeat that
    read the lease (its own) before the release removed it must not write it back after: the
    release waits for the beat in flight, then removes the lease, and no beat follows."""
    import uuid

    import fsspec

    from pipeline.lock import _SettleStore

    monkeypatch.setattr(_SettleStore, "SETTLE_S", 0.01)
    folder = f"memory://lease-{uuid.uuid4().hex[:8]}/run"
    fs = fsspec.filesystem("memory")
    lease = Lease(folder, ttl_s=2.0, heartbeat_s=0.1).acquire()
    assert isinstance(lease.store, _SettleStore)
    real_write = lease.store._write_and_verify
    in_flight, go = threading.Event(), threading.Event()

    def slow_write(body):  # the beat has read the lease, its own; its write is slow
        in_flight.set()
        assert go.wait(30)
        return real_write(body)

    lease.store._write_and_verify = slow_write
    assert in_flight.wait(10)
    lease._thread.join = lambda timeout=None: None  # as a join that timed out: the beat is still in flight
    released = threading.Thread(target=lease.release)
    released.start()
    time.sleep(0.3)
    go.set()
    released.join(30)
    time.sleep(0.5)  # several heartbeat periods
    assert not fs.exists(lease.uri.removeprefix("memory://")), "the lease was written back after its release"


def test_a_non_sqlite_tracking_server_without_lock_dir_warns_once(tmp_path, caplog):
    """L2: the default promotion lock is per output_dir: with a tracking server, runs of other
    output_dirs would take other locks. Said once, with the setting, without the credential."""
    import uuid

    from pipeline.register import promotion_lock_folder

    server = f"http://user:pw@mlflow-{uuid.uuid4().hex[:8]}:5000"
    cfg = PipelineConfig.model_validate({"output_dir": str(tmp_path / "runs"),
                                         "registry": {"tracking_uri": server, "model_name": "m"}})
    caplog.set_level("WARNING", logger="pipeline.register")
    assert promotion_lock_folder(cfg) == promotion_lock_folder(cfg)
    warned = [r.getMessage() for r in caplog.records if "registry.lock_dir" in r.getMessage()]
    assert len(warned) == 1 and "pw" not in warned[0] and "both promote" in warned[0], warned
    caplog.clear()
    for registry in ({"tracking_uri": server, "model_name": "m", "lock_dir": str(tmp_path / "locks")},
                     {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "model_name": "m"}):
        promotion_lock_folder(PipelineConfig.model_validate({"output_dir": str(tmp_path / "runs"),
                                                             "registry": registry}))
    assert not [r for r in caplog.records if "registry.lock_dir" in r.getMessage()]
    from pipeline.config import RegistryConfig

    assert "race" in RegistryConfig.model_fields["lock_dir"].description


@pytest.mark.parametrize("crash_at", ["alias", "promotion tag"])
def test_a_registration_retried_after_a_crash_in_its_decision_reports_what_the_registry_holds(
        tmp_path, monkeypatch, crash_at):
    """L1: the first attempt dies while recording its promotion (before the alias moves, or
    after, before the version's `promotion` tag); the retry (the same registration, returned
    as it is) must not report a promotion the alias does not show."""
    from mlflow import MlflowClient

    from pipeline.register import register

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig.model_validate({"run_name": "crash", "output_dir": str(tmp_path / "runs"),
                                         "registry": {"tracking_uri": uri, "model_name": "crash-model",
                                                      "require_lineage": False}})
    manifest = {"alpha": 0.3, "languages": {"eng_Latn": {"rows": 10, "weight": 0.5},
                                            "fra_Latn": {"rows": 10, "weight": 0.5}}}
    for name in ("v1", "v2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"name": name}))
    assert register(str(tmp_path / "v1"), _report(0.5), manifest, "0" * 64, cfg)["promoted"]

    real_alias, real_tag = MlflowClient.set_registered_model_alias, MlflowClient.set_model_version_tag

    def alias(self, *args, **kwargs):
        if crash_at == "alias":
            raise ConnectionError("the registration's process died here")
        return real_alias(self, *args, **kwargs)

    def tag(self, name, version, key, value):
        if crash_at == "promotion tag" and key == "promotion":
            raise ConnectionError("the registration's process died here")
        return real_tag(self, name, version, key, value)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", alias)
    monkeypatch.setattr(MlflowClient, "set_model_version_tag", tag)
    with pytest.raises(ConnectionError):
        register(str(tmp_path / "v2"), _report(0.7), manifest, "0" * 64, cfg)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    again = register(str(tmp_path / "v2"), _report(0.7), manifest, "0" * 64, cfg)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("crash-model", "champion").version
    assert again["promoted"] and str(champion) == str(again["version"]) == "2"
    assert client.get_model_version("crash-model", "2").tags["promotion"] == "promoted"


def test_prepare_holds_its_folder_with_the_configured_lease_and_one_decorator_is_left(tmp_path, monkeypatch):
    """L8: `prepare` holds its out_dir with the lease settings it is given (cfg.lock), not the
    built-in defaults; the lease helpers that duplicated the CLI's are gone."""
    import pipeline.lock as lock_mod
    from pipeline.config import LockConfig
    from pipeline.corpus import prepare as prepare_mod

    out = tmp_path / "corpus"
    monkeypatch.setattr(prepare_mod, "_prepare", lambda *args: json.loads((out / LOCK).read_text()))
    lease = prepare_mod.prepare([NEWS], str(out), None, None, lock=LockConfig(ttl_seconds=40, heartbeat_seconds=4))
    assert lease["ttl_s"] == 40.0 and lease["purpose"] == "corpus phase" and not (out / LOCK).exists()
    assert not hasattr(lock_mod, "holding") and not hasattr(lock_mod, "holds")
