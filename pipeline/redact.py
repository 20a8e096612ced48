"""Credentials out of everything babelforge writes: URIs with their secrets replaced by `***`.

A URI can carry a credential in two places: its userinfo (`https://user:password@host/...`,
`https://TOKEN@host/...`) and its query (a presigned URL's `X-Amz-Signature=` /
`X-Amz-Credential=` / `X-Amz-Security-Token=` (AWS SigV4), `Signature=` / `AWSAccessKeyId=`
(SigV2), `X-Goog-Signature=` / `GoogleAccessId=` (GCS), `sig=` (Azure SAS), `token=`,
`api_key=`, `password=`...). `redact_uri` replaces the userinfo with `***` and the value of
every such parameter with `***`, and keeps the rest (scheme, host, port, path, the other
parameters), so a redacted URI still says which object it is. `redact_text` does the same for
every URI (and every `?name=value` / `&name=value` pair) inside free text: log lines, error
messages, reject details. Both are linear in the length of their input.

What passes through them: the `source` column of documents and rejects, reject details, the
manifest's inputs, unit records, reports, log lines, MLflow params and results returned to
Prefect. Readers keep the real URI. `object_uri` names the object a URI points at whatever its
signature (work-unit keys); `redacted_errors` and `install_log_redaction` are the nets for
exceptions and log lines of libraries. Ground floor: no import from the rest of babelforge.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MASK = "***"

# query-parameter names (compared lower-case, without '-' and '_') whose value is a credential
_SECRET_NAMES = frozenset({
    "sig", "key", "pwd", "pass", "passwd", "password", "secret", "token", "auth", "authorization", "session",
    "apikey", "accesskey", "secretkey", "privatekey", "sharedkey", "subscriptionkey", "accountkey",
    "awsaccesskeyid", "googleaccessid", "signature", "credential", "credentials",
})
# ... and names containing one of these (x-amz-signature, x-goog-credential, x-amz-security-token,
# access_token, client_secret, sas_token, db_password...)
_SECRET_PARTS = ("signature", "credential", "token", "secret", "passw", "apikey", "accesskey", "privatekey")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter named `name` carries a credential (case-insensitive)."""
    n = name.lower().replace("-", "").replace("_", "")
    return n in _SECRET_NAMES or any(p in n for p in _SECRET_PARTS)


def _hides(name: str, value: str) -> bool:
    """Whether `name=value` is a credential to hide: a credential's name, a value not yet hidden
    (a redacted URI in a message, `...&sig=***:18: malformed JSON`, keeps what follows it)."""
    return bool(value) and not value.startswith(MASK) and is_secret_name(name)


def _redact_params(query: str) -> str:
    """`a=1&X-Amz-Signature=abc` -> `a=1&X-Amz-Signature=***` (separators & and ; kept)."""
    out = []
    for piece in re.split(r"([&;])", query):
        name, eq, value = piece.partition("=")
        out.append(f"{name}={MASK}" if eq and _hides(name, value) else piece)
    return "".join(out)


def _userinfo_end(rest: str) -> int:
    """Index of the '@' that ends the userinfo of `rest` (a URI after '://'), or -1.

    The authority ends at the first '/', '?' or '#'; its last '@' ends the userinfo. A password
    with an unescaped '/' (`u:pa/ss@host`, which parsers would split at the '/') still counts:
    `name:x...@` before any '/' of the name, unless x is a port (digits up to the '/')."""
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch, 0, end)
        if i >= 0:
            end = i
    at = rest.rfind("@", 0, end)
    if at >= 0:
        return at
    colon = rest.find(":", 0, end)
    if colon < 0 or end == len(rest):
        return -1
    at = rest.find("@", end)
    if at < 0:
        return -1
    stop = min((i for i in (rest.find(c, end) for c in "?#") if i >= 0), default=len(rest))
    if at > stop:
        return -1
    port = rest[colon + 1:end]
    return -1 if port.isdigit() or not port else at


def _split(uri) -> tuple[str, str] | None:
    """(`scheme://`, the rest) of a URI; None for anything else (a local path, not a string)."""
    if not isinstance(uri, str):
        return None
    sep = uri.find("://")
    if sep <= 0 or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", uri[:sep]):
        return None
    return uri[:sep + 3], uri[sep + 3:]


def redact_uri(uri: str) -> str:
    """`uri` with the credentials it carries replaced by `***`: userinfo
    (`https://***@host/path`) and the values of credential query parameters (presigned-URL
    signatures, access-key ids, tokens, keys, passwords; in the fragment too). Anything that is
    not a `scheme://` URI (a local path, `data/x.jsonl`) is returned unchanged."""
    split = _split(uri)
    if split is None:
        return uri
    head, rest = split
    at = _userinfo_end(rest)
    if at >= 0:
        rest = MASK + rest[at:]
    q, h = rest.find("?"), rest.find("#")
    if q < 0 and h < 0:
        return head + rest
    cut = min(i for i in (q, h) if i >= 0)
    path, tail = rest[:cut], rest[cut:]
    query, hashmark, fragment = tail.partition("#")
    if query.startswith("?"):
        query = "?" + _redact_params(query[1:])
    if hashmark and "=" in fragment:  # an OAuth-style fragment: #access_token=...
        fragment = _redact_params(fragment)
    return head + path + query + hashmark + fragment


# parameters of a signed URL that say how and until when it is signed, not which object it names
_SIGNING = frozenset({
    "xamzalgorithm", "xamzdate", "xamzexpires", "xamzsignedheaders", "expires",      # AWS SigV4 / SigV2
    "xgoogalgorithm", "xgoogdate", "xgoogexpires", "xgoogsignedheaders",             # GCS V4
})
# Azure SAS fields: signing parameters when the URL carries a SAS signature (`sig`)
_SAS = frozenset({"sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "sr", "si", "sdd", "skoid", "sktid", "skt",
                  "ske", "sks", "skv", "saoid", "suoid", "scid", "ses"})


def object_uri(uri: str) -> str:
    """The object a URI names, the same however it is signed or authenticated: no userinfo, and
    no credential or signing parameter (signatures, keys, tokens; signing dates, expiries and
    algorithms; an Azure SAS's fields). What keys the work units of an input, so a resume with
    a presigned URL signed again (another signature, date and expiry) finds them; other
    parameters (`versionId=3`) still tell objects apart. A local path is its own."""
    split = _split(uri)
    if split is None:
        return uri
    head, rest = split
    at = _userinfo_end(rest)
    if at >= 0:
        rest = rest[at + 1:]
    path, q, query = rest.partition("?")
    if not q:
        return head + rest
    query, hashmark, fragment = query.partition("#")
    pieces = [p for p in re.split(r"[&;]", query) if p]
    names = [p.partition("=")[0].lower().replace("-", "").replace("_", "") for p in pieces]
    sas = "sig" in names
    kept = [p for p, n in zip(pieces, names)
            if not (is_secret_name(n) or n in _SIGNING or (sas and n in _SAS))]
    return head + path + ("?" + "&".join(kept) if kept else "") + hashmark + fragment


# A URI in text: a scheme (bounded, so a long run of letters costs a bounded scan per position)
# then '://' and everything up to whitespace or a quote/bracket; or a `?name=value` / `&name=value`
# pair outside such a URI (a path without a scheme, a query printed on its own).
_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s'"<>`]+"""
                      r"""|(?<=[?&;])([A-Za-z0-9_.-]{1,64})=([^&;#\s'"<>`]*)""")


def _sub(m: re.Match) -> str:
    if m.group(1) is None:
        return redact_uri(m.group(0))
    return f"{m.group(1)}={MASK}" if _hides(m.group(1), m.group(2)) else m.group(0)


def redact_text(text: str) -> str:
    """`text` with every URI in it passed through `redact_uri`, and every `?name=value` /
    `&name=value` pair whose name is a credential's given the value `***`."""
    if not isinstance(text, str) or ("://" not in text and "=" not in text):
        return text
    return _IN_TEXT.sub(_sub, text)


def redact(obj: Any) -> Any:
    """A copy of `obj` (dicts, lists, tuples of JSON-like values) with `redact_text` applied to
    every string in it, keys included: a report, a manifest, a result returned to Prefect."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {redact(k): redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj


@contextmanager
def redacted_errors() -> Iterator[None]:
    """Inside the block, an exception whose message carries a credential (a library's error
    naming the presigned URL it failed on) is raised again as one of the same type (a
    RuntimeError where that type cannot be built from a message) with the message redacted,
    its chain cut (a printed chain would show the original). Prefect stores and logs the
    message of the exception a task raises: a task wraps its pipeline call in this."""
    try:
        yield
    except Exception as e:
        message = str(e)
        clean = redact_text(message)
        if clean == message:
            raise
        try:
            replacement = type(e)(clean)
        except Exception:  # noqa: BLE001 - a type whose constructor wants more than a message
            replacement = RuntimeError(f"{type(e).__name__}: {clean}")
        raise replacement.with_traceback(e.__traceback__) from None


class _RedactingRecords:
    """A log-record factory that redacts each record's message (and its traceback) as it is
    made, whatever logger or handler the record goes to (Prefect's API handler, the console,
    a file): the net under the redaction done where babelforge logs a URI, for the lines of
    libraries (an HTTP client naming the URL it failed on)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the handler's to report
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            clean = redact_text(text)
            if clean != text:
                record.exc_text = clean  # formatters use exc_text when set
        return record


def install_log_redaction() -> None:
    """Redact every log record of this process (`_RedactingRecords`); installing twice is one
    install. The entry points call it (the CLI, the Prefect flows)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecords):
        logging.setLogRecordFactory(_RedactingRecords(factory))


def has_credentials(uri: str) -> bool:
    """Whether `uri` carries a credential that `redact_uri` would hide."""
    return redact_uri(uri) != uri


def is_redacted(uri: str) -> bool:
    """Whether `uri` is a redacted one (a `***` where a credential was): such a URI was read
    back from an output and cannot be used to connect."""
    if not isinstance(uri, str) or MASK not in uri or "://" not in uri:
        return False
    rest = uri[uri.find("://") + 3:]
    return rest.startswith(MASK + "@") or f"={MASK}" in rest


def refuse_redacted(uri: str, what: str) -> None:
    """Raise a ValueError naming `what` when `uri` is a redacted URI (see `is_redacted`)."""
    if is_redacted(uri):
        raise ValueError(
            f"{what}: {uri} has its credential replaced by '{MASK}' (a redacted copy, e.g. a config read back from a "
            f"Prefect flow run's parameters or an MLflow run): credentials never travel in outputs; give the real "
            f"one where this process runs (an environment variable such as MLFLOW_TRACKING_URI, or the config file)")
