"""Storage is a URI: local paths, file:// and s3:// through fsspec, with atomic writes.

A write goes to a temporary name beside the target and is then moved into place, so a reader
never sees half a file; the manifest, written last, is the commit point of a corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .redact import redact_uri


COMPLETE = "_COMPLETE.json"  # a folder's file list (name, bytes, sha256), written last: the folder is whole
WRITING = "_WRITING"          # present while a remote folder is being replaced: the folder is not to be used


def get_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of a URI and the path inside it."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def absolute(uri: str) -> str:
    """Local paths made absolute (Ray workers run in another directory); URIs unchanged."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    return str(Path(uri.removeprefix("file://")).resolve())


def expand(patterns: list[str]) -> list[str]:
    """Expand paths, directories and globs to a sorted, de-duplicated list of file URIs."""
    out: list[str] = []
    for pattern in patterns:
        fs, path = get_fs(pattern)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if protocol in ("http", "https"):  # a URL is one file (fsspec's path is the URL; its '?' starts a query)
            if not fs.exists(path):
                raise FileNotFoundError(f"input not found: {redact_uri(pattern)}")
            out.append(path)
            continue
        if any(ch in path for ch in "*?["):
            matches = fs.glob(path)
        elif fs.isdir(path) and (fs.exists(f"{path}/state.json") or fs.exists(f"{path}/dataset_dict.json")):
            out.append(prefix + path)  # a saved Hugging Face dataset is one input
            continue
        elif fs.isdir(path):
            matches = [p for p in fs.find(path)]
        elif fs.exists(path):
            matches = [path]
        else:
            raise FileNotFoundError(f"input not found: {redact_uri(pattern)}")
        files = sorted(p for p in matches if fs.isfile(p))
        if not files:
            raise FileNotFoundError(f"no input files match: {redact_uri(pattern)}")
        out.extend(prefix + p for p in files)
    return sorted(dict.fromkeys(out))


@contextmanager
def atomic_open(uri: str, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside `uri`; on success move it into place, else remove it."""
    fs, path = get_fs(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with fs.open(tmp, mode) as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def write_json(uri: str, obj: Any) -> None:
    with atomic_open(uri, "wb") as f:
        f.write((json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode())


def read_json(uri: str) -> Any:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return fs.exists(path)


def remove(uri: str) -> None:
    fs, path = get_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write_parquet(uri: str, table: pa.Table, compression: str = "zstd", row_group_size: int | None = None) -> dict:
    """Write a Parquet file atomically; return its rows, bytes and sha256."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, row_group_size=row_group_size)
    data = sink.getvalue().to_pybytes()
    with atomic_open(uri, "wb") as f:
        f.write(data)
    return {"rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def sha256_file(uri: str) -> str:
    fs, path = get_fs(uri)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(uri: str, skip=lambda name: False) -> str:
    """One sha256 over a folder's files (relative names and contents, in name order), leaving
    out those whose relative name `skip` accepts, and the completion markers of `writable_dir`
    (a function of the files): the identity of a saved tokenizer or model."""
    fs, path = get_fs(uri)
    h = hashlib.sha256()
    root = path.rstrip("/")
    for f in sorted(fs.find(root)):
        if skip(f[len(root):].lstrip("/")) or f[len(root):].lstrip("/") in (COMPLETE, WRITING):
            continue
        h.update(f[len(root):].lstrip("/").encode() + b"\0")
        with fs.open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


MODEL_RECORDS = ("trainer_meta.json", "README.md")  # written beside a model, not the model


def model_sha256(uri: str) -> str:
    """The identity of a saved model: sha256 of its weights, config and tokenizer files, leaving
    out what is written beside them (its checkpoint's `trainer_meta.json`, with the metrics of
    the step that saved it; the model card and its charts). A rerun that hands a finished
    checkpoint on unchanged exports the same identity."""
    return sha256_dir(uri, skip=lambda name: name in MODEL_RECORDS or name.endswith(".png"))


def local_dir(uri: str) -> str:
    """A local folder with the contents of folder `uri` (a tokenizer, a model): a local path
    as it is (absolute); a remote one downloaded once into the cache (`BABELFORGE_CACHE`, else
    ~/.cache/babelforge), keyed by the URI and its files' names, sizes and ETags or times, so a
    changed folder is fetched again. Any process on any node can call it: workers and Ray Data
    tasks read the run's tokenizer and models from s3:// this way."""
    if not is_remote(uri):
        require_whole(uri)
        return absolute(uri)
    fs, path = get_fs(uri)
    root = path.rstrip("/")
    found = fs.find(root, detail=True)
    if not found:
        raise FileNotFoundError(f"{uri}: no files")
    state, listed = _state(fs, root, {f[len(root):].lstrip("/"): d.get("size") for f, d in found.items()})
    if state == "partial":
        raise _incomplete(uri)
    listing = sorted((f, d.get("size"), str(d.get("ETag") or d.get("etag") or d.get("LastModified") or d.get("mtime")))
                     for f, d in found.items())
    key = hashlib.sha256(json.dumps([uri, listing], default=str).encode()).hexdigest()[:24]
    cache = Path(os.environ.get("BABELFORGE_CACHE", Path.home() / ".cache" / "babelforge"), "dirs", key)
    done = cache.with_name(f"{key}.complete")  # beside the copy, not in it
    if not done.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache.parent))
        try:
            for f, _, _ in listing:
                target = (tmp / f[len(root):].lstrip("/")).resolve()
                if not target.is_relative_to(tmp.resolve()):  # a key like a/../../x must not write outside
                    raise ValueError(f"{uri}: object {f!r} names a path outside its folder; refused")
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get(f, str(target))
            if listed is not None:  # the copy is what the writer listed, byte for byte
                got = _listing(tmp)
                wrong = [n for n, m in listed.items() if got.get(n, {}).get("sha256") != m["sha256"]]
                if wrong:
                    raise _incomplete(uri, f"; {wrong[:3]} differ from their listed sha256 (changed while read?)")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.replace(tmp, cache)
        except OSError:  # another process got there first: its copy is the same
            shutil.rmtree(tmp, ignore_errors=True)
        done.write_text(uri)
    return str(cache)


class IncompleteFolderError(FileNotFoundError):
    """A folder that a writer left half written (killed mid-upload): not to be trusted."""


def _listing(root: Path) -> dict[str, dict]:
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.name not in (COMPLETE, WRITING):
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out[f.relative_to(root).as_posix()] = {"bytes": f.stat().st_size, "sha256": h.hexdigest()}
    return out


def _state(fs, root: str, sizes: dict[str, int | None]) -> tuple[str, dict | None]:
    """(state, the file list of `_COMPLETE.json` or None) of a folder from one listing of it."""
    if WRITING in sizes:
        return "partial", None
    if COMPLETE not in sizes:
        return "unmarked", None
    with fs.open(f"{root}/{COMPLETE}", "rb") as f:
        listed = json.loads(f.read().decode("utf-8"))["files"]
    whole = all(sizes.get(name) == meta["bytes"] for name, meta in listed.items())
    return ("complete" if whole else "partial"), listed


def folder_state(uri: str) -> str:
    """'missing', 'partial' (a replacement was interrupted, or a file its `_COMPLETE.json` lists
    is missing or of another size), 'complete' (written whole by `writable_dir`) or 'unmarked'
    (a folder babelforge did not write, e.g. a downloaded pretrained model)."""
    fs, path = get_fs(uri)
    root = path.rstrip("/")
    if not fs.isdir(root):
        return "missing"
    sizes = {f[len(root):].lstrip("/"): d.get("size") for f, d in fs.find(root, detail=True).items()}
    return _state(fs, root, sizes)[0]


def _incomplete(uri: str, why: str = "") -> IncompleteFolderError:
    return IncompleteFolderError(
        f"{uri}: an earlier write of this folder did not finish (it holds {WRITING}, or files its {COMPLETE} "
        f"lists are missing{why}): rerun the stage that writes it, or delete the folder")


def require_whole(uri: str) -> None:
    """Raise `IncompleteFolderError` for a folder left half written."""
    if folder_state(uri) == "partial":
        raise _incomplete(uri)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextmanager
def writable_dir(uri: str) -> Iterator[str]:
    """A new local folder to write the contents of folder `uri` into (a tokenizer, a model),
    which replaces `uri` only once the block ends without an error, with `_COMPLETE.json`
    (every file's bytes and sha256) written into it. Locally: written beside `uri` under a
    temporary name, then switched in by rename, so `uri` is always the old folder or the new
    one, whole. On object storage (no rename of folders): `_WRITING` is put first, the old
    files removed, the new ones uploaded, `_COMPLETE.json` written last and `_WRITING` removed;
    a writer killed on the way leaves `_WRITING`, and readers (`local_dir`, `require_whole`)
    refuse the folder until a rerun replaces it. A run whose lease was taken over by another run
    (pipeline/lock.py) replaces nothing: `LeaseLostError`."""
    from .lock import check_leases  # here, not above: lock.py builds on this module

    if not is_remote(uri):
        target = Path(absolute(uri))
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
        tmp.mkdir()
        try:
            yield str(tmp)
            Path(tmp, COMPLETE).write_text(json.dumps({"files": _listing(tmp)}, indent=1, sort_keys=True))
            check_leases(f"replacing {redact_uri(uri)}")
            if target.exists() and _exchange(tmp, target):  # one step: readers see the old folder or the new
                shutil.rmtree(tmp, ignore_errors=True)  # (now the old one)
            else:  # two renames: for an instant there is no folder (a reader finds none, never half of one)
                old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
                if target.exists():
                    os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix="babelforge-out-") as d:
        yield d
        files = _listing(Path(d))
        fs, path = get_fs(uri)
        root = path.rstrip("/")
        check_leases(f"replacing {redact_uri(uri)}")
        fs.makedirs(root, exist_ok=True)
        fs.pipe_file(f"{root}/{WRITING}", b"")
        for f in fs.find(root):
            if f.rsplit("/", 1)[-1] != WRITING:
                fs.rm_file(f)
        for name in files:
            fs.put_file(str(Path(d, name)), f"{root}/{name}")
        stored = {f[len(root):].lstrip("/"): i.get("size") for f, i in fs.find(root, detail=True).items()}
        short = [n for n, m in files.items() if stored.get(n) != m["bytes"]]
        if short:
            raise OSError(f"{uri}: uploaded files {short[:5]} are not the size written; the folder stays marked "
                          f"{WRITING}")
        fs.pipe_file(f"{root}/{COMPLETE}", json.dumps({"files": files}, indent=1, sort_keys=True).encode())
        fs.rm_file(f"{root}/{WRITING}")


def put_local(local_path: str, uri: str) -> dict:
    """Move a finished local file to `uri` atomically (temporary name, then rename); return
    its bytes and sha256. Used by streaming writers, which write locally first."""
    h = hashlib.sha256()
    size = 0
    with open(local_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    fs, path = get_fs(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    fs.put_file(local_path, tmp)
    fs.mv(tmp, path)
    return {"bytes": size, "sha256": h.hexdigest()}
