"""Ingest: files (.jsonl, .txt, .parquet; plain or compressed .gz .bz2 .xz .zst; local, glob
or fsspec URI), Common Crawl's WARC and WET files (.warc, .wet, .warc.wet; usually .gz) and
Hugging Face datasets saved to disk (`save_to_disk` folders) -> Arrow documents.

WARC / WET (`_read_warc`, FastWARC): a WET conversion record is one document (its text); a
WARC response record of an HTML page is one document, its main text extracted by Resiliparse
(boilerplate such as navigation, headers and footers left out), the bytes decoded by the HTTP
charset or, without one, a detected encoding; a text/plain response is taken as it is. Request,
metadata and other records are not documents. A response that is not a 200, a content type
that is not text, a page without main text, a record cut off by the end of the file or a file
that cannot be parsed further are rejects naming the file and the record's number (its
WARC-Record-ID and URL in the detail).

Bad input never crashes the run and never disappears: a malformed JSON line, invalid UTF-8,
a missing or non-string `text`, an empty file, a file of an unsupported format, or a Parquet
row group that cannot be decoded becomes a reject row that names the file and line (or row
group), and the rest of the input is still read. A UTF-8 byte-order mark is not an error.

Hostile input costs bounded memory and time (`Limits`, from `IngestConfig`): a line longer
than `max_line_bytes` is read through without being held (line_too_long), a document longer
than `max_document_chars` (document_too_long) and an id longer than `max_id_chars`
(id_too_long) are rejected before any processing; an over-long row's reject keeps the first
`KEPT_CHARS` characters of its text and its detail says so. Line files are read in blocks
without re-scanning a growing buffer, Parquet by slices of row groups, WARC record by record,
so a task holds about two batches (`batch_bytes`) of input, not the largest line or file.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import IngestConfig
from ..redact import object_uri, redact_text, redact_uri
from ..schema import empty_docs, make_docs, make_rejects
from ..storage import get_fs

log = logging.getLogger(__name__)
STAGE = "ingest"
FORMATS = (".jsonl", ".json", ".txt", ".parquet", ".warc", ".wet")
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}  # line files, streamed
_BOM = b"\xef\xbb\xbf"
KEPT_CHARS = 4096  # of an over-long row, its reject keeps this much text: enough to recognise it
MAX_SLICE_ROWS = 65536  # rows of a Parquet slice at most (2 MB batches of 32-byte texts)


@dataclass(frozen=True)
class Limits:
    """Sizes past which an input row is rejected instead of processed (IngestConfig's
    max_line_bytes, max_document_chars, max_id_chars), so one hostile row cannot hold a task's
    memory or time."""

    line_bytes: int
    document_chars: int
    id_chars: int

    @classmethod
    def of(cls, cfg: IngestConfig | None = None) -> Limits:
        cfg = cfg or IngestConfig()
        return cls(cfg.max_line_bytes, cfg.max_document_chars, cfg.max_id_chars)


def _format(uri: str) -> tuple[str | None, str | None]:
    """(format suffix, compression) of an input name: 'a.jsonl.gz' -> ('.jsonl', 'gzip');
    format None when unsupported."""
    lower = _path_of(uri).lower()
    compression = next((c for ext, c in COMPRESSIONS.items() if lower.endswith(ext)), None)
    if compression:
        lower = lower.rsplit(".", 1)[0]
    fmt = next((f for f in FORMATS if lower.endswith(f)), None)
    fmt = ".warc" if fmt == ".wet" else fmt  # one reader: the record types tell them apart
    if fmt == ".parquet" and compression:
        fmt = None  # Parquet compresses inside; an externally compressed Parquet is not readable by row group
    return fmt, compression


def _open(fs, path: str, compression: str | None):
    """A binary stream of the (decompressed) bytes; seek() forward works on every codec."""
    return fs.open(path, "rb", compression=compression)


class IngestError(ValueError):
    """An input that cannot be read at all (unknown format); names the file."""


def _path_of(uri: str) -> str:
    """A URI without its query (`https://host/a.jsonl?X-Amz-Signature=...` -> `https://host/a.jsonl`):
    what names the file and its format. A local path is its own."""
    return uri.split("?", 1)[0] if "://" in uri else uri


def _reject(source: str, line: int | None, reason: str, detail: str, text: str | None) -> dict:
    source = redact_uri(source)  # readers use the real URI; rows and logs get it without its credentials
    where = f"{source}:{line}" if line is not None else source
    return {"id": where, "stage": STAGE, "reason": reason, "detail": redact_text(f"{where}: {detail}"),
            "text": text, "lang": None, "source": source, "augmented": False}


def _too_long(source: str, line: int | None, reason: str, detail: str, text: str) -> dict:
    """The reject of an over-long row: its text cut to its first KEPT_CHARS characters."""
    return _reject(source, line, reason, f"{detail}; the reject keeps its first {KEPT_CHARS} characters",
                   text[:KEPT_CHARS])


def _check_row(source: str, line: int, text: str, doc_id, text_field: str, id_field: str,
               limits: Limits) -> dict | None:
    """The reject of a document or an id over its limit, None when both fit."""
    if len(text) > limits.document_chars:
        return _too_long(source, line, "document_too_long", f"field '{text_field}' has {len(text)} characters, over "
                         f"corpus.ingest.max_document_chars ({limits.document_chars})", text)
    if doc_id is not None and len(doc_id := str(doc_id)) > limits.id_chars:
        return _too_long(source, line, "id_too_long", f"field '{id_field}' has {len(doc_id)} characters, over "
                         f"corpus.ingest.max_id_chars ({limits.id_chars}): {doc_id[:80]}...", text)
    return None


def _doc_id(source: str, line: int) -> str:
    return f"{posixpath.basename(_path_of(source))}:{line}"


@dataclass(frozen=True)
class Part:
    """A work unit's share of an input: the whole file, or for a file larger than the unit
    size a line-aligned byte range [start, end) (.jsonl/.txt, `first` = line number of its
    first line) or a range of Parquet row groups [start, end) (`first` = its first row). For a
    saved Hugging Face dataset, rows [start, end) of one split (`split`; "" for a plain
    `Dataset`)."""

    uri: str
    start: int | None = None
    end: int | None = None
    first: int = 1
    split: str | None = None

    def __str__(self) -> str:
        """The part as unit records and logs name it: its URI without credentials (`redact_uri`)."""
        return self._named(redact_uri(self.uri))

    @property
    def key(self) -> str:
        """The part as unit keys name it: the object its URI names (`object_uri`), so a presigned
        URL signed again is the same part (for a local file, the same as `str`)."""
        return self._named(object_uri(self.uri))

    def _named(self, uri: str) -> str:
        where = "" if self.start is None else f"[{self.start}:{self.end}]"
        return f"{uri}#{self.split}{where}" if self.split is not None else f"{uri}{where}"

    def __repr__(self) -> str:
        return f"Part({str(self)!r})"


def _line_parts(uri: str, f, unit_bytes: int, block: int = 16 << 20) -> list[Part]:
    """Cut a line file into parts of about `unit_bytes`, each ending after a newline, counting
    lines on the way (one sequential read) so every part knows its first line number."""
    parts: list[Part] = []
    start, first, pos, line = 0, 1, 0, 1   # `line`: number of the line that starts at/after pos
    while True:
        data = f.read(block)
        if not data:
            break
        off = 0
        while start + unit_bytes <= pos + len(data):
            idx = data.find(b"\n", max(start + unit_bytes - pos, off))
            if idx < 0:
                break  # the line goes on in the next block
            line += data.count(b"\n", off, idx + 1)
            parts.append(Part(uri, start, pos + idx + 1, first))
            start, first, off = pos + idx + 1, line, idx + 1
        line += data.count(b"\n", off)
        pos += len(data)
    if start < pos or not parts:
        parts.append(Part(uri, start, pos, first))
    return parts


def plan(uri: str, unit_bytes: int) -> list[Part]:
    """The parts of one input: the whole input when it is at most `unit_bytes`, else
    line-aligned byte ranges or Parquet row groups; a saved HF dataset by row ranges of each
    split (`_hf_parts`)."""
    if is_hf_dataset(uri):
        return _hf_parts(uri, unit_bytes)
    fs, path = get_fs(uri)
    fmt, compression = _format(uri)
    # compressed text is rarely smaller than a tenth: only then can it exceed a unit. A WARC
    # file is one unit (Common Crawl's are ~1 GB of pages, ~100 MB of extracted text)
    if fmt in (None, ".warc") or fs.size(path) * (10 if compression else 1) <= unit_bytes:
        return [Part(uri)]
    with _open(fs, path, compression) as f:
        if fmt != ".parquet":  # byte ranges of the decompressed stream, cut after a newline
            parts = _line_parts(uri, f, unit_bytes)
            return parts if len(parts) > 1 else [Part(uri)]
        try:
            meta = pq.ParquetFile(f).metadata
        except pa.ArrowInvalid:
            return [Part(uri)]  # read_part records it as unreadable
    parts, start, first, size, row = [], 0, 1, 0, 1
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        if size and size + rg.total_byte_size > unit_bytes:
            parts.append(Part(uri, start, i, first))
            start, first, size = i, row, 0
        size += rg.total_byte_size
        row += rg.num_rows
    parts.append(Part(uri, start, meta.num_row_groups, first))
    return parts if len(parts) > 1 else [Part(uri)]


def _line_too_long(source: str, line: int, size: int, head: bytes, limits: Limits) -> dict:
    if line == 1 and head.startswith(_BOM):
        head = head[len(_BOM):]
    return _too_long(source, line, "line_too_long", f"line of {size} bytes, over corpus.ingest.max_line_bytes "
                     f"({limits.line_bytes})", head[:4 * KEPT_CHARS].decode("utf-8", errors="replace"))


def _read_lines(source: str, data: bytes, parse_json: bool, text_field: str, id_field: str, first: int = 1,
                limits: Limits | None = None):
    limits = limits or Limits.of()
    ids, texts, rejects = [], [], []
    if first == 1 and data.startswith(_BOM):
        data = data[len(_BOM):]  # a UTF-8 byte-order mark opens the file, it is not text
    # lines end at \n (a \r before it is dropped), as `plan` and editors count them, so a
    # reject's line number finds the line
    for lineno, raw in enumerate(data.split(b"\n"), start=first):
        if len(raw) > limits.line_bytes:  # (a line longer than a block is cut off by `line_blocks` already)
            rejects.append(_line_too_long(source, lineno, len(raw), raw, limits))
            continue
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            rejects.append(_reject(source, lineno, "invalid_utf8", f"invalid UTF-8 at byte {e.start}",
                                   raw.decode("utf-8", errors="replace")))
            continue
        if not line or line.isspace():
            continue  # blank separator lines are not documents
        if not parse_json:
            if len(line) > limits.document_chars:
                rejects.append(_too_long(source, lineno, "document_too_long", f"line of {len(line)} characters, over "
                                         f"corpus.ingest.max_document_chars ({limits.document_chars})", line))
                continue
            ids.append(_doc_id(source, lineno))
            texts.append(line)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            rejects.append(_reject(source, lineno, "malformed_json", f"malformed JSON: {e.msg} at column {e.colno}", line))
            continue
        except (ValueError, RecursionError) as e:  # an integer of over 4300 digits, nesting deeper than the stack
            rejects.append(_reject(source, lineno, "malformed_json", f"unreadable JSON: {e}", line))
            continue
        if not isinstance(obj, dict):
            rejects.append(_reject(source, lineno, "malformed_json", f"expected a JSON object, got {type(obj).__name__}", line))
            continue
        text = obj.get(text_field)
        if not isinstance(text, str) or not text.strip():
            reason = "missing_text" if text is None or (isinstance(text, str)) else "text_not_string"
            rejects.append(_reject(source, lineno, reason, f"field '{text_field}' missing, empty or not a string", line))
            continue
        doc_id = obj.get(id_field)
        if (over := _check_row(source, lineno, text, doc_id, text_field, id_field, limits)) is not None:
            rejects.append(over)
            continue
        ids.append(str(doc_id) if doc_id is not None else _doc_id(source, lineno))
        texts.append(text)
    return ids, texts, rejects


def _no_text_column(source: str, first: int, n: int, text_field: str, columns: list[str]) -> list[dict]:
    return [_reject(source, i, "missing_text", f"no column '{text_field}' (columns: {columns})", None)
            for i in range(first, first + n)]


def _read_table(source: str, table: pa.Table, text_field: str, id_field: str, first: int = 1,
                limits: Limits | None = None):
    limits = limits or Limits.of()
    n = table.num_rows
    if text_field not in table.column_names:
        return [], [], _no_text_column(source, first, n, text_field, table.column_names)
    col, lengths = table[text_field], None
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        # an over-long text is cut in Arrow, so it is never copied whole into a Python string
        length = pc.utf8_length(col)
        over = pc.greater(length, limits.document_chars)
        if pc.any(over).as_py():
            lengths = length.to_pylist()
            col = pc.if_else(over, pc.utf8_slice_codeunits(col, 0, KEPT_CHARS), col)
    texts_col = col.to_pylist()
    id_col = table[id_field].to_pylist() if id_field in table.column_names else [None] * n
    ids, texts, rejects = [], [], []
    for i, (t, d) in enumerate(zip(texts_col, id_col), start=first):
        if not isinstance(t, str) or not t.strip():
            rejects.append(_reject(source, i, "missing_text", f"row {i}: '{text_field}' is null or empty", None))
            continue
        if lengths is not None and lengths[i - first] > limits.document_chars:
            rejects.append(_too_long(source, i, "document_too_long", f"row {i}: '{text_field}' has {lengths[i - first]} "
                                     f"characters, over corpus.ingest.max_document_chars ({limits.document_chars})", t))
            continue
        if (over_id := _check_row(source, i, t, d, text_field, id_field, limits)) is not None:
            rejects.append(over_id)
            continue
        ids.append(str(d) if d is not None else _doc_id(source, i))
        texts.append(t)
    return ids, texts, rejects


def is_hf_dataset(uri: str) -> bool:
    """A folder written by `datasets.Dataset.save_to_disk` (or a DatasetDict's)."""
    fs, path = get_fs(uri)
    return fs.isdir(path) and (fs.exists(f"{path}/state.json") or fs.exists(f"{path}/dataset_dict.json"))


def _hf_splits(uri: str):
    """(split name, Dataset) of a saved HF dataset ("" for a plain Dataset), memory-mapped."""
    import datasets

    loaded = datasets.load_from_disk(uri)
    return sorted(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]


def _hf_parts(uri: str, unit_bytes: int) -> list[Part]:
    """Row ranges of each split of about `unit_bytes` of Arrow data each (one per split when
    it is smaller): a 100 GB dataset becomes units that workers read in parallel, each only
    its own rows."""
    parts = []
    for name, ds in _hf_splits(uri):
        n = ds.num_rows
        rows = max(1, int(unit_bytes * n / max(1, ds.data.nbytes)))
        parts += [Part(uri, a, min(a + rows, n), a + 1, name) for a in range(0, n, rows)] or [Part(uri, 0, 0, 1, name)]
    return parts


def _read_hf_part(part: Part, text_field: str, id_field: str, limits: Limits | None = None):
    """The rows of one part of a saved HF dataset (memory-mapped: only these rows are
    decoded); rows are `<split>:<row>` when the dataset has no id column."""
    ds = dict(_hf_splits(part.uri))[part.split]
    source = f"{part.uri}#{part.split}" if part.split else part.uri
    table = ds.data.table.slice(part.start, part.end - part.start)
    ids, texts, rejects = _read_table(source, table, text_field, id_field, part.first, limits)
    if id_field not in ds.column_names:
        ids = [f"{part.split or 'train'}:{x.rsplit(':', 1)[1]}" for x in ids]
    return ids, texts, rejects


def _unreadable_row_group(uri: str, i: int, first_row: int, last_row: int, error: Exception) -> dict:
    return _reject(uri, None, "unreadable_row_group",
                   f"row group {i} (rows {first_row}-{last_row}) cannot be decoded: {error}", None)


def _read_parquet(uri: str, f, groups: range | None, first: int, text_field: str, id_field: str,
                  batch_bytes: int = 2 << 20, limits: Limits | None = None):
    """(ids, texts, rejects) by slices of about `batch_bytes` of each row group (`iter_batches`,
    the text and id columns only), so a task holds neither a whole row group nor the file's
    other columns; a group that cannot be decoded becomes one reject for its rows not yet read,
    and the other groups are read."""
    try:
        pf = pq.ParquetFile(f, buffer_size=min(batch_bytes, 8 << 20))  # column chunks read in pieces
    except (pa.ArrowInvalid, OSError) as e:
        yield [], [], [_reject(uri, None, "unreadable_parquet", str(e), None)]
        return
    meta, names = pf.metadata, pf.schema_arrow.names
    columns = [c for c in dict.fromkeys((text_field, id_field)) if c in names]
    groups = groups if groups is not None else range(meta.num_row_groups)
    row = first
    for i in groups:
        rg = meta.row_group(i)
        end = row + rg.num_rows
        if text_field not in names:
            yield [], [], _no_text_column(uri, row, rg.num_rows, text_field, names)
            row = end
            continue
        size = sum(rg.column(j).total_uncompressed_size for j in range(rg.num_columns)
                   if rg.column(j).path_in_schema in columns)
        # rows per slice from the footer's sizes (which the file's writer chose: capped, so a footer that
        # understates them cannot make one slice the whole group)
        step = max(1, min(rg.num_rows * batch_bytes // max(size, 1), MAX_SLICE_ROWS))
        try:
            for b in pf.iter_batches(batch_size=step, row_groups=[i], columns=columns, use_threads=False):
                yield _read_table(uri, pa.Table.from_batches([b]), text_field, id_field, row, limits)
                row += b.num_rows
        except (pa.ArrowInvalid, OSError) as e:
            yield [], [], [_unreadable_row_group(uri, i, row, end - 1, e)]
        row = end


HTML_TYPES = ("text/html", "application/xhtml+xml")


def _read_warc(uri: str, f, batch_bytes: int = 2 << 20, limits: Limits | None = None):
    """Documents of a WARC or WET stream (module docstring), record by record, as batches of
    (ids, texts, rejects) of about `batch_bytes` of text; a record whose payload is over
    `limits.line_bytes` is rejected unread. Record numbers count the response and conversion
    records from 1."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    limits = limits or Limits.of()
    ids, texts, rejects, size = [], [], [], 0
    k = 0
    records = ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.conversion, parse_http=True)
    try:
        for k, rec in enumerate(records, start=1):
            if size >= batch_bytes:
                yield ids, texts, rejects
                ids, texts, rejects, size = [], [], [], 0
            rid = (rec.record_id or "").strip("<>") or _doc_id(uri, k)
            target = rec.headers.get("WARC-Target-URI", "")
            if rec.content_length > limits.line_bytes:  # left unread: the iterator skips it in pieces
                head = rec.reader.read(KEPT_CHARS).decode("utf-8", "replace")
                rejects.append(_too_long(uri, k, "document_too_long", f"{rid} {target}: record payload of "
                                         f"{rec.content_length} bytes, over corpus.ingest.max_line_bytes "
                                         f"({limits.line_bytes})", head))
                continue
            body = rec.reader.read()
            if len(body) < rec.content_length:  # the file breaks off inside this record
                rejects.append(_reject(uri, k, "truncated_record", f"{rid} {target}: the file ends after "
                                       f"{len(body)} of the record's {rec.content_length} bytes", None))
                continue
            if rec.record_type == WarcRecordType.conversion:
                text = bytes_to_str(body, "utf-8")
            else:
                status = rec.http_headers.status_code if rec.http_headers is not None else None
                ctype = (rec.http_content_type or "").lower()
                if status != 200:
                    rejects.append(_reject(uri, k, "http_status", f"{rid} {target}: HTTP status {status}", None))
                    continue
                if ctype not in HTML_TYPES and not ctype.startswith("text/plain"):
                    rejects.append(_reject(uri, k, "unsupported_content_type",
                                           f"{rid} {target}: content type {ctype or 'missing'}", None))
                    continue
                text = bytes_to_str(body, rec.http_charset or detect_encoding(body))
                if ctype in HTML_TYPES:
                    text = extract_plain_text(text, main_content=True, alt_texts=False)
            if not text.strip():
                rejects.append(_reject(uri, k, "no_text", f"{rid} {target}: no main text", None))
                continue
            if (over := _check_row(uri, k, text, rid, "text", "WARC-Record-ID", limits)) is not None:
                rejects.append(over)
                continue
            ids.append(rid)
            texts.append(text)
            size += len(text)
    except Exception as e:  # noqa: BLE001 - a corrupt or truncated file: keep what was read
        rejects.append(_reject(uri, k + 1, "unreadable_warc", f"cannot read record {k + 1}: {e}", None))
    yield ids, texts, rejects


@dataclass(frozen=True)
class TooLong:
    """A line over the limit, read through without being kept: its size in bytes, its first bytes."""

    size: int
    head: bytes


class _Line:
    """The line being read, piece by piece: in memory up to `spill` bytes, then in a temporary
    file (a line longer than a batch costs disk, not memory, until it is known to fit); past
    `limit` bytes only counted, its first bytes kept for its reject."""

    def __init__(self, spill: int, limit: int):
        self.spill, self.limit = spill, limit
        self.pieces, self.size, self.file, self.head = [], 0, None, None

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if not data or self.head is not None:
            return
        if self.size > self.limit:
            self.head = self._start(data)
            self._drop()
        elif self.file is not None:
            self.file.write(data)
        elif self.size > self.spill:
            self.file = tempfile.TemporaryFile()
            self.file.writelines([*self.pieces, data])
            self.pieces = []
        else:
            self.pieces.append(data)

    def finish(self, newline: bytes) -> bytes | TooLong:
        """The line read, ending with `newline` (or a `TooLong`); the next line starts empty."""
        if self.head is not None:
            line = TooLong(self.size, self.head)
        elif self.file is not None:
            self.file.write(newline)
            self.file.seek(0)
            line = self.file.read()
        else:
            line = b"".join([*self.pieces, newline])
        self._drop()
        self.size, self.head = 0, None
        return line

    def _start(self, data: bytes, n: int = 4 * KEPT_CHARS) -> bytes:
        """The first `n` bytes of the line: those stored, then `data`."""
        if self.file is not None:
            self.file.seek(0)
            head = self.file.read(n)
        else:
            head = b""
            for piece in self.pieces:
                head += piece[:n - len(head)]
        return head + data[:n - len(head)]

    def _drop(self) -> None:
        if self.file is not None:
            self.file.close()
        self.pieces, self.file = [], None


def line_blocks(f, first: int, size: int | None, block_bytes: int, max_line_bytes: int = 1 << 62,
                 read_bytes: int = 16 << 20):
    """(number of its first line, bytes) blocks of a line stream, each of about `block_bytes`
    and ending after a newline (a line longer than half a block is a block of its own), and
    (its number, `TooLong`) for a line over `max_line_bytes`; `size`: bytes to read (None: to
    the end). Each byte read is searched for newlines once and copied a bounded number of times
    (no growing buffer searched again: that was quadratic in a long line), and memory holds
    about two blocks while reading: a long line waits in a temporary file, one over the limit is
    only counted; a long line that fits the limit is then handed on whole (so a task holds up to
    `max_line_bytes` for it, the price of processing it)."""
    read_bytes = max(1, min(read_bytes, block_bytes // 2))
    cur, lines, n, left = _Line(block_bytes // 2, max_line_bytes), [], 0, size

    def flush():
        nonlocal lines, n, first
        if lines:
            block, lines, n = b"".join(lines), [], 0
            yield first, block
            first += block.count(b"\n")

    def own(line):  # a long line (or what is known of it), after the lines before it
        nonlocal first
        yield from flush()
        yield first, line
        first += 1

    while True:
        k = read_bytes if left is None else min(read_bytes, left)
        data = f.read(k) if k > 0 else b""
        if left is not None:
            left -= len(data)
        if not data:
            break
        end = data.find(b"\n")
        if end < 0:
            cur.add(data)
            continue
        cur.add(data[:end])
        line = cur.finish(b"\n")
        if isinstance(line, TooLong) or len(line) > cur.spill:
            yield from own(line)
        else:
            lines.append(line)
            n += len(line)
        last = data.rfind(b"\n")
        if last > end:
            lines.append(data[end + 1:last + 1])
            n += last - end
        cur.add(data[last + 1:])
        if n >= block_bytes:
            yield from flush()
    if cur.size:  # a last line without a newline
        line = cur.finish(b"")
        if isinstance(line, TooLong) or len(line) > cur.spill:
            yield from own(line)
        else:
            lines.append(line)
    yield from flush()


def iter_part(part: Part, text_field: str = "text", id_field: str = "id", batch_bytes: int = 2 << 20,
              limits: Limits | None = None) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Read one part of an input (see `plan`) as batches of (documents, rejects) of about
    `batch_bytes` of input each (line blocks, slices of Parquet row groups, row ranges of a
    saved HF dataset, runs of WARC records), at least one batch; ids and reject locations use
    the line or row numbers of the whole file. Memory holds about two batches, not the part,
    nor its longest line (`limits`: default IngestConfig's)."""
    uri, limits = part.uri, limits or Limits.of()
    shown = redact_uri(uri)  # what rows and logs carry (no credential); `uri` is what is read
    n_rejects, first_reject = 0, None

    def batch(ids, texts, rejects, source=shown):
        nonlocal n_rejects, first_reject
        n_rejects += len(rejects)
        first_reject = first_reject or (rejects[0]["detail"] if rejects else None)
        return make_docs(ids, texts, [source] * len(ids)), make_rejects(rejects)

    def batches():
        if part.split is not None or (part.start is None and is_hf_dataset(uri)):  # a whole dataset: every split
            for p in [part] if part.split is not None else _hf_parts(uri, 1 << 62):
                ds = dict(_hf_splits(p.uri))[p.split]
                step = max(1, int(len(ds) * batch_bytes / max(ds.data.table.nbytes, 1)))
                for lo in range(p.start, p.end, step):
                    sub = Part(p.uri, lo, min(lo + step, p.end), p.first + lo - p.start, p.split)
                    yield batch(*_read_hf_part(sub, text_field, id_field, limits))
            return
        fmt, compression = _format(uri)
        if fmt is None:
            log.warning("ingest: %s: unsupported input format; recorded as a reject", shown)
            known = ", ".join(FORMATS) + " (optionally " + ", ".join(COMPRESSIONS) + " for line and WARC files)"
            yield empty_docs(), make_rejects([_reject(uri, None, "unsupported_format",
                                                      f"unsupported input format (expected one of {known})", None)])
            return
        fs, path = get_fs(uri)
        if fmt == ".parquet":
            if part.start is None and fs.size(path) == 0:
                yield empty_docs(), make_rejects([_reject(uri, None, "empty_file", "file is empty", None)])
                return
            with fs.open(path, "rb") as f:
                groups = None if part.start is None else range(part.start, part.end)
                for ids, texts, rejects in _read_parquet(uri, f, groups, part.first, text_field, id_field,
                                                         batch_bytes, limits):
                    yield batch(ids, texts, rejects)
        elif fmt == ".warc":
            rows = 0
            with _open(fs, path, compression) as f:
                for ids, texts, rejects in _read_warc(uri, f, batch_bytes, limits):
                    rows += len(ids) + len(rejects)
                    yield batch(ids, texts, rejects)
            if not rows:
                yield empty_docs(), make_rejects([_reject(uri, None, "empty_file", "no response or conversion records",
                                                          None)])
        else:
            any_text = False
            with _open(fs, path, compression) as f:
                if part.start is not None:
                    f.seek(part.start)
                size = None if part.start is None else part.end - part.start
                for first, data in line_blocks(f, part.first, size, batch_bytes, limits.line_bytes):
                    if isinstance(data, TooLong):
                        any_text = True
                        yield batch([], [], [_line_too_long(uri, first, data.size, data.head, limits)])
                        continue
                    any_text = any_text or bool(data.strip())
                    yield batch(*_read_lines(uri, data, fmt != ".txt", text_field, id_field, first, limits))
            if part.start is None and not any_text:
                log.warning("ingest: %s is empty; recorded as a reject", shown)
                yield empty_docs(), make_rejects([_reject(uri, None, "empty_file", "file is empty", None)])

    n = 0
    for docs, rejects in batches():
        n += 1
        yield docs, rejects
    if not n:
        yield empty_docs(), make_rejects([])
    if n_rejects:
        log.warning("ingest: %s: %d row(s) rejected (first: %s)", part, n_rejects, first_reject)


def read_part(part: Part, text_field: str = "text", id_field: str = "id",
              limits: Limits | None = None) -> tuple[pa.Table, pa.Table]:
    """The whole part at once (`iter_part`'s batches put together)."""
    batches = list(iter_part(part, text_field, id_field, limits=limits))
    return (pa.concat_tables([d for d, _ in batches]).combine_chunks(),
            pa.concat_tables([r for _, r in batches]).combine_chunks())
