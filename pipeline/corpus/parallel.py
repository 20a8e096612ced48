"""Parallel text: translation pairs as a corpus of their own, for the cross-lingual alignment
objectives (TLM, contrastive) and for retrieval evaluation.

Inputs (`corpus.parallel.inputs`, each a file, folder or glob):
    <stem>.<lang> files      two line-aligned files per stem (Moses / OPUS / Tatoeba naming:
                             `corpus.en` + `corpus.fr`, `tatoeba.afr-eng.afr` + `tatoeba.afr-eng.eng`);
                             the suffixes are the languages unless src_lang / tgt_lang say otherwise
    *.tsv                    `src<TAB>tgt` lines (languages from the input's src_lang / tgt_lang)
    *.jsonl, *.parquet       two text fields (src_field, tgt_field) and optionally per-row
                             language fields (src_lang_field, tgt_lang_field)
    <language>.txt files     with `pivot` set: multi-way parallel documents, one file per language
                             holding the same text but not line-aligned (UDHR's `eng_Latn.txt`,
                             `fra_Latn.txt`, ...); each file is aligned with the pivot language's
                             file by line lengths (Gale & Church 1993, nltk's implementation) and
                             gives pivot-X pairs, one per bead of 1 or 2 lines a side
Line files may be .gz / .bz2 / .xz / .zst compressed. Files are streamed in chunks of about
`corpus.ingest.batch_bytes` (`read_chunks`), so a unit's memory follows the chunk, not the file.

Each pair goes through (rejects keep the pair with stage `parallel` and the reason):
    read errors             bad_row (a TSV line without exactly one tab, JSON that does not parse,
                            a missing field: file:line named), line_count_mismatch (two aligned
                            files of different lengths: nothing in them can be trusted to align),
                            unaligned (a line of a multi-way document the length alignment left
                            without a partner), number_mismatch (an aligned bead whose two sides
                            write different numbers: the alignment drifted there),
                            alignment_failed (most of a file's lines had no partner: not the
                            same text as the pivot's, every line rejected), line_too_long (a
                            line over corpus.ingest.max_line_bytes, read through unheld; the
                            reject keeps its start)
    normalisation           as documents (Unicode normalisation, mojibake, control characters,
                            PII redaction), without the boilerplate-line patterns: a sentence
                            about cookies is not a cookie banner -> empty_after_cleaning
    too_short / too_long    a side outside [min_chars, max_chars]
    copy                    both sides the same text (an untranslated pair)
    length_ratio            estimated tokens (characters per token by script, +2 each side)
                            differing by more than max_length_ratio
    language                both sides through language ID: unidentified (no language given and
                            none found with confidence), script_mismatch (the text's script does
                            not fit the language), language_mismatch (the declared language is
                            not among the side's top candidates while another language scores
                            >= mismatch_min_score: closely related languages, which language ID
                            confuses, pass as long as the declared one is a candidate)
    duplicate               the same two texts in the same two languages (either direction)
                            as an earlier pair, across all inputs (detail: the pair kept)

Output under the corpus directory, next to the document shards:
    pairs/<lang_a>-<lang_b>/{train,heldout}-NNNNN.parquet   (labels sorted; PAIR_SCHEMA)
    rejects/parallel.parquet
    manifest.json "parallel": per language pair rows, train/held-out rows, synthetic rows,
        estimated tokens, temperature weight; every file with rows and sha256.
Held-out pairs (by a hash of the pair's id, never synthetic ones) are what retrieval
evaluation reads. Back-translated documents come back as synthetic pairs (source document,
translation) in the same shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import regex

from ..config import CorpusConfig, ParallelConfig, ParallelInput
from ..language_codes import is_unidentified, language, normalize, normalize_code
from ..redact import redact_text, redact_uri
from ..schema import PAIR_REJECT_SCHEMA, PAIR_SCHEMA, concat
from ..storage import exists, expand, get_fs, join, put_local, read_json, read_parquet, remove, write_json
from . import langid
from .clean import normalize_text
from .ingest import COMPRESSIONS, KEPT_CHARS, Limits, TooLong, line_blocks
from .shard import CHARS_PER_TOKEN, DEFAULT_CHARS_PER_TOKEN, RollingParquet, heldout_mask, temperature_weights

log = logging.getLogger(__name__)
_DIGITS = regex.compile(r"\d+")
MAX_ALIGN_LINES = 4000  # nltk's Gale-Church limit: longer documents are rejected whole (alignment_failed)
STAGE = "parallel"
PAIRS = "pairs"
VERSION = 1
TABLE_FORMATS = (".tsv", ".jsonl", ".json", ".parquet")


class ParallelInputError(ValueError):
    """A parallel input that cannot be read as pairs at all; names the file."""


@dataclass(frozen=True)
class PairUnit:
    """One readable source of pairs: a table file, or two line-aligned files (src, tgt)."""

    uris: tuple[str, ...]
    src_lang: str | None
    tgt_lang: str | None
    input_index: int  # which entry of corpus.parallel.inputs
    align: bool = False  # two translations of one document, aligned by line lengths (a `pivot` input)

    def __str__(self) -> str:  # as unit records and logs name it: without credentials
        return " + ".join(redact_uri(u) for u in self.uris)


def _strip_compression(name: str) -> tuple[str, str | None]:
    lower = name.lower()
    for ext, codec in COMPRESSIONS.items():
        if lower.endswith(ext):
            return name[: -len(ext)], codec
    return name, None


def _lang_suffix(name: str) -> tuple[str, str] | None:
    """('corpus', 'fr') for 'corpus.fr' (compression suffix ignored); None when the last
    suffix is not a language code. The code is returned as written: it is normalised once,
    with the text's script, per row."""
    base, _ = _strip_compression(posixpath.basename(name))
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:
        return None
    try:
        normalize_code(suffix)
    except ValueError:
        return None
    return stem, suffix


def plan(inputs: list[ParallelInput]) -> list[PairUnit]:
    """The readable units of every parallel input, in a stable order."""
    units: list[PairUnit] = []
    for k, pin in enumerate(inputs):
        files = expand([pin.path])
        if pin.pivot:
            units.extend(_multiway_units(files, pin, k))
            continue
        aligned: dict[str, list[tuple[str, str]]] = {}
        for uri in files:
            base, _ = _strip_compression(uri)
            if base.lower().endswith(TABLE_FORMATS):
                units.append(PairUnit((uri,), pin.src_lang, pin.tgt_lang, k))
                continue
            parsed = _lang_suffix(uri)
            if parsed is None:
                raise ParallelInputError(f"{uri}: not a parallel input (expected <stem>.<lang> line-aligned files, "
                                         f".tsv, .jsonl or .parquet)")
            aligned.setdefault(posixpath.join(posixpath.dirname(uri), parsed[0]), []).append((parsed[1], uri))
        for stem, members in sorted(aligned.items()):
            if len(members) != 2:
                names = ", ".join(u for _, u in members)
                raise ParallelInputError(f"{stem}.*: line-aligned parallel files come in twos (<stem>.<src> and "
                                         f"<stem>.<tgt>); found {len(members)}: {names}")
            members.sort()
            if pin.src_lang and language(normalize(pin.src_lang)) == language(normalize(members[1][0])):
                members.reverse()  # the declared source is the second suffix in name order
            (src_code, src_uri), (tgt_code, tgt_uri) = members
            units.append(PairUnit((src_uri, tgt_uri), pin.src_lang or src_code, pin.tgt_lang or tgt_code, k))
    return units


def _multiway_units(files: list[str], pin: ParallelInput, k: int) -> list[PairUnit]:
    """One unit per non-pivot file of a multi-way parallel collection: (pivot file, that file)."""
    labels = {}
    for uri in files:
        base, _ = _strip_compression(posixpath.basename(uri))
        stem = base.rsplit(".", 1)[0] if "." in base else base
        try:
            normalize_code(stem)
            labels[uri] = normalize(stem)
        except ValueError:
            raise ParallelInputError(f"{uri}: the files of a multi-way parallel input (pivot {pin.pivot}) are named "
                                     f"by their language, <language>.<ext> (eng_Latn.txt, fra_Latn.txt)") from None
    pivots = [u for u, lab in labels.items() if lab == pin.pivot]
    if len(pivots) != 1:
        raise ParallelInputError(f"{pin.path}: a multi-way parallel input needs exactly one file in its pivot language "
                                 f"{pin.pivot}; found {len(pivots)}: {', '.join(pivots) or 'none'}")
    return [PairUnit((pivots[0], uri), pin.pivot, lab, k, align=True) for uri, lab in sorted(labels.items())
            if uri != pivots[0]]


def align_lines(src_lens: list[int], tgt_lens: list[int]) -> list[tuple[list[int], list[int]]]:
    """Gale & Church (1993) length-based alignment of two translations of one text, as beads
    (source line indices, target line indices), in order; a bead with an empty side is a line
    left without a partner. The expected target/source character ratio is the two texts' own
    (a Chinese translation runs at about a third of the English characters), nltk's priors and
    variance otherwise."""
    from nltk.translate import gale_church

    class Params(gale_church.LanguageIndependent):
        AVERAGE_CHARACTERS = max(sum(tgt_lens), 1) / max(sum(src_lens), 1)

    links = gale_church.align_blocks(list(src_lens), list(tgt_lens), Params)
    beads: list[tuple[list[int], list[int]]] = []
    for i, j in links:  # links in order; the links of one 2-1 / 1-2 / 2-2 bead share a line
        if beads and (i in beads[-1][0] or j in beads[-1][1]):
            if i not in beads[-1][0]:
                beads[-1][0].append(i)
            if j not in beads[-1][1]:
                beads[-1][1].append(j)
        else:
            beads.append(([i], [j]))
    out: list[tuple[list[int], list[int]]] = []
    si = ti = 0  # lines skipped between beads are 1-0 / 0-1 beads
    for s, t in beads + [([len(src_lens)], [len(tgt_lens)])]:
        out.extend(([x], []) for x in range(si, s[0]))
        out.extend(([], [x]) for x in range(ti, t[0]))
        si, ti = s[-1] + 1, t[-1] + 1
        out.append((s, t))
    return out[:-1]


def _numerals(text: str) -> set[int]:
    """The numbers written in digits of any script (Devanagari, Arabic-Indic, fullwidth ...)."""
    return {int(x) for x in _DIGITS.findall(text)}


def input_files(cfg: ParallelConfig) -> list[str]:
    """Every file the parallel inputs name (for the corpus fingerprint)."""
    return sorted({u for unit in plan(cfg.inputs) for u in unit.uris})


# ---------------------------------------------------------------- reading


def _lines(uri: str, limits: Limits, block_bytes: int) -> Iterator[tuple[int, str | TooLong]]:
    """(line number from 1, text) of a line file, read in blocks (`ingest.line_blocks`: memory
    bounded whatever the file and its lines), undecodable bytes replaced; a line over
    `limits.line_bytes` comes as a `TooLong`, read through but not held."""
    fs, path = get_fs(uri)
    _, codec = _strip_compression(uri)
    with fs.open(path, "rb", compression=codec) as f:
        for first, block in line_blocks(f, 1, None, block_bytes, limits.line_bytes):
            if isinstance(block, TooLong):
                yield first, block
                continue
            if first == 1 and block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]
            lines = block.split(b"\n")
            if not block or block.endswith(b"\n"):
                lines.pop()  # the newline ends the line before it, it does not open another
            for i, raw in enumerate(lines, start=first):
                if len(raw) > limits.line_bytes:  # inside a block (a longer line is cut off by `line_blocks`)
                    yield i, TooLong(len(raw), raw[:4 * KEPT_CHARS])
                else:
                    yield i, raw.decode("utf-8", errors="replace").rstrip("\r")


def _text(line: str | TooLong) -> str:
    """A line's text; of an over-long one, the start that was kept (for its reject)."""
    return line if isinstance(line, str) else line.head.decode("utf-8", errors="replace")[:KEPT_CHARS]


def _too_long(uri: str, row: int, line: TooLong, limits: Limits, **sides) -> dict:
    return _bad(uri, row, "line_too_long", f"line of {line.size} bytes, over corpus.ingest.max_line_bytes "
                f"({limits.line_bytes}); the reject keeps its first {KEPT_CHARS} characters", **sides)


def _pair_id(uri: str, row: int) -> str:
    return f"{posixpath.basename(uri)}:{row}"


def _bad(uri: str, row: int | None, reason: str, detail: str, src: str | None = None, tgt: str | None = None,
         src_lang=None, tgt_lang=None) -> dict:
    uri = redact_uri(uri)  # the reader used the real URI; the row carries it without credentials
    where = f"{uri}:{row}" if row is not None else uri
    return {"id": _pair_id(uri, row) if row is not None else posixpath.basename(uri), "stage": STAGE,
            "reason": reason, "detail": redact_text(f"{where}: {detail}"), "src_lang": src_lang,
            "tgt_lang": tgt_lang,
            "src_text": src, "tgt_text": tgt, "source": uri, "synthetic": False}


class _Chunk:
    """Raw pairs (columns id, src, tgt, src_lang, tgt_lang, source) and unreadable rows (reject
    dicts) of a unit, given out in chunks of about `size` bytes of text."""

    def __init__(self, unit: PairUnit, size: int):
        self.unit, self.size = unit, size
        self.cols, self.bad, self.bytes = self._empty(), [], 0

    @staticmethod
    def _empty() -> dict[str, list]:
        return {k: [] for k in ("id", "src", "tgt", "src_lang", "tgt_lang", "source")}

    def add(self, uri: str, row: int, src: str, tgt: str, sl=None, tl=None) -> None:
        values = {"id": _pair_id(uri, row), "src": src, "tgt": tgt, "src_lang": sl or self.unit.src_lang,
                  "tgt_lang": tl or self.unit.tgt_lang, "source": redact_uri(uri)}
        for key, value in values.items():
            self.cols[key].append(value)
        self.bytes += len(src) + len(tgt)

    def reject(self, row: dict) -> None:
        self.bad.append(row)
        self.bytes += len(row["src_text"] or "") + len(row["tgt_text"] or "")

    def full(self) -> bool:
        return self.bytes >= self.size

    def take(self) -> tuple[dict[str, list], list[dict]]:
        out = (self.cols, self.bad)
        self.cols, self.bad, self.bytes = self._empty(), [], 0
        return out


def read_chunks(unit: PairUnit, pin: ParallelInput, limits: Limits | None = None,
                chunk_bytes: int = 2 << 20) -> Iterator[tuple[dict[str, list], list[dict]]]:
    """Raw pairs of a unit as columns (id, src, tgt, src_lang, tgt_lang, source) and the rows
    that could not be read (reject dicts naming file, line and field), in chunks of about
    `chunk_bytes` of text: files are streamed (lines in blocks, Parquet by batches), so a unit
    holds a chunk, not its files; two line-aligned files are counted first (a mismatch rejects
    every line). A multi-way document is aligned whole (at most MAX_ALIGN_LINES lines)."""
    limits = limits or Limits.of()
    chunk = _Chunk(unit, chunk_bytes)
    if unit.align:
        steps = _aligned(unit, limits, chunk_bytes, chunk)
    elif len(unit.uris) == 2:
        steps = _line_aligned(unit, limits, chunk_bytes, chunk)
    else:
        steps = _table_rows(unit, pin, limits, chunk_bytes, chunk)
    for _ in steps:  # each step adds a row (or none) to `chunk`
        if chunk.full():
            yield chunk.take()
    yield chunk.take()


def _count(uri: str, limits: Limits, block_bytes: int) -> tuple[int, int]:
    """(lines, lines with text that fit the limit) of a line file, streamed."""
    lines = texts = 0
    for _, line in _lines(uri, limits, block_bytes):
        lines += 1
        texts += isinstance(line, str) and bool(line.strip())
    return lines, texts


def _aligned(unit: PairUnit, limits: Limits, block_bytes: int, chunk: _Chunk) -> Iterator[None]:
    """Two translations of one document aligned by line lengths (a `pivot` input)."""
    pivot_uri, uri = unit.uris
    langs = {"src_lang": unit.src_lang, "tgt_lang": unit.tgt_lang}
    longest = max(_count(pivot_uri, limits, block_bytes)[1], _count(uri, limits, block_bytes)[1])
    if longest > MAX_ALIGN_LINES:  # the alignment is O(n x m) in time and memory: every line rejected, streamed
        why = (f"{longest} lines: more than the {MAX_ALIGN_LINES} one alignment takes (split the documents "
               f"into chapters, one file per chapter and language)")
        for where, side in ((pivot_uri, "src"), (uri, "tgt")):
            for row, line in _lines(where, limits, block_bytes):
                if isinstance(line, TooLong):
                    chunk.reject(_too_long(where, row, line, limits, **{side: _text(line)}, **langs))
                elif line.strip():
                    chunk.reject(_bad(where, row, "alignment_failed", f"{pivot_uri} and {uri}: {why}",
                                      **{side: line.strip()}, **langs))
                yield
        return
    sides = []
    for where, side in ((pivot_uri, "src"), (uri, "tgt")):
        kept = []  # (line number, text) of the lines with text
        for row, line in _lines(where, limits, block_bytes):
            if isinstance(line, TooLong):
                chunk.reject(_too_long(where, row, line, limits, **{side: _text(line)}, **langs))
            elif line.strip():
                kept.append((row, line.strip()))
        sides.append(kept)
    src, tgt = sides
    beads = align_lines([len(s) for _, s in src], [len(t) for _, t in tgt])
    lonely = sum(len(s) + len(t) for s, t in beads if not (s and t))
    failed = lonely > (len(src) + len(tgt)) / 2
    why = f"{lonely} of the {len(src) + len(tgt)} lines found no partner: not the same text"
    for s, t in beads:
        a = " ".join(src[x][1] for x in s)
        b = " ".join(tgt[x][1] for x in t)
        row = tgt[t[0]][0] if t else src[s[0]][0]
        where = uri if t else pivot_uri
        if failed:
            chunk.reject(_bad(where, row, "alignment_failed", f"{pivot_uri} and {uri}: {why}", a or None, b or None,
                              **langs))
        elif not (s and t):
            chunk.reject(_bad(where, row, "unaligned", f"no line of {uri if s else pivot_uri} aligns with this one",
                              a or None, b or None, **langs))
        elif (na := _numerals(a)) and (nb := _numerals(b)) and na != nb:
            # numbered headings and articles that disagree: the length alignment drifted here
            chunk.reject(_bad(where, row, "number_mismatch", f"numbers {sorted(na)} in {pivot_uri} but "
                              f"{sorted(nb)} here", a, b, **langs))
        else:
            chunk.add(uri, row, a, b)
        yield


def _line_aligned(unit: PairUnit, limits: Limits, block_bytes: int, chunk: _Chunk) -> Iterator[None]:
    """Two line-aligned files (<stem>.<src>, <stem>.<tgt>), read side by side."""
    src_uri, tgt_uri = unit.uris
    langs = {"src_lang": unit.src_lang, "tgt_lang": unit.tgt_lang}
    (n_src, _), (n_tgt, _) = _count(src_uri, limits, block_bytes), _count(tgt_uri, limits, block_bytes)
    pairs = zip_longest(_lines(src_uri, limits, block_bytes), _lines(tgt_uri, limits, block_bytes))
    if n_src != n_tgt:
        detail = f"{n_src} lines, but {tgt_uri} has {n_tgt}: the files are not line-aligned"
        for i, (s, t) in enumerate(pairs, start=1):
            chunk.reject(_bad(src_uri, i, "line_count_mismatch", detail, _text(s[1]) if s else None,
                              _text(t[1]) if t else None, **langs))
            yield
        return
    for (i, s), (_, t) in pairs:
        if isinstance(s, TooLong) or isinstance(t, TooLong):
            where, line = (src_uri, s) if isinstance(s, TooLong) else (tgt_uri, t)
            chunk.reject(_too_long(where, i, line, limits, src=_text(s), tgt=_text(t), **langs))
        else:
            chunk.add(src_uri, i, s, t)
        yield


def _table_rows(unit: PairUnit, pin: ParallelInput, limits: Limits, block_bytes: int,
                chunk: _Chunk) -> Iterator[None]:
    """A table file of pairs: .tsv, .jsonl / .json lines, or .parquet (by batches)."""
    uri = unit.uris[0]
    base, _ = _strip_compression(uri)
    fmt = base.lower().rsplit(".", 1)[-1]
    langs = {"src_lang": unit.src_lang, "tgt_lang": unit.tgt_lang}
    if fmt == "tsv":
        if not (unit.src_lang and unit.tgt_lang):
            raise ParallelInputError(f"{uri}: a TSV of pairs needs src_lang and tgt_lang on its parallel input")
        for i, line in _lines(uri, limits, block_bytes):
            if isinstance(line, TooLong):
                chunk.reject(_too_long(uri, i, line, limits, src=_text(line), **langs))
            elif line.strip():
                parts = line.split("\t")
                if len(parts) != 2:
                    chunk.reject(_bad(uri, i, "bad_row", f"expected src<TAB>tgt, found {len(parts)} field(s)",
                                      line, None, **langs))
                else:
                    chunk.add(uri, i, parts[0], parts[1])
            yield
        return
    if fmt == "parquet":
        records = _parquet_records(uri, pin, block_bytes, chunk)
    else:
        records = _json_records(uri, limits, block_bytes, chunk)
    for row, obj in records:
        src, tgt = obj.get(pin.src_field), obj.get(pin.tgt_field)
        sl = obj.get(pin.src_lang_field) if pin.src_lang_field else None
        tl = obj.get(pin.tgt_lang_field) if pin.tgt_lang_field else None
        missing = [f for f, v in ((pin.src_field, src), (pin.tgt_field, tgt)) if not isinstance(v, str)]
        if missing:
            chunk.reject(_bad(uri, row, "bad_row", f"field(s) {missing} missing or not text",
                              src if isinstance(src, str) else None, tgt if isinstance(tgt, str) else None))
        else:
            chunk.add(uri, row, src, tgt, sl, tl)  # a side without a language is left to language ID
        yield


def _parquet_records(uri: str, pin: ParallelInput, block_bytes: int, chunk: _Chunk) -> Iterator[tuple[int, dict]]:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f, buffer_size=min(block_bytes, 8 << 20))
        names = pf.schema_arrow.names
        fields = list(dict.fromkeys([pin.src_field, pin.tgt_field] +
                                    [x for x in (pin.src_lang_field, pin.tgt_lang_field) if x]))
        missing = [x for x in fields if x not in names]
        if missing:
            chunk.reject(_bad(uri, None, "bad_row", f"missing field(s) {missing}; columns are {names} "
                              f"(set src_field / tgt_field of this parallel input)"))
            return
        meta = pf.metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        rows = max(1, meta.num_rows * block_bytes // max(1, size))
        row = 1
        for batch in pf.iter_batches(batch_size=rows, columns=fields, use_threads=False):
            for r in batch.to_pylist():
                yield row, r
                row += 1


def _json_records(uri: str, limits: Limits, block_bytes: int, chunk: _Chunk) -> Iterator[tuple[int, dict]]:
    for i, line in _lines(uri, limits, block_bytes):
        if isinstance(line, TooLong):
            chunk.reject(_too_long(uri, i, line, limits, src=_text(line)))
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            chunk.reject(_bad(uri, i, "bad_row", f"not JSON: {e.msg}", line))
            continue
        except (ValueError, RecursionError) as e:  # an integer of over 4300 digits, nesting deeper than the stack
            chunk.reject(_bad(uri, i, "bad_row", f"not readable JSON: {e}", line))
            continue
        if not isinstance(obj, dict):
            chunk.reject(_bad(uri, i, "bad_row", "a JSON line must be an object", line))
            continue
        yield i, obj


# ---------------------------------------------------------------- checks


def estimated_tokens(texts: list[str], scripts: list[str]) -> np.ndarray:
    return np.array([len(t) / CHARS_PER_TOKEN.get(s, DEFAULT_CHARS_PER_TOKEN) for t, s in zip(texts, scripts)])


def _declared(code: str | None, script: str, text: str) -> str | None:
    if not code:
        return None
    try:
        return normalize(code, script, text)
    except ValueError:
        return None


def _side_language(declared: str | None, raw: str | None, text: str, lid: tuple[str, float, list], script: str,
                   cfg: ParallelConfig, lid_threshold, known: frozenset[str]) -> tuple[str | None, str | None, str]:
    """(label, reject reason or None, detail) for one side of a pair. A declared language that
    no language-ID model knows is never called a mismatch: nothing can judge it."""
    top_lang, top_score, top = lid
    if raw and declared is None:
        return None, "bad_row", f"language {raw!r} is not a language code"
    if declared is None:
        if is_unidentified(top_lang) or top_score < lid_threshold(top_lang):
            return None, "unidentified", f"no language given; best {top_lang}:{top_score:.3f}"
        declared = top_lang
    if not langid.script_fits(declared, script):
        return declared, "script_mismatch", f"{declared} in {script}"
    if (cfg.check_language and top and language(declared) in known and language(top_lang) != language(declared)
            and top_score >= cfg.mismatch_min_score):
        candidates = {language(c["lang"]) for c in top}
        if language(declared) not in candidates:
            return declared, "language_mismatch", f"declared {declared}, detected {top_lang}:{top_score:.3f}"
    return declared, None, ""


def check_pairs(cols: dict[str, list], cfg: CorpusConfig) -> tuple[pa.Table, list[dict]]:
    """Normalise both sides and run every pair check; (kept pairs, reject dicts)."""
    pcfg = cfg.parallel
    n = len(cols["id"])
    if not n:
        return PAIR_SCHEMA.empty_table(), []
    src = [normalize_text(t or "", cfg.clean, [])[0] for t in cols["src"]]
    tgt = [normalize_text(t or "", cfg.clean, [])[0] for t in cols["tgt"]]
    s_scripts, t_scripts = langid.detect_scripts(src), langid.detect_scripts(tgt)
    lid_cfg = cfg.langid
    s_lid = langid.predict_top(src, lid_cfg, lid_cfg.top_k, lid_cfg.max_chars, s_scripts)
    t_lid = langid.predict_top(tgt, lid_cfg, lid_cfg.top_k, lid_cfg.max_chars, t_scripts)
    s_top, t_top = s_lid[2].to_pylist(), t_lid[2].to_pylist()
    s_tok, t_tok = estimated_tokens(src, s_scripts), estimated_tokens(tgt, t_scripts)
    cache: dict[str, float] = {}
    known = frozenset().union(*(langid.known_languages(m.path) for m in lid_cfg.models))

    def threshold(label: str) -> float:
        if label not in cache:
            cache[label] = langid.threshold(label, lid_cfg)
        return cache[label]

    keep, rejects = [], []
    out = {k: [] for k in ("src_lang", "tgt_lang", "src_score", "tgt_score")}
    for i in range(n):
        s, t = src[i], tgt[i]
        sl = _declared(cols["src_lang"][i], s_scripts[i], s)
        tl = _declared(cols["tgt_lang"][i], t_scripts[i], t)
        reason, detail = None, ""
        if not s or not t:
            reason, detail = "empty_after_cleaning", "source side empty" if not s else "target side empty"
        elif min(len(s), len(t)) < pcfg.min_chars:
            reason, detail = "too_short", f"{min(len(s), len(t))} < {pcfg.min_chars} characters"
        elif max(len(s), len(t)) > pcfg.max_chars:
            reason, detail = "too_long", f"{max(len(s), len(t))} > {pcfg.max_chars} characters"
        elif s.casefold() == t.casefold():
            reason, detail = "copy", "both sides are the same text"
        else:
            ratio = (max(s_tok[i], t_tok[i]) + 2) / (min(s_tok[i], t_tok[i]) + 2)
            if ratio > pcfg.max_length_ratio:
                reason, detail = "length_ratio", f"{ratio:.2f} > {pcfg.max_length_ratio}"
        if reason is None:
            sl, reason, detail = _side_language(sl, cols["src_lang"][i], s, (s_lid[0][i], s_lid[1][i], s_top[i]),
                                                s_scripts[i], pcfg, threshold, known)
            if reason:
                detail = f"source: {detail}"
        if reason is None:
            tl, reason, detail = _side_language(tl, cols["tgt_lang"][i], t, (t_lid[0][i], t_lid[1][i], t_top[i]),
                                                t_scripts[i], pcfg, threshold, known)
            if reason:
                detail = f"target: {detail}"
        if reason is None and sl == tl:
            reason, detail = "same_language", f"both sides {sl}"
        if reason:
            rejects.append({"id": cols["id"][i], "stage": STAGE, "reason": reason, "detail": detail,
                            "src_lang": sl or cols["src_lang"][i], "tgt_lang": tl or cols["tgt_lang"][i],
                            "src_text": cols["src"][i], "tgt_text": cols["tgt"][i], "source": cols["source"][i],
                            "synthetic": False})
            continue
        keep.append(i)
        out["src_lang"].append(sl)
        out["tgt_lang"].append(tl)
        out["src_score"].append(float(s_lid[1][i]))
        out["tgt_score"].append(float(t_lid[1][i]))
    table = pa.table({
        "id": [cols["id"][i] for i in keep], "src_lang": out["src_lang"], "tgt_lang": out["tgt_lang"],
        "src_text": [src[i] for i in keep], "tgt_text": [tgt[i] for i in keep],
        "src_score": pa.array(out["src_score"], pa.float32()), "tgt_score": pa.array(out["tgt_score"], pa.float32()),
        "src_script": [s_scripts[i] for i in keep], "tgt_script": [t_scripts[i] for i in keep],
        "source": [cols["source"][i] for i in keep], "synthetic": [False] * len(keep),
        "origin_id": pa.nulls(len(keep), pa.string()),
    }, schema=PAIR_SCHEMA)
    return table, rejects


def rejects_table(rows: list[dict]) -> pa.Table:
    if not rows:
        return PAIR_REJECT_SCHEMA.empty_table()
    return pa.table({f.name: [r.get(f.name) for r in rows] for f in PAIR_REJECT_SCHEMA}, schema=PAIR_REJECT_SCHEMA)


# ---------------------------------------------------------------- units (committed, resumable)


def unit_fingerprint(unit: PairUnit, cfg: CorpusConfig) -> str:
    h = hashlib.sha256()
    dump = cfg.model_dump(mode="json")
    pin = dump["parallel"]["inputs"][unit.input_index]
    rules = {k: v for k, v in dump["parallel"].items() if k not in ("inputs", "heldout_fraction", "alpha")}
    h.update(json.dumps([pin, rules, dump["clean"], dump["langid"], dump["ingest"]["max_line_bytes"], VERSION],
                        sort_keys=True).encode())
    h.update(langid.models_digest(cfg.langid.models).encode())
    for uri in unit.uris:
        fs, path = get_fs(uri)
        h.update(f"{uri}|{fs.ukey(path)}".encode())
    return h.hexdigest()[:20]


def run_unit(unit: PairUnit, out_dir: str, cfg: CorpusConfig) -> dict:
    """Read and check one unit unless its committed result exists (`done.json` is the commit)."""
    d = join(out_dir, "_units", f"pairs-{unit_fingerprint(unit, cfg)}")
    done = join(d, "done.json")
    if exists(done):
        return {**read_json(done), "resumed": True}
    t = time.monotonic()
    n_input = kept = 0
    with tempfile.TemporaryDirectory() as tmp:  # chunk by chunk into local files, then put in place
        local = {name: os.path.join(tmp, f"{name}.parquet") for name in ("pairs", "rejects")}
        with pq.ParquetWriter(local["pairs"], PAIR_SCHEMA, compression="zstd") as pairs_out, \
                pq.ParquetWriter(local["rejects"], PAIR_REJECT_SCHEMA, compression="zstd") as rejects_out:
            for cols, bad in read_chunks(unit, cfg.parallel.inputs[unit.input_index], Limits.of(cfg.ingest),
                                         cfg.ingest.batch_bytes):
                pairs, rejects = check_pairs(cols, cfg)
                pairs_out.write_table(pairs)
                rejects_out.write_table(rejects_table(bad + rejects))
                n_input += len(cols["id"]) + len(bad)
                kept += pairs.num_rows
        for name, path in local.items():
            put_local(path, join(d, f"{name}.parquet"))
    info = {"unit": str(unit), "dir": d, "input": n_input, "kept": kept, "seconds": round(time.monotonic() - t, 3)}
    write_json(done, info)
    return {**info, "resumed": False}


# ---------------------------------------------------------------- dedup and shards


def pair_key(a: str, b: str) -> str:
    """The folder of a language pair: labels in sorted order ('eng_Latn-fra_Latn')."""
    return "-".join(sorted((a, b)))


def _dedup_key(sl: str, s: str, tl: str, t: str) -> bytes:
    sides = sorted([(sl, " ".join(s.casefold().split())), (tl, " ".join(t.casefold().split()))])
    return hashlib.blake2b(json.dumps(sides, ensure_ascii=False).encode(), digest_size=16).digest()


class PairSink:
    """Pairs, batch by batch, into shards per language pair and split; exact dedup over
    everything added (memory: 16 bytes and an id per kept pair)."""

    def __init__(self, corpus_dir: str, cfg: CorpusConfig):
        remove(join(corpus_dir, PAIRS))
        self.dir, self.cfg = corpus_dir, cfg
        self.seen: dict[bytes, str] = {}
        self.writers: dict[tuple[str, str], RollingParquet] = {}
        self.stats: dict[str, dict] = {}

    def _writer(self, key: str, split: str) -> RollingParquet:
        if (key, split) not in self.writers:
            shard = self.cfg.shard
            self.writers[key, split] = RollingParquet(
                lambda n, k=key, s=split: join(self.dir, f"{PAIRS}/{k}/{s}-{n:05d}.parquet"), PAIR_SCHEMA,
                shard.max_rows_per_shard, shard.compression, shard.row_group_rows, shard.max_shard_bytes)
        return self.writers[key, split]

    def add(self, pairs: pa.Table) -> list[dict]:
        """Write the pairs that are not duplicates; return the duplicates as reject dicts."""
        if not pairs.num_rows:
            return []
        rows = pairs.to_pylist()
        keep, dups = [], []
        for i, r in enumerate(rows):
            k = _dedup_key(r["src_lang"], r["src_text"], r["tgt_lang"], r["tgt_text"])
            if k in self.seen:
                dups.append({"id": r["id"], "stage": STAGE, "reason": "duplicate", "detail": f"same pair as {self.seen[k]}",
                             **{f: r[f] for f in ("src_lang", "tgt_lang", "src_text", "tgt_text", "source", "synthetic")}})
            else:
                self.seen[k] = r["id"]
                keep.append(i)
        kept = pairs.take(pa.array(keep, pa.int64()))
        keys = [pair_key(a, b) for a, b in zip(kept["src_lang"].to_pylist(), kept["tgt_lang"].to_pylist())]
        held = heldout_mask(kept["id"].to_pylist(), self.cfg.parallel.heldout_fraction, set())
        synthetic = kept["synthetic"].to_pylist()
        held = [h and not s for h, s in zip(held, synthetic)]
        tokens = (estimated_tokens(kept["src_text"].to_pylist(), kept["src_script"].to_pylist())
                  + estimated_tokens(kept["tgt_text"].to_pylist(), kept["tgt_script"].to_pylist()))
        for key in sorted(set(keys)):
            st = self.stats.setdefault(key, {"rows": 0, "synthetic_rows": 0, "train_rows": 0, "heldout_rows": 0,
                                             "train_tokens": 0.0, "heldout_tokens": 0.0, "shards": 0, "bytes": 0})
            for split in ("train", "heldout"):
                idx = [i for i, (k, h) in enumerate(zip(keys, held)) if k == key and h == (split == "heldout")]
                if not idx:
                    continue
                part = kept.take(pa.array(idx, pa.int64()))
                st["rows"] += len(idx)
                st[f"{split}_rows"] += len(idx)
                st[f"{split}_tokens"] += float(tokens[idx].sum())
                st["synthetic_rows"] += sum(synthetic[i] for i in idx)
                self._writer(key, split).write(part)
        return dups

    def close(self) -> dict:
        files = []
        for (key, split) in sorted(self.writers):
            for f in self.writers[key, split].close():
                rel = f["uri"][len(self.dir.rstrip("/")) + 1 :]
                files.append({"path": rel, "pair": key, "split": split, "rows": f["rows"], "bytes": f["bytes"],
                              "sha256": f["sha256"]})
                self.stats[key]["shards"] += 1
                self.stats[key]["bytes"] += f["bytes"]
        pairs = dict(sorted(self.stats.items()))
        for st in pairs.values():
            st["train_tokens"], st["heldout_tokens"] = int(st["train_tokens"] + 0.5), int(st["heldout_tokens"] + 0.5)
        weights = temperature_weights({k: v["train_tokens"] for k, v in pairs.items()}, self.cfg.parallel.alpha)
        for key, st in pairs.items():
            st["weight"] = round(weights[key], 6)
        return {"alpha": self.cfg.parallel.alpha, "pairs": pairs, "files": files,
                "totals": {"rows": sum(v["rows"] for v in pairs.values()),
                           "train_rows": sum(v["train_rows"] for v in pairs.values()),
                           "heldout_rows": sum(v["heldout_rows"] for v in pairs.values()),
                           "synthetic_rows": sum(v["synthetic_rows"] for v in pairs.values()),
                           "pairs": len(pairs), "shards": len(files)}}


def build_report(n_input: int, kept: Counter, rejected: Counter) -> dict:
    """Per language pair: input = kept + rejected by reason."""
    pairs: dict[str, dict] = {}
    for key, n in kept.items():
        pairs.setdefault(key, {"input": 0, "kept": 0, "rejected": {}})["kept"] += n
    for (key, reason), n in rejected.items():
        info = pairs.setdefault(key, {"input": 0, "kept": 0, "rejected": {}})
        info["rejected"][reason] = info["rejected"].get(reason, 0) + n
    for info in pairs.values():
        info["input"] = info["kept"] + sum(info["rejected"].values())
    by_reason: Counter[str] = Counter()
    for (_, reason), n in rejected.items():
        by_reason[reason] += n
    report = {"input": n_input, "kept": sum(kept.values()), "rejected": sum(by_reason.values()),
              "rejected_by_reason": dict(sorted(by_reason.items())), "pairs": dict(sorted(pairs.items()))}
    if report["input"] != report["kept"] + report["rejected"]:
        raise RuntimeError(f"parallel: input {report['input']} != kept {report['kept']} + rejected {report['rejected']}")
    return report


def _key_of(sl, tl) -> str:
    return pair_key(sl or "und", tl or "und")


def prepare_pairs(out_dir: str, cfg: CorpusConfig, reject_writer, extra: pa.Table | None = None) -> tuple[dict, dict]:
    """The parallel half of `prepare`: every unit (resumed when committed), dedup, shards.
    Returns (manifest section, report section); rejects go to `reject_writer(table)`."""
    units = plan(cfg.parallel.inputs)
    sink = PairSink(out_dir, cfg)
    kept: Counter[str] = Counter()
    rejected: Counter[tuple[str, str]] = Counter()
    n_input, start = 0, time.monotonic()

    def count_rejects(table: pa.Table) -> None:
        for sl, tl, reason, synthetic in zip(table["src_lang"].to_pylist(), table["tgt_lang"].to_pylist(),
                                             table["reason"].to_pylist(), table["synthetic"].to_pylist()):
            rejected[_key_of(sl, tl), reason] += 1
        reject_writer(table)

    def add(pairs: pa.Table) -> None:
        dups = rejects_table(sink.add(pairs))
        count_rejects(dups)
        for sl, tl in zip(pairs["src_lang"].to_pylist(), pairs["tgt_lang"].to_pylist()):
            kept[_key_of(sl, tl)] += 1
        for r in dups.to_pylist():
            kept[_key_of(r["src_lang"], r["tgt_lang"])] -= 1

    for i, unit in enumerate(units):
        info = run_unit(unit, out_dir, cfg)
        n_input += info["input"]
        count_rejects(read_parquet(join(info["dir"], "rejects.parquet")))
        add(read_parquet(join(info["dir"], "pairs.parquet")))
        elapsed = time.monotonic() - start
        log.info("prepare pairs [%d/%d] %s: %d of %d kept%s; %.0f pairs/s, ETA %.0fs", i + 1, len(units), unit,
                 info["kept"], info["input"], " (resumed)" if info["resumed"] else "",
                 n_input / max(elapsed, 1e-9), elapsed / (i + 1) * (len(units) - i - 1))
    if extra is not None and extra.num_rows:
        n_input += extra.num_rows
        add(extra)
    section = sink.close()
    report = build_report(n_input, +kept, rejected)
    report["synthetic"] = int(section["totals"]["synthetic_rows"])
    log.info("prepare pairs: %d input, %d kept in %d language pairs, %d rejected %s", report["input"], report["kept"],
             section["totals"]["pairs"], report["rejected"], report["rejected_by_reason"])
    return section, report


def pair_paths(manifest: dict, corpus_dir: str, split: str = "train", keys: list[str] | None = None) -> list[str]:
    """Pair shard files of a split (optionally only some language pairs) from a manifest."""
    section = manifest.get("parallel") or {}
    return [join(corpus_dir, f["path"]) for f in section.get("files", [])
            if f["split"] == split and (keys is None or f["pair"] in keys)]


def read_pairs(manifest: dict, corpus_dir: str, split: str = "heldout", keys: list[str] | None = None) -> pa.Table:
    return concat([read_parquet(u) for u in pair_paths(manifest, corpus_dir, split, keys)], PAIR_SCHEMA)


def pairs_mask(table: pa.Table, lang: str) -> pa.Array:
    return pc.or_(pc.equal(table["src_lang"], lang), pc.equal(table["tgt_lang"], lang))
