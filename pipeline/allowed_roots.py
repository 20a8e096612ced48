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

`check_run` (every flow at its start, every CLI command that runs work) applies them to every
location that the parts of a run it starts read and its config names, before any work: the corpus
inputs (config roots and the worker's), and under the worker's roots alone the model and data
folders (`run_inputs`: language-ID models, translation models, pretrained model and tokenizer,
fine-tuning's labelled files); a local folder or glob there is listed and every entry in it
checked, resolved, so a symlink inside an allowed folder cannot lead out of it. Language-ID
training checks its inputs the same way (pipeline/corpus/langid_train.py). Not input locations,
and not checked: the run's own folders (`output_dir`, `ray.storage_path`, caches and spill
folders), which it writes and reads back.
`BABELFORGE_ALLOWED_RAY_ADDRESSES` (same syntax) does the same for the Ray cluster a run joins as
a driver (`ray.address` / `RAY_ADDRESS`, `check_ray_address`): set, an address must be one of it.
What none of this covers: a flow run's job variables (a process work pool lets a run set its
environment, so these variables too, and its command), which the work pool decides.
"""

from __future__ import annotations

import json
import os
from urllib.parse import unquote, urlsplit

from .redact import redact_uri

ENV = "BABELFORGE_ALLOWED_ROOTS"
RAY_ENV = "BABELFORGE_ALLOWED_RAY_ADDRESSES"
GLOB = "*?["
# names of the language-ID models shipped with babelforge (pipeline/corpus/langid.py `resolve_path`):
# files of the installation, not locations a config chooses
SHIPPED_LID_MODELS = ("lid.176", "babelforge", "heliport")


class InputNotAllowedError(ValueError):
    """An input outside the allowed roots (a bad config: never retried)."""


class RayAddressNotAllowedError(ValueError):
    """A Ray cluster address the worker may not connect to (a bad config: never retried)."""


def _env_list(name: str, what: str) -> list[str]:
    """An environment variable's list: a JSON list of strings, or comma-separated; [] when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputNotAllowedError(f"{name} is not a JSON list of {what}: {e}") from e
        if not isinstance(items, list) or not all(isinstance(r, str) for r in items):
            raise InputNotAllowedError(f"{name} must be a list of strings ({what})")
        return [r.strip() for r in items if r.strip()]
    return [r.strip() for r in raw.split(",") if r.strip()]


def operator_roots() -> list[str]:
    """The worker's own roots (`BABELFORGE_ALLOWED_ROOTS`): a JSON list, or comma-separated."""
    return _env_list(ENV, "paths / URI prefixes")


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


def local_entries(uri: str) -> list[str]:
    """What a reader of the local path, folder or glob `uri` may open, as named (unresolved): the
    glob's matches (hidden names too) and every file and folder under a folder, symlinks listed
    and not followed (`check` resolves each). [] for a URI, or for a path that does not exist
    (its reader fails on it)."""
    import glob

    if "://" in uri and not uri.startswith("file://"):
        return []
    path = uri.removeprefix("file://")
    found = glob.glob(path, recursive=True, include_hidden=True) if any(c in path for c in GLOB) else [path]
    out: list[str] = []
    for top in found:
        if not os.path.lexists(top):
            continue
        out.append(top)
        if os.path.isdir(top):
            for folder, dirs, files in os.walk(top):  # a symlinked folder is listed, not entered
                out += [os.path.join(folder, n) for n in (*dirs, *files)]
    return out


# what each part of a run reads, besides the run's own folders: `check_run(cfg, reads=...)`
READS = ("corpus", "pretrain", "translate", "finetune", "evaluate")


def run_inputs(cfg, reads=READS) -> list[tuple[str, str]]:
    """(field, location) of every model and data location that the parts `reads` of a run of
    `cfg` (a PipelineConfig) read, besides the corpus inputs: corpus: language-ID models (not the
    shipped ones, named) and translation models; pretrain: the pretrained model and tokenizer to
    start from; translate (translate-train): the labelled training file and the translation
    models; finetune: the labelled training, dev and extra files (and what translate reads, when
    finetune.translate_train / paraphrase is on); evaluate: the labelled test file."""
    reads = set(reads)
    f = cfg.finetune
    if "finetune" in reads and (f.translate_train or f.paraphrase):
        reads.add("translate")
    out: list[tuple[str, str]] = []
    if "corpus" in reads:
        out += [(f"corpus.langid.models[{i}].path", m.path) for i, m in enumerate(cfg.corpus.langid.models)
                if m.path not in SHIPPED_LID_MODELS]
        if cfg.corpus.langid.combiner not in ("weighted", "shipped"):
            out.append(("corpus.langid.combiner", cfg.corpus.langid.combiner))
    if reads & {"corpus", "translate"}:
        for i, m in enumerate(cfg.corpus.augment.models):
            out.append((f"corpus.augment.models[{i}].model_dir", m.model_dir))
            if m.reverse_model_dir:
                out.append((f"corpus.augment.models[{i}].reverse_model_dir", m.reverse_model_dir))
    if "pretrain" in reads:
        if cfg.model.pretrained_dir:
            out.append(("model.pretrained_dir", cfg.model.pretrained_dir))
        if cfg.tokenizer.pretrained_dir and cfg.tokenizer.pretrained_dir != cfg.model.pretrained_dir:
            out.append(("tokenizer.pretrained_dir", cfg.tokenizer.pretrained_dir))  # else the model's own
    if reads & {"translate", "finetune"}:
        out.append(("finetune.train_path", f.train_path))
    if "finetune" in reads:
        if f.dev_path:
            out.append(("finetune.dev_path", f.dev_path))
        out += [(f"finetune.extra_train_paths[{i}]", p) for i, p in enumerate(f.extra_train_paths)]
    if "evaluate" in reads:
        out.append(("finetune.test_path", f.test_path))
    return list(dict.fromkeys(out))


def check_locations(locations: list[tuple[str, str]]) -> None:
    """Refuse the first (field, location) outside the worker's roots (`BABELFORGE_ALLOWED_ROOTS`),
    a local folder or glob by every entry it holds (resolved); nothing when they are unset."""
    if not operator_roots():
        return
    for field, uri in locations:
        check([uri], [], field)
        check(local_entries(uri), [], field)


def check_ray_address(address: str | None, field: str = "ray.address") -> None:
    """Refuse a Ray cluster address not listed in `BABELFORGE_ALLOWED_RAY_ADDRESSES` (when set):
    a driver connected to a cluster runs what it is sent (pickled functions and objects), and the
    cluster gets the data and keys the driver hands it. No address (a local Ray) is always allowed."""
    allowed = _env_list(RAY_ENV, "Ray cluster addresses")
    if not allowed or not address or address.strip() in allowed:
        return
    raise RayAddressNotAllowedError(
        f"{field}: Ray cluster address {redact_uri(address.strip())} is not one the worker may connect to "
        f"({RAY_ENV}: {[redact_uri(a) for a in allowed]}); leave it unset, or ask whoever runs the worker to "
        f"allow it")


def check_run(cfg, corpus_inputs: list[str] | None = None, reads=READS) -> None:
    """Refuse, before any work, a run config (a PipelineConfig) that names a location the parts
    `reads` of the run read outside the allowed roots, naming the field and the location: the
    corpus inputs (corpus: `corpus_inputs`, default `corpus.ingest.inputs`, and the parallel
    inputs) under both the config's `corpus.ingest.allowed_roots` and the worker's roots (the
    corpus phase checks again what their globs and folders expand to), every other location of
    `run_inputs` under the worker's roots; and a Ray cluster address outside
    `BABELFORGE_ALLOWED_RAY_ADDRESSES` (nothing for a part that reads nothing: `compare`, `promote`)."""
    if not reads:
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    check_ray_address(address, "ray.address" if cfg.ray.address else "RAY_ADDRESS")
    if "corpus" in reads:
        ingest = cfg.corpus.ingest
        check(list(ingest.inputs if corpus_inputs is None else corpus_inputs), ingest.allowed_roots)
        for i, p in enumerate(cfg.corpus.parallel.inputs):
            check([p.path], ingest.allowed_roots, f"corpus.parallel.inputs[{i}].path")
    check_locations(run_inputs(cfg, reads))
