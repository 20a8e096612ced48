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
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import empty_docs, make_docs, make_rejects
from ..storage import get_fs

log = logging.getLogger(__name__)
STAGE = "ingest"
FORMATS = (".jsonl", ".json", ".txt", ".parquet", ".warc", ".wet")
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}  # line files, streamed
_BOM = b"\xef\xbb\xbf"


def _format(uri: str) -> tuple[str | None, str | None]:
    """(format suffix, compression) of an input name: 'a.jsonl.gz' -> ('.jsonl', 'gzip');
    format None when unsupported."""
    lower = uri.lower()
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


def _reject(source: str, line: int | None, reason: str, detail: str, text: str | None) -> dict:
    where = f"{source}:{line}" if line is not None else source
    return {"id": where, "stage": STAGE, "reason": reason, "detail": f"{where}: {detail}",
            "text": text, "lang": None, "source": source, "augmented": False}


def _doc_id(source: str, line: int) -> str:
    return f"{posixpath.basename(source)}:{line}"


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
        where = "" if self.start is None else f"[{self.start}:{self.end}]"
        return f"{self.uri}#{self.split}{where}" if self.split is not None else f"{self.uri}{where}"


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


def _read_lines(source: str, data: bytes, parse_json: bool, text_field: str, id_field: str, first: int = 1):
    ids, texts, rejects = [], [], []
    if first == 1 and data.startswith(_BOM):
        data = data[len(_BOM):]  # a UTF-8 byte-order mark opens the file, it is not text
    # lines end at \n (a \r before it is dropped), as `plan` and editors count them, so a
    # reject's line number finds the line
    for lineno, raw in enumerate(data.split(b"\n"), start=first):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            rejects.append(_reject(source, lineno, "invalid_utf8", f"invalid UTF-8 at byte {e.start}",
                                   raw.decode("utf-8", errors="replace")))
            continue
        if not line.strip():
            continue  # blank separator lines are not documents
        if not parse_json:
            ids.append(_doc_id(source, lineno))
            texts.append(line)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            rejects.append(_reject(source, lineno, "malformed_json", f"malformed JSON: {e.msg} at column {e.colno}", line))
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
        ids.append(str(doc_id) if doc_id is not None else _doc_id(source, lineno))
        texts.append(text)
    return ids, texts, rejects


def _read_table(source: str, table: pa.Table, text_field: str, id_field: str, first: int = 1):
    n = table.num_rows
    if text_field not in table.column_names:
        rejects = [_reject(source, i, "missing_text", f"no column '{text_field}' (columns: {table.column_names})", None)
                   for i in range(first, first + n)]
        return [], [], rejects
    texts_col = table[text_field].to_pylist()
    id_col = table[id_field].to_pylist() if id_field in table.column_names else [None] * n
    ids, texts, rejects = [], [], []
    for i, (t, d) in enumerate(zip(texts_col, id_col), start=first):
        if not isinstance(t, str) or not t.strip():
            rejects.append(_reject(source, i, "missing_text", f"row {i}: '{text_field}' is null or empty", None))
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


def _read_hf_part(part: Part, text_field: str, id_field: str):
    """The rows of one part of a saved HF dataset (memory-mapped: only these rows are
    decoded); rows are `<split>:<row>` when the dataset has no id column."""
    ds = dict(_hf_splits(part.uri))[part.split]
    source = f"{part.uri}#{part.split}" if part.split else part.uri
    table = ds.data.table.slice(part.start, part.end - part.start)
    ids, texts, rejects = _read_table(source, table, text_field, id_field, part.first)
    if id_field not in ds.column_names:
        ids = [f"{part.split or 'train'}:{x.rsplit(':', 1)[1]}" for x in ids]
    return ids, texts, rejects


def _unreadable_row_group(uri: str, meta, i: int, first_row: int, error: Exception) -> dict:
    rows = meta.row_group(i).num_rows
    return _reject(uri, None, "unreadable_row_group",
                   f"row group {i} (rows {first_row}-{first_row + rows - 1}) cannot be decoded: {error}", None)


def _read_parquet(uri: str, f, groups: range | None, first: int, text_field: str, id_field: str):
    """(ids, texts, rejects) row group by row group, so one corrupt group becomes a reject and
    the others are read."""
    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as e:
        yield [], [], [_reject(uri, None, "unreadable_parquet", str(e), None)]
        return
    meta = pf.metadata
    groups = groups if groups is not None else range(meta.num_row_groups)
    row = first
    for i in groups:
        try:
            table = pf.read_row_group(i)
        except (pa.ArrowInvalid, OSError) as e:
            yield [], [], [_unreadable_row_group(uri, meta, i, row, e)]
            row += meta.row_group(i).num_rows
            continue
        yield _read_table(uri, table, text_field, id_field, row)
        row += table.num_rows


HTML_TYPES = ("text/html", "application/xhtml+xml")


def _read_warc(uri: str, f):
    """Documents of a WARC or WET stream (module docstring); record numbers count the
    response and conversion records from 1."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    ids, texts, rejects = [], [], []
    k = 0
    records = ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.conversion, parse_http=True)
    try:
        for k, rec in enumerate(records, start=1):
            rid = (rec.record_id or "").strip("<>") or _doc_id(uri, k)
            target = rec.headers.get("WARC-Target-URI", "")
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
            ids.append(rid)
            texts.append(text)
    except Exception as e:  # noqa: BLE001 - a corrupt or truncated file: keep what was read
        rejects.append(_reject(uri, k + 1, "unreadable_warc", f"cannot read record {k + 1}: {e}", None))
    return ids, texts, rejects


def _line_blocks(f, first: int, size: int | None, block_bytes: int, read_bytes: int = 16 << 20):
    """(number of its first line, bytes) blocks of a line stream, each of about `block_bytes`
    and ending after a newline (a longer line is one block); `size`: bytes to read (None: to
    the end). Reads at most `read_bytes` at a time (a huge `block_bytes` allocates nothing)."""
    buf, left, read_bytes = b"", size, min(read_bytes, block_bytes)
    while True:
        n = read_bytes if left is None else min(read_bytes, left)
        data = f.read(n) if n else b""
        if left is not None:
            left -= len(data)
        buf += data
        if data and len(buf) < block_bytes:
            continue
        cut = buf.rfind(b"\n") + 1 if data else len(buf)
        if cut:
            block, buf = buf[:cut], buf[cut:]
            yield first, block
            first += block.count(b"\n")
        if not data:
            return


def iter_part(part: Part, text_field: str = "text", id_field: str = "id",
              batch_bytes: int = 2 << 20) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Read one part of an input (see `plan`) as batches of (documents, rejects) of about
    `batch_bytes` of input each (line blocks, Parquet row groups, row ranges of a saved HF
    dataset; a WARC file is one batch), at least one batch; ids and reject locations use the
    line or row numbers of the whole file. Memory holds one batch, not the part."""
    uri = part.uri
    n_rejects, first_reject = 0, None

    def batch(ids, texts, rejects, source=uri):
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
                    yield batch(*_read_hf_part(sub, text_field, id_field))
            return
        fmt, compression = _format(uri)
        if fmt is None:
            log.warning("ingest: %s: unsupported input format; recorded as a reject", uri)
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
                for ids, texts, rejects in _read_parquet(uri, f, groups, part.first, text_field, id_field):
                    yield batch(ids, texts, rejects)
        elif fmt == ".warc":
            with _open(fs, path, compression) as f:
                ids, texts, rejects = _read_warc(uri, f)
            if not ids and not rejects:
                rejects = [_reject(uri, None, "empty_file", "no response or conversion records", None)]
            yield batch(ids, texts, rejects)
        else:
            any_text = False
            with _open(fs, path, compression) as f:
                if part.start is not None:
                    f.seek(part.start)
                size = None if part.start is None else part.end - part.start
                for first, data in _line_blocks(f, part.first, size, batch_bytes):
                    any_text = any_text or bool(data.strip())
                    yield batch(*_read_lines(uri, data, fmt != ".txt", text_field, id_field, first))
            if part.start is None and not any_text:
                log.warning("ingest: %s is empty; recorded as a reject", uri)
                yield empty_docs(), make_rejects([_reject(uri, None, "empty_file", "file is empty", None)])

    n = 0
    for docs, rejects in batches():
        n += 1
        yield docs, rejects
    if not n:
        yield empty_docs(), make_rejects([])
    if n_rejects:
        log.warning("ingest: %s: %d row(s) rejected (first: %s)", part, n_rejects, first_reject)


def read_part(part: Part, text_field: str = "text", id_field: str = "id") -> tuple[pa.Table, pa.Table]:
    """The whole part at once (`iter_part`'s batches put together)."""
    batches = list(iter_part(part, text_field, id_field))
    return (pa.concat_tables([d for d, _ in batches]).combine_chunks(),
            pa.concat_tables([r for _, r in batches]).combine_chunks())
