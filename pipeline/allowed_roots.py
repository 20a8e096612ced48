"""Where inputs may be read from: `corpus.ingest.allowed_roots`, and `BABELFORGE_ALLOWED_ROOTS`.

A Prefect deployment's run can be started from the UI with any parameters ("Custom run"): without
a restriction, its user can point `corpus.ingest.inputs` at any file the worker can read (its
keys, another project's data) and find the text in the run's shards. `check` refuses an input
outside the allowed roots before anything is read:
- a local path (or `file://`) is resolved (`os.path.realpath`: `..` and symlinks followed) and
  must be a root or lie inside one, compared on whole path components;
- a URI must have a root's scheme and bucket / host, and its path must start with the root's path
  on whole `/` segments (`s3://data/in` allows `s3://data/in/x`, not `s3://data/inbox`); a URI
  with `.` or `..` segments is refused outright (some stores and proxies resolve them, S3 does
  not: what it names is ambiguous). Credentials and query strings play no part.
A glob is checked on its fixed part before it is listed, and every file it (or a folder) expands
to is checked again, so a symlink inside an allowed folder cannot lead out of it.

Two sources, both enforced: the run config's `corpus.ingest.allowed_roots` (the deployments set
it; empty: no restriction, for local use), and the worker's environment variable
`BABELFORGE_ALLOWED_ROOTS` (a JSON list, or comma-separated), set by whoever runs the worker,
which a flow run's parameters cannot change: an input must lie under a root of each that is set.
"""

from __future__ import annotations

import json
import os
from urllib.parse import unquote, urlsplit

from .redact import redact_uri

ENV = "BABELFORGE_ALLOWED_ROOTS"
GLOB = "*?["


class InputNotAllowedError(ValueError):
    """An input outside the allowed roots (a bad config: never retried)."""


def operator_roots() -> list[str]:
    """The worker's own roots (`BABELFORGE_ALLOWED_ROOTS`): a JSON list, or comma-separated."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            roots = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputNotAllowedError(f"{ENV} is not a JSON list of paths / URI prefixes: {e}") from e
        if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
            raise InputNotAllowedError(f"{ENV} must be a list of strings (paths / URI prefixes)")
        return [r for r in roots if r.strip()]
    return [r.strip() for r in raw.split(",") if r.strip()]


def _fixed_part(pattern: str) -> str:
    """The part of a glob before its first wildcard, cut back to a whole path segment."""
    cut = min((i for i in (pattern.find(c) for c in GLOB) if i >= 0), default=-1)
    if cut < 0:
        return pattern
    head = pattern[:cut]
    return head[:head.rfind("/") + 1] if "/" in head else "."


def normalize(uri: str) -> tuple[str, str, tuple[str, ...]]:
    """(scheme, bucket or host, path segments) of a path or URI, comparable with a root's:
    local paths resolved (`file`, "", components of the real path)."""
    if "://" not in uri or uri.startswith("file://"):
        real = os.path.realpath(uri.removeprefix("file://") or ".")
        return "file", "", tuple(p for p in real.split(os.sep) if p)
    parts = urlsplit(uri)
    segments = [s for s in parts.path.split("/") if s]
    if any(unquote(s) in (".", "..") for s in segments):
        raise InputNotAllowedError(f"{redact_uri(uri)}: a URI with '.' or '..' path segments is refused when input "
                                   f"locations are restricted (what it names depends on the store); name the object "
                                   f"directly")
    host = parts.netloc.rpartition("@")[2].lower()  # credentials play no part
    return parts.scheme.lower(), host, tuple(segments)


def _under(path: tuple[str, str, tuple[str, ...]], root: tuple[str, str, tuple[str, ...]]) -> bool:
    return path[:2] == root[:2] and path[2][:len(root[2])] == root[2]


def _show(n: tuple[str, str, tuple[str, ...]]) -> str:
    return "/" + "/".join(n[2]) if n[0] == "file" else f"{n[0]}://{n[1]}/{'/'.join(n[2])}"


def check(uris: list[str], roots: list[str], field: str = "corpus.ingest.inputs") -> None:
    """Raise `InputNotAllowedError`, naming the input, where it resolves to and the roots, for
    the first of `uris` (paths, globs, URIs) outside the allowed roots (`roots` from the config,
    and `BABELFORGE_ALLOWED_ROOTS`); nothing when no roots are set."""
    sources = [(list(roots), "corpus.ingest.allowed_roots"), (operator_roots(), f"the worker's {ENV}")]
    sources = [(r, name) for r, name in sources if r]
    if not sources:
        return
    resolved = [([normalize(r) for r in rs], rs, name) for rs, name in sources]
    for uri in uris:
        where = normalize(_fixed_part(uri))
        for norm_roots, raw, name in resolved:
            if not any(_under(where, r) for r in norm_roots):
                shown = _show(where)
                resolves = f" (resolves to {shown})" if where[0] == "file" and shown != uri else ""
                raise InputNotAllowedError(
                    f"{field}: input {redact_uri(uri)}{resolves} is outside the allowed input locations "
                    f"{[redact_uri(r) for r in raw]} ({name}); move the data under one of them, or ask whoever "
                    f"runs the deployment to allow its location")
