"""Ingest: files (.jsonl, .txt, .parquet; local, glob or fsspec URI) and Hugging Face
datasets saved to disk (`save_to_disk` folders) -> Arrow documents.

Bad input never crashes the run and never disappears: a malformed JSON line, invalid UTF-8,
a missing or non-string `text`, or an empty file becomes a reject row that names the file and
line, and the remaining rows of the file are still read.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import empty_docs, make_docs, make_rejects
from .storage import get_fs

log = logging.getLogger(__name__)
STAGE = "ingest"
FORMATS = (".jsonl", ".json", ".txt", ".parquet")


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
    first line) or a range of Parquet row groups [start, end) (`first` = its first row)."""

    uri: str
    start: int | None = None
    end: int | None = None
    first: int = 1

    def __str__(self) -> str:
        return self.uri if self.start is None else f"{self.uri}[{self.start}:{self.end}]"


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
    """The parts of one input: the whole input when it is at most `unit_bytes` (or a saved HF
    dataset, which is memory-mapped), else line-aligned byte ranges or Parquet row groups."""
    if is_hf_dataset(uri):
        return [Part(uri)]
    fs, path = get_fs(uri)
    if fs.size(path) <= unit_bytes:
        return [Part(uri)]
    with fs.open(path, "rb") as f:
        if not uri.lower().endswith(".parquet"):
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
    for lineno, raw in enumerate(data.splitlines(), start=first):
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


def _read_hf_dataset(uri: str, text_field: str, id_field: str):
    """Every split of a saved Hugging Face dataset, memory-mapped; rows are `<split>:<row>`
    when the dataset has no id column."""
    import datasets

    loaded = datasets.load_from_disk(uri)
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    ids, texts, rejects = [], [], []
    for name, ds in splits:
        source = f"{uri}#{name}" if name else uri
        i, t, r = _read_table(source, ds.data.table, text_field, id_field)
        ids += [x if id_field in ds.column_names else f"{name or 'train'}:{x.rsplit(':', 1)[1]}" for x in i]
        texts += t
        rejects += r
    return ids, texts, rejects


def read_file(uri: str, text_field: str = "text", id_field: str = "id") -> tuple[pa.Table, pa.Table]:
    """Read one whole input (a file, or a saved HF dataset folder) into (documents, rejects)."""
    return read_part(Part(uri), text_field, id_field)


def read_part(part: Part, text_field: str = "text", id_field: str = "id") -> tuple[pa.Table, pa.Table]:
    """Read one part of an input (see `plan`) into (documents, rejects); ids and reject
    locations use the line or row numbers of the whole file."""
    uri = part.uri
    lower = uri.lower()
    if part.start is None and is_hf_dataset(uri):
        ids, texts, rejects = _read_hf_dataset(uri, text_field, id_field)
        return make_docs(ids, texts, [uri] * len(ids)), make_rejects(rejects)
    if not lower.endswith(FORMATS):
        raise IngestError(f"{uri}: unsupported input format (expected one of {', '.join(FORMATS)})")
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        if part.start is None:
            data = f.read()
        elif lower.endswith(".parquet"):
            table = pq.ParquetFile(f).read_row_groups(range(part.start, part.end))
            ids, texts, rejects = _read_table(uri, table, text_field, id_field, part.first)
            return make_docs(ids, texts, [uri] * len(ids)), make_rejects(rejects)
        else:
            f.seek(part.start)
            data = f.read(part.end - part.start)
    if part.start is None and not data.strip():
        log.warning("ingest: %s is empty; recorded as a reject", uri)
        return empty_docs(), make_rejects([_reject(uri, None, "empty_file", "file is empty", None)])
    if lower.endswith(".parquet"):
        try:
            ids, texts, rejects = _read_table(uri, pq.read_table(pa.BufferReader(data)), text_field, id_field)
        except pa.ArrowInvalid as e:
            return empty_docs(), make_rejects([_reject(uri, None, "unreadable_parquet", str(e), None)])
    else:
        ids, texts, rejects = _read_lines(uri, data, not lower.endswith(".txt"), text_field, id_field, part.first)
    if rejects:
        log.warning("ingest: %s: %d row(s) rejected (first: %s)", part, len(rejects), rejects[0]["detail"])
    return make_docs(ids, texts, [uri] * len(ids)), make_rejects(rejects)
