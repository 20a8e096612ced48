"""One run at a time per folder: a lease, a lock object in the folder with its owner and a heartbeat.

`hold(folder)` creates `<folder>/.lock.json` atomically, naming its owner (host, pid, Prefect
flow run, what it is, since when) and refreshed by a background thread every `heartbeat_s`; it
is removed when the block ends, also on an error. Another run that asks for the same folder
fails at once (or after `wait_s`) with `LeaseHeldError`, which names the holder and says how to
clear a stale lease; it has written nothing into the folder but its attempt. A process that is
killed leaves its lease behind, unrefreshed: a lease whose last heartbeat is older than its TTL
is stale, and the next run takes it over (logged, naming the old holder); the old holder, if it
still runs (it was paused), learns it at its next heartbeat and stops at its next commit point
(`check_leases`: before a stage, a manifest, a folder switch) with `LeaseLostError`. A lease of a process
of the same machine (same host name, boot and pid namespace) whose pid is free, or reused by a
process started at another time, is taken over at once: a run killed by the OOM killer or
SIGKILL can be rerun without waiting for the TTL; a paused process keeps its lease until the TTL.

Atomicity, per storage:
- local disk (and `file://`): the lease is written to a temporary file and hard-linked to its
  name, which fails if the name exists (as `O_CREAT|O_EXCL`, which is the fallback where links
  are not supported), so a reader never sees half a lease. A refresh, a takeover and a release
  are done under a short-lived mutex file (`.lock.json.mutex`, also created exclusively) after
  re-reading the lease, so a takeover cannot replace a lease that was refreshed meanwhile.
- `s3://`: a conditional put (`If-None-Match: *`, s3fs `pipe_file(mode="create")`) creates the
  lease; refreshes and takeovers are conditional on the ETag read (`If-Match`), so of two runs
  taking over one stale lease exactly one succeeds and a holder whose lease was taken over
  learns it at its next heartbeat. (S3 since 2024, MinIO, and moto, which the tests use, honour
  both conditions.) The release reads the lease and deletes it if it is still this holder's:
  between the two, the lease could only change hands if it had gone stale.
- other fsspec storage: written when absent, then read back after a settle delay and kept only
  if it still holds this run's token. Residual race: two runs that write within the settle
  delay of each other's read-back can both believe they hold it.
On every storage a heartbeat's write and the release's delete are serialised in the holder (a
beat in flight when the run ends cannot recreate the lease after it was removed).

Staleness compares the holder's last heartbeat (its wall clock, in the lease) with the reader's
clock: hosts must agree on the time to within much less than the TTL.

Reentrancy: a run holds its folder once. A holder's own code (a Prefect subflow of a flow that
holds the folder, the corpus phase inside a run) asking for the same folder, or for a folder
inside it, is let through: the leases held are kept in a context variable, which Prefect's
subflows and task threads inherit. Leases also cover their relatives: asking for a folder fails
while a live lease of another holder is on a folder above it or directly below it, so
`babelforge prepare --out runs/x/corpus` cannot run while a run holds `runs/x`, nor the other
way round.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .redact import redact_uri
from .storage import get_fs, is_remote

log = logging.getLogger(__name__)

LOCK = ".lock.json"
MUTEX_STALE_S = 30.0  # a local mutex file older than this was left by a killed process

# the leases held by the current run: Prefect subflows and task threads inherit the context
_held: contextvars.ContextVar[tuple["Lease", ...]] = contextvars.ContextVar("babelforge_leases", default=())


class LeaseHeldError(RuntimeError):
    """The folder is held by another live run; the message names it."""

    def __init__(self, what: str, lock_uri: str, holder: dict, waited_s: float = 0.0):
        self.lock_uri, self.holder = lock_uri, holder
        waited = f" (waited {waited_s:.0f} s)" if waited_s else ""
        ttl = holder.get("ttl_s")
        super().__init__(
            f"{what} is in use by another run{waited}: {describe(holder)}. Wait for that run to finish, or stop it. "
            f"If it is gone (killed on another machine, its machine lost), its lease goes stale {ttl:.0f} s after "
            f"its last heartbeat and the next run takes it over (at once for a process of this machine that no "
            f"longer runs); to clear it now, delete {redact_uri(lock_uri)}, only once you are sure that run is not "
            f"running." if isinstance(ttl, (int, float)) else
            f"{what} is in use by another run{waited}: {describe(holder)}. Delete {redact_uri(lock_uri)} only once "
            f"you are sure that run is not running.")


class LeaseLostError(RuntimeError):
    """This run's lease was taken over by another run (it had gone stale: no heartbeat for its TTL).
    Raised at this run's next commit point (`check_leases`), so it stops writing, and by `release`."""


def describe(holder: dict) -> str:
    """Who holds a lease, for messages: host, pid, flow run, what, since when, last heartbeat."""
    if holder.get("unreadable"):
        return f"an unreadable lease (being written, or damaged), last changed {holder.get('age_s', 0):.0f} s ago"
    now = time.time()
    parts = [f"host {holder.get('host', '?')}", f"pid {holder.get('pid', '?')}"]
    if holder.get("flow_run"):
        name = f" ({holder['flow_run_name']})" if holder.get("flow_run_name") else ""
        parts.append(f"Prefect flow run {holder['flow_run']}{name}")
    if holder.get("purpose"):
        parts.append(str(holder["purpose"]))
    if holder.get("started"):
        parts.append(f"since {holder['started']}")
    if isinstance(holder.get("heartbeat_unix"), (int, float)):
        parts.append(f"last heartbeat {max(0.0, now - holder['heartbeat_unix']):.0f} s ago")
    return ", ".join(parts)


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def is_stale(holder: dict, now: float | None = None, default_ttl: float = 300.0) -> bool:
    """A lease not refreshed within its TTL (the holder's own, recorded in it)."""
    now = time.time() if now is None else now
    if holder.get("unreadable"):
        return holder.get("age_s", 0.0) > default_ttl
    ttl = holder.get("ttl_s") if isinstance(holder.get("ttl_s"), (int, float)) else default_ttl
    beat = holder.get("heartbeat_unix")
    return not isinstance(beat, (int, float)) or now - beat > ttl


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22): with the pid,
    it names one process even after the pid is reused."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[1].split()[19] if stat and ")" in stat else None


def _this_process() -> dict:
    """Where this process lives, beyond its host name (Linux; empty elsewhere): the boot, the
    pid namespace (a container has its own) and its start time."""
    out = {"boot_id": _read("/proc/sys/kernel/random/boot_id"), "pid_ns": None, "pid_start": _start_ticks(os.getpid())}
    try:
        out["pid_ns"] = os.readlink("/proc/self/ns/pid")
    except OSError:
        pass
    return {k: v for k, v in out.items() if v}


def holder_is_gone(holder: dict) -> bool:
    """Whether the holder's process certainly no longer runs: only decidable for a holder on
    this host, in this pid namespace (or on a previous boot of this host): its pid is free, or
    taken by a process that started at another time. Anything else is left to the TTL."""
    if holder.get("unreadable") or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    me = _this_process()
    if not me.get("boot_id") or not holder.get("boot_id"):
        return False
    if holder["boot_id"] != me["boot_id"]:
        return True  # this machine has restarted since
    if not me.get("pid_ns") or holder.get("pid_ns") != me["pid_ns"]:
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    started = _start_ticks(holder["pid"])
    return bool(started and holder.get("pid_start") and started != holder["pid_start"])


def lock_uri(folder: str) -> str:
    """The lease object of `folder`: `<folder>/.lock.json`, local paths made absolute and
    resolved (so `runs/x`, `./runs/x` and a symlink to it share one lease)."""
    if is_remote(folder):
        return f"{folder.rstrip('/')}/{LOCK}"
    return str(Path(os.path.realpath(folder.removeprefix("file://"))) / LOCK)


# --------------------------------------------------------------------------- storage

class _Store(ABC):
    """Atomic create / compare-and-swap / delete of one small JSON object."""

    @abstractmethod
    def read(self) -> tuple[dict | None, Any]:
        """(the lease, a version tag for `swap`), or (None, None) when there is none."""

    @abstractmethod
    def create(self, body: dict) -> Any:
        """Create the object if absent; its version tag, or None if it exists."""

    @abstractmethod
    def swap(self, expect: Callable[[dict | None], bool], body: dict) -> Any:
        """Replace the object with `body` if `expect(current)`, atomically; the new version tag,
        or None if `expect` said no or the object changed meanwhile."""

    @abstractmethod
    def delete_if(self, expect: Callable[[dict | None], bool]) -> bool:
        """Remove the object if `expect(current)`; whether it was removed."""


class _FsStore(_Store):
    """A lease object on an fsspec file system (object storage)."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path

    def delete_if(self, expect):
        """Read, then delete if still expected: between the two the lease could only change
        hands if it had gone stale."""
        current, _ = self.read()
        if current is None or not expect(current):
            return False
        self.fs.rm_file(self.path)
        return True


def _encode(body: dict) -> bytes:
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def _decode(data: bytes, age_s: float) -> dict:
    try:
        out = json.loads(data.decode("utf-8"))
        if isinstance(out, dict) and out.get("token"):
            return out
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    return {"unreadable": True, "age_s": age_s}


class _LocalStore(_Store):
    def __init__(self, path: str):
        self.path = path
        self.mutex = path + ".mutex"

    def read(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
                age = time.time() - os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None, None
        body = _decode(data, age)
        return body, body.get("token")

    def _write_new(self, target: str, body: dict) -> bool:
        """Create `target` with `body`, failing if it exists; readers never see it half written."""
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:12]}"
        with open(tmp, "wb") as f:
            f.write(_encode(body))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        except OSError as e:  # no hard links here (some FUSE / network filesystems): O_EXCL
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
            try:
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(_encode(body))
                f.flush()
                os.fsync(f.fileno())
            return True
        finally:
            os.unlink(tmp)

    def create(self, body):
        return body["token"] if self._write_new(self.path, body) else None

    @contextmanager
    def _mutex(self) -> Iterator[None]:
        me = {"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname()}
        deadline = time.monotonic() + 2 * MUTEX_STALE_S
        while not self._write_new(self.mutex, me):
            try:
                if time.time() - os.stat(self.mutex).st_mtime > MUTEX_STALE_S:
                    log.warning("lease: removing %s, left by a process killed while it changed the lease", self.mutex)
                    os.unlink(self.mutex)
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.mutex}: held for over {2 * MUTEX_STALE_S:.0f} s")
            time.sleep(0.01)
        try:
            yield
        finally:
            try:
                os.unlink(self.mutex)
            except FileNotFoundError:
                pass

    def swap(self, expect, body):
        with self._mutex():
            current, _ = self.read()
            if not expect(current):
                return None
            tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:12]}"
            with open(tmp, "wb") as f:
                f.write(_encode(body))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            return body["token"]

    def delete_if(self, expect):
        with self._mutex():
            current, _ = self.read()
            if current is None or not expect(current):
                return False
            os.unlink(self.path)
            return True


def _lost_race(e: OSError) -> bool:
    """Whether S3 refused a conditional write because another writer got there first: 412
    `PreconditionFailed` (the object exists, or changed since it was read) or 409
    `ConditionalRequestConflict` (another conditional write of the object was in flight)."""
    resp = getattr(e.__cause__, "response", None) or {}
    code = str((resp.get("Error") or {}).get("Code", ""))
    status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
        return True
    text = str(e).lower()
    return "precondition" in text or "conditionalrequestconflict" in text or "conflicting conditional" in text


class _S3Store(_FsStore):
    def __init__(self, fs, path: str):
        super().__init__(fs, path)
        self.bucket, self.key, _ = fs.split_path(path)

    def read(self):
        from fsspec.asyn import sync

        async def get():
            try:
                resp = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            except FileNotFoundError:
                return None, None, 0.0
            try:
                data = await resp["Body"].read()
            finally:
                resp["Body"].close()
            modified = resp.get("LastModified")
            age = time.time() - modified.timestamp() if modified else 0.0
            return data, resp["ETag"], age

        data, etag, age = sync(self.fs.loop, get)
        if data is None:
            return None, None
        return _decode(data, age), etag

    def create(self, body):
        try:
            resp = self.fs.pipe_file(self.path, _encode(body), mode="create")
        except FileExistsError:
            return None
        except OSError as e:  # a 412 that s3fs did not map to FileExistsError, or a 409
            if _lost_race(e):
                return None
            raise
        current, etag = self.read()  # a store that ignored If-None-Match shows another run's token here
        if current is None or current.get("token") != body["token"]:
            return None
        return (resp or {}).get("ETag") or etag

    def swap(self, expect, body):
        current, etag = self.read()
        if not expect(current):
            return None
        try:
            if current is None:
                resp = self.fs.pipe_file(self.path, _encode(body), mode="create")
            else:
                resp = self.fs.pipe_file(self.path, _encode(body), IfMatch=etag)
        except (FileExistsError, FileNotFoundError):
            return None
        except OSError as e:
            if _lost_race(e) or getattr(e, "errno", None) == errno.EINVAL:
                return None  # changed since it was read, or being changed: another run refreshed or took it
            raise
        return (resp or {}).get("ETag") or True


class _SettleStore(_FsStore):
    """Storage without exclusive create or conditional writes: write, wait, read back."""

    SETTLE_S = 1.0

    def read(self):
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        body = _decode(data, 0.0)
        return body, body.get("token")

    def _write_and_verify(self, body):
        self.fs.pipe_file(self.path, _encode(body))
        time.sleep(self.SETTLE_S)
        current, _ = self.read()
        return body["token"] if current and current.get("token") == body["token"] else None

    def create(self, body):
        if self.read()[0] is not None:
            return None
        return self._write_and_verify(body)

    def swap(self, expect, body):
        current, _ = self.read()
        return self._write_and_verify(body) if expect(current) else None


def _store(uri: str) -> _Store:
    fs, path = get_fs(uri)
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & {"file", "local"}:
        return _LocalStore(path)
    if protocols & {"s3", "s3a"}:
        return _S3Store(fs, path)
    return _SettleStore(fs, path)


# --------------------------------------------------------------------------- the lease

def _flow_run_from_env() -> dict:
    """The Prefect flow run this process executes, as Prefect's runners announce it (no Prefect import here)."""
    run = os.environ.get("PREFECT__FLOW_RUN_ID")
    return {"flow_run": run} if run else {}


class Lease:
    """A lease on one folder, held from `acquire` to `release`, refreshed in a background thread."""

    def __init__(self, folder: str, *, ttl_s: float = 300.0, heartbeat_s: float | None = None,
                 owner: dict | None = None, purpose: str = "", what: str | None = None, related: bool = True):
        if ttl_s <= 0:
            raise ValueError(f"lease TTL must be positive, got {ttl_s}")
        self.folder = folder.rstrip("/") if is_remote(folder) else folder
        self.uri = lock_uri(folder)
        self.what = what or f"run folder {redact_uri(folder)}"
        self.ttl_s = float(ttl_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else self.ttl_s / 5
        if self.heartbeat_s >= self.ttl_s / 2:
            raise ValueError(f"lease heartbeat ({self.heartbeat_s} s) must be under half the TTL ({self.ttl_s} s): "
                             f"one missed beat must not make a live lease stale")
        self.related = related
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self.body = {"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                     **_flow_run_from_env(), **{k: v for k, v in (owner or {}).items() if v},
                     "purpose": purpose, "folder": redact_uri(self.folder), "started": _utc(self.started),
                     "ttl_s": self.ttl_s, **_this_process()}
        self.store = _store(self.uri)
        self.lost: dict | None = None
        self.beat_unix = 0.0  # when this run last wrote its lease (acquired or refreshed)
        self._stop = threading.Event()
        self._io = threading.Lock()  # a heartbeat's write and the release's delete never overlap
        self._thread: threading.Thread | None = None

    def _fresh(self) -> dict:
        now = time.time()
        return {**self.body, "heartbeat": _utc(now), "heartbeat_unix": now}

    def _mine(self, current: dict | None) -> bool:
        return current is not None and current.get("token") == self.token

    def acquire(self, wait_s: float = 0.0, poll_s: float = 1.0) -> "Lease":
        start = time.monotonic()
        while True:
            self.beat_unix = time.time()
            if self.store.create(self._fresh()) is not None:
                break
            current, _ = self.store.read()
            if current is None:
                continue  # released between our create and read: try again
            gone = holder_is_gone(current)
            if gone or is_stale(current, default_ttl=self.ttl_s):
                self.beat_unix = time.time()
                taken = self.store.swap(lambda cur, seen=current: cur is not None and
                                        cur.get("token") == seen.get("token") and
                                        (holder_is_gone(cur) or is_stale(cur, default_ttl=self.ttl_s)),
                                        self._fresh())
                if taken is not None:
                    log.warning("lease: took over the stale lease of %s (%s); %s", self.what, describe(current),
                                "its process is gone (this host)" if gone else
                                f"it had no heartbeat for over {current.get('ttl_s') or self.ttl_s:.0f} s")
                    break
                continue
            waited = time.monotonic() - start
            if waited >= wait_s:
                raise LeaseHeldError(self.what, self.uri, current, waited if wait_s else 0.0)
            time.sleep(min(poll_s, max(0.05, wait_s - waited)))
        # a lease of another run on a folder above or just below this one covers it too
        if self.related:
            try:
                other = self._related_holder()
            except BaseException:  # storage unreadable (os.scandir, fs.ls, S3): no heartbeat runs, so not kept
                try:
                    self.store.delete_if(self._mine)
                except Exception as e:
                    log.warning("lease: could not remove %s after a failed check of the folders around it (%s); "
                                "it goes stale %.0f s after it was written", redact_uri(self.uri), e, self.ttl_s)
                raise
            if other is not None:
                self.store.delete_if(self._mine)
                uri, holder = other
                folder = redact_uri(uri.rsplit("/", 1)[0])
                where = "which holds" if self.uri.startswith(uri.rsplit("/", 1)[0] + "/") else "inside"
                raise LeaseHeldError(f"{folder} ({where} {self.what})", uri, holder)
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat {self.what}", daemon=True)
        self._thread.start()
        log.info("lease: holding %s (%s)", self.what, redact_uri(self.uri))
        return self

    def _related_holder(self) -> tuple[str, dict] | None:
        """A live lease of another holder on a folder above this one or directly inside it (one
        of this run's own would have let `hold` through before asking)."""
        for uri in [*self._ancestor_locks(), *self._child_locks()]:
            try:
                current, _ = _store(uri).read()
            except PermissionError:  # a key allowed only part of the bucket: no lease of ours can be there
                continue
            if (current is not None and current.get("token") != self.token
                    and not is_stale(current, default_ttl=self.ttl_s) and not holder_is_gone(current)):
                return uri, current
        return None

    def _ancestor_locks(self) -> list[str]:
        if not is_remote(self.folder):
            folder = Path(self.uri).parent
            return [str(p / LOCK) for p in folder.parents]
        scheme, _, rest = self.folder.partition("://")
        parts = rest.split("/")
        return [f"{scheme}://{'/'.join(parts[:i])}/{LOCK}" for i in range(len(parts) - 1, 0, -1)]

    def _child_locks(self) -> list[str]:
        if not is_remote(self.folder):
            folder = Path(self.uri).parent
            try:
                return [str(Path(e.path) / LOCK) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                return []
        fs, path = get_fs(self.folder)
        try:
            entries = fs.ls(path, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        scheme = self.folder.partition("://")[0]
        return [f"{scheme}://{e['name'].rstrip('/')}/{LOCK}" for e in entries if e.get("type") == "directory"]

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._io:
                if self._stop.is_set():  # released meanwhile: a write now would recreate the lease
                    return
                try:
                    fresh = self._fresh()
                    if self.store.swap(self._mine, fresh) is not None:
                        self.beat_unix = fresh["heartbeat_unix"]
                        continue
                    current, _ = self.store.read()
                    if self._mine(current):  # the write failed for another reason: try again at the next beat
                        log.warning("lease: heartbeat of %s was not written; retrying", self.what)
                        continue
                    self.lost = current or {"host": "?", "pid": "?", "purpose": "nobody (the lease was deleted)"}
                    log.error("lease: %s was taken over by another run (%s) while this run held it: its heartbeat "
                              "had stopped for over %.0f s (a paused process?). This run stops at its next commit "
                              "point", self.what, describe(self.lost), self.ttl_s)
                    return
                except Exception as e:  # storage unreachable for a moment: try again at the next beat
                    log.warning("lease: heartbeat of %s failed (%s); retrying in %.0f s", self.what, e,
                                self.heartbeat_s)

    def _lost_error(self, before: str = "") -> LeaseLostError:
        stop = f"; stopped before {before}" if before else ""
        return LeaseLostError(f"{self.what}: this run's lease was taken over by another run ({describe(self.lost or {})})"
                              f" after this run sent no heartbeat for over {self.ttl_s:.0f} s{stop}; outputs of this "
                              f"run in {redact_uri(self.folder)} may have been changed by it")

    def check(self, before: str = "") -> None:
        """Raise `LeaseLostError` (naming the new holder) if another run took this lease over:
        as the heartbeat found, or, when the heartbeat is late (this process was paused, and
        its heartbeat thread has not run yet), as the lease reads now."""
        if self.lost is None and self.beat_unix and time.time() - self.beat_unix > self.ttl_s / 2:
            try:
                current, _ = self.store.read()
            except Exception as e:  # unreadable for a moment: the heartbeat decides
                log.warning("lease: could not read %s to check it (%s)", redact_uri(self.uri), e)
            else:
                if not self._mine(current):
                    self.lost = current or {"host": "?", "pid": "?", "purpose": "nobody (the lease was deleted)"}
        if self.lost is not None:
            raise self._lost_error(before)

    RELEASE_WAIT_S = 60.0  # for a heartbeat write in flight

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this run's. Raises
        `LeaseLostError` if it was taken over meanwhile."""
        self._stop.set()
        if not self._io.acquire(timeout=self.RELEASE_WAIT_S):  # a heartbeat write hangs: removing now could race it
            log.warning("lease: could not remove %s (a heartbeat write is still in flight); it goes stale %.0f s "
                        "after its last heartbeat", redact_uri(self.uri), self.ttl_s)
            return
        try:  # the heartbeat cannot write from here on: it finds _stop set under _io
            if self.lost is None:
                try:
                    if self.store.delete_if(self._mine):
                        log.info("lease: released %s", self.what)
                        return
                except Exception as e:
                    log.warning("lease: could not remove %s (%s); it goes stale %.0f s after its last heartbeat",
                                redact_uri(self.uri), e, self.ttl_s)
                    return
                self.lost = self.store.read()[0] or {"purpose": "nobody (the lease was deleted)"}
        finally:
            self._io.release()
            if self._thread is not None:
                self._thread.join(timeout=5)
        raise self._lost_error()


def _covered(uri: str, related: bool) -> bool:
    """Whether the current run holds the lease `uri` (or, for `related` leases, one on a folder above it)."""
    held = [lease.uri for lease in _held.get()]
    if uri in held:
        return True
    if not related:
        return False
    folder = uri.rsplit("/", 1)[0]
    return any(folder.startswith(h.rsplit("/", 1)[0] + "/") for h in held)


@contextmanager
def hold(folder: str, *, ttl_s: float = 300.0, heartbeat_s: float | None = None, wait_s: float = 0.0,
         owner: dict | None = None, purpose: str = "", what: str | None = None,
         related: bool = True) -> Iterator[Lease | None]:
    """Hold the lease of `folder` for the block (see the module docstring). Yields the `Lease`,
    or None when the current run holds it already (a subflow, a stage inside a run)."""
    uri = lock_uri(folder)
    if _covered(uri, related):
        yield None
        return
    lease = Lease(folder, ttl_s=ttl_s, heartbeat_s=heartbeat_s, owner=owner, purpose=purpose, what=what,
                  related=related).acquire(wait_s)
    token = _held.set((*_held.get(), lease))
    try:
        yield lease
    except BaseException as error:
        _held.reset(token)
        try:
            lease.release()
        except LeaseLostError as e:
            if not isinstance(error, LeaseLostError):  # else said already
                log.error("%s", e)
        raise
    _held.reset(token)
    lease.release()


def check_leases(before: str = "") -> None:
    """Raise `LeaseLostError`, naming the new holder, if a lease the current run holds was taken
    over by another run (see `Lease.check`). Called at the commit points (before each stage of
    a flow, before a corpus manifest is written, before `storage.writable_dir` switches a
    folder in), so a run that lost its folder stops writing into it; `before` says what it
    would have done."""
    for lease in _held.get():
        lease.check(before)


def lease_settings(lk=None) -> dict:
    """`hold`'s timing arguments from a `LockConfig` (`cfg.lock`; its defaults when None)."""
    if lk is None:
        from .config import LockConfig

        lk = LockConfig()
    return {"ttl_s": lk.ttl_seconds, "heartbeat_s": lk.heartbeat_seconds, "wait_s": lk.wait_seconds}


def hold_run(cfg, folder: str | None = None, owner: dict | None = None, purpose: str = ""):
    """`hold` on a run's folder (`cfg.run_dir`, or `folder`) with the run's lease settings (`cfg.lock`)."""
    return hold(folder or cfg.run_dir, **lease_settings(cfg.lock), owner=owner,
                purpose=purpose or f"run {cfg.run_name}")


def slug(name: str) -> str:
    """A path segment for any name (a registered model's): safe characters, and a hash of the
    name so that two names cannot share a segment."""
    import hashlib
    import re

    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
