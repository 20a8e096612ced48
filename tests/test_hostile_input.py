"""Hostile input costs bounded time and memory, and is rejected, not lost (issue 31, item 3):
a 2 MB token, a 1 MB id, a 200 MB single line, hostile JSON, over-long Parquet cells and WARC
records, over-long lines in parallel files; the linear rewrites decide as the regular
expressions they replace; retrieval in blocks gives the whole matrix's figures; every stage has
a timeout. No timed assertions: the times are in bench/hostile_bench.py."""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import regex
import torch
from conftest import write

from pipeline.corpus.ingest import KEPT_CHARS, Limits, Part, iter_part, read_part

FRENCH = "Le comité a publié son rapport annuel sur la qualité de l'eau dans les rivières de la région."


def _rejects(batches) -> list[dict]:
    return [r for _, rej in batches for r in rej.to_pylist()]


def _ids(batches) -> list[str]:
    return [i for docs, _ in batches for i in docs["id"].to_pylist()]


# ------------------------------------------------------------------ the same decisions as before


def test_linear_rewrites_decide_as_the_regular_expressions_they_replace():
    """Edge punctuation of a token (was `^P+|P+$`), an id's family (was `(~\\d+)+$`) and the
    sentence split after closing marks (was an unbounded run of them), on random short strings
    over an alphabet of letters, digits (ASCII, Arabic-Indic, superscript), `~`, punctuation,
    symbols inside and outside the BMP, combining marks and newlines."""
    from pipeline.corpus import dedup_partitioned, profiles
    from pipeline.translation import sentences

    old_edges = re.compile(f"^{profiles._punctuation_class()}+|{profiles._punctuation_class()}+$")
    old_suffix = re.compile(r"(~\d+)+$")
    closers = r"[\p{Pe}\p{Pf}\"'»”’]*"
    old_spaced = regex.compile(rf"(?<=\p{{Sentence_Terminal}}{closers})\s+")
    old_unspaced = regex.compile(rf"(?<=\p{{Sentence_Terminal}}{closers})\s*")
    rng = random.Random(31)
    alphabet = list("ab~~19٣¹!.,-«»)」。 \n") + ["\u0301", "\U0001F600", "…", "é", "ж"]
    for _ in range(50_000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        assert dedup_partitioned._family(s) == old_suffix.sub("", s), repr(s)
        token = s.replace(" ", "").replace("\n", "")
        if token:
            assert profiles._strip_edges(token) == old_edges.sub("", token), repr(token)
        assert sentences._SPACED_END.split(s) == old_spaced.split(s), repr(s)
        assert sentences._UNSPACED_END.split(s) == old_unspaced.split(s), repr(s)
    assert dedup_partitioned._family("doc~2~13") == "doc" and dedup_partitioned._family("a~b~1") == "a~b"
    assert profiles.segment("«Bonjour», dit-il... (voilà)!", "whitespace") == ["Bonjour", "dit-il", "voilà"]


def test_a_2mb_token_is_segmented_and_its_document_rejected(tmp_path):
    """A 2 MB token of punctuation between two letters (the input on which `P+$` restarted at
    every character: hours) is segmented; a document holding it is over max_document_chars
    and rejected at ingest, its reject keeping a prefix; with the limit raised it goes through
    every unit stage and the quality filter rejects it."""
    from collections import Counter

    from pipeline.config import CorpusConfig
    from pipeline.corpus.prepare import process_batch
    from pipeline.schema import make_docs

    from pipeline.corpus.profiles import segment

    token = "x" + "-" * (2 << 20) + "y."
    assert segment(f"a {token} b", "whitespace") == ["a", token[:-1], "b"]
    doc = f"{FRENCH} {token} {FRENCH}"
    f = write(tmp_path / "token.jsonl", "".join(json.dumps({"id": i, "text": t}) + "\n"
                                                for i, t in (("n", FRENCH), ("t", doc))))
    batches = list(iter_part(Part(str(f))))
    assert _ids(batches) == ["n"]
    (rej,) = _rejects(batches)
    assert rej["reason"] == "document_too_long" and rej["id"] == f"{f}:2" and rej["stage"] == "ingest"
    assert rej["detail"].startswith(f"{f}:2: field 'text' has {len(doc)} characters")
    assert f"keeps its first {KEPT_CHARS} characters" in rej["detail"] and rej["text"] == doc[:KEPT_CHARS]

    cfg = CorpusConfig()
    cfg.ingest.max_document_chars = 4_000_000
    docs, rejects = read_part(Part(str(f)), limits=Limits.of(cfg.ingest))
    assert docs["id"].to_pylist() == ["n", "t"] and rejects.num_rows == 0
    kept, dropped, _ = process_batch(docs, cfg, Counter())
    reasons = {r["id"]: r["reason"] for t in dropped for r in t.select(["id", "reason"]).to_pylist()}
    assert reasons["t"] == "avg_word_length"


def test_a_1mb_id_is_rejected_and_its_family_found(tmp_path):
    """An id of 1 MB of `~1` suffixes (on which `(~\\d+)+$` took hours) gets its family at
    once, and at ingest it is over max_id_chars: rejected, the row's text kept in part."""
    from pipeline.corpus.dedup_partitioned import _family

    hostile = "d" + "~1" * (1 << 19)
    assert _family(hostile) == "d" and _family(hostile + "x") == hostile + "x"
    f = write(tmp_path / "ids.jsonl", "".join(json.dumps({"id": i, "text": FRENCH}) + "\n" for i in ("a", hostile, "c")))
    batches = list(iter_part(Part(str(f))))
    assert _ids(batches) == ["a", "c"]
    (rej,) = _rejects(batches)
    assert rej["reason"] == "id_too_long" and rej["id"] == f"{f}:2"
    assert f"field 'id' has {len(hostile)} characters, over corpus.ingest.max_id_chars (4096)" in rej["detail"]
    assert rej["text"] == FRENCH and len(rej["detail"]) < 400


def _one_line_file(path, mb: int, compress: bool = False) -> int:
    """A .jsonl whose second line is `mb` MB long, written in 1 MB chunks, between two
    documents; returns that line's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head, chunk, tail = b'{"id": "big", "text": "', ("Bonjour " * (1 << 17)).encode(), b'"}'
    with (gzip.open(path, "wb", compresslevel=1) if compress else open(path, "wb")) as f:
        f.write(json.dumps({"id": "first", "text": FRENCH}).encode() + b"\n" + head)
        for _ in range(mb):
            f.write(chunk)
        f.write(tail + b"\n" + json.dumps({"id": "third", "text": FRENCH}).encode() + b"\n")
    return len(head) + mb * len(chunk) + len(tail)


def test_a_200mb_line_is_rejected_in_bounded_memory(tmp_path):
    """A 200 MB line is read through without being held: the task's Python memory peaks under
    two batches (`batch_bytes`, 2 MB), the line is rejected as line_too_long with its number
    (the lines after it keep theirs) and a 4096-character prefix."""
    f = tmp_path / "one.jsonl"
    size = _one_line_file(f, 200)
    list(iter_part(Part(str(write(tmp_path / "warm.jsonl", '{"text": "x"}\n')))))  # imports before measuring
    batch_bytes = 2 << 20
    tracemalloc.start()
    try:
        batches = list(iter_part(Part(str(f)), batch_bytes=batch_bytes))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * batch_bytes, peak
    assert _ids(batches) == ["first", "third"]
    (rej,) = _rejects(batches)
    assert rej["reason"] == "line_too_long" and rej["id"] == f"{f}:2"
    assert rej["detail"] == (f"{f}:2: line of {size} bytes, over corpus.ingest.max_line_bytes ({16 << 20}); the "
                             f"reject keeps its first {KEPT_CHARS} characters")
    assert rej["text"] == ('{"id": "big", "text": "' + "Bonjour " * 1000)[:KEPT_CHARS]


def test_a_long_line_in_a_compressed_file_through_prepare_is_counted(tmp_path, demo_corpus_config):
    """Through the whole corpus phase, from a .jsonl.gz: the 40 MB line is a reject of the report
    and of the rejects files, and input = kept + unidentified + rejected."""
    from pipeline.corpus.prepare import prepare

    cfg = demo_corpus_config.model_copy(deep=True)
    cfg.ingest.max_line_bytes = 8 << 20
    _one_line_file(tmp_path / "in" / "one.jsonl.gz", 40, compress=True)
    report = prepare([str(tmp_path / "in" / "*")], str(tmp_path / "out"), cfg)
    assert report["input"] == 3 == report["kept"] + report["unidentified"] + report["rejected"]
    assert report["rejected_by_reason"].get("line_too_long") == 1
    rejects = pa.concat_tables([pq.read_table(p) for p in (tmp_path / "out" / "rejects").glob("*.parquet")])
    assert "line_too_long" in rejects["reason"].to_pylist()


@pytest.mark.parametrize("batch_bytes", [256, 1024, 1 << 20])
def test_line_limits_hold_at_the_boundary_in_every_path(tmp_path, batch_bytes):
    """Lines of exactly max_line_bytes are documents, one byte more is line_too_long, whether
    the line sits inside a block, waits in the temporary file (longer than half a block) or
    is read through; every other line keeps its number and text, as a naive reading gives."""
    limit = 3000

    def line(i: int, size: int) -> str:  # a JSON line of `size` bytes (or the shortest it can be)
        pad = max(0, size - len(json.dumps({"text": f"{i} "}).encode()))
        return json.dumps({"text": f"{i} " + "é" * (pad // 2) + "a" * (pad % 2)}, ensure_ascii=False)

    rng = random.Random(batch_bytes)
    lines = ["\ufeff" + line(0, 20)] + [line(i, rng.choice([5, 50, 400, limit, limit + 1, 9000])) for i in range(1, 200)]
    assert {len(x.encode()) for x in lines} >= {limit, limit + 1}
    f = write(tmp_path / "b.jsonl", "\n".join(lines))  # the last line without a newline
    batches = list(iter_part(Part(str(f)), batch_bytes=batch_bytes, limits=Limits(limit, 1_000_000, 4096)))
    fits = [len(x.encode()) <= limit for x in lines]
    assert _ids(batches) == [f"b.jsonl:{no}" for no, ok in enumerate(fits, start=1) if ok]
    rejects = _rejects(batches)
    assert [r["id"] for r in rejects] == [f"{f}:{no}" for no, ok in enumerate(fits, start=1) if not ok]
    assert {r["reason"] for r in rejects} == {"line_too_long"}
    texts = [t for docs, _ in batches for t in docs["text"].to_pylist()]
    assert texts == [json.loads(x.lstrip("\ufeff"))["text"] for x, ok in zip(lines, fits) if ok]


def test_hostile_json_is_a_reject_not_a_crash(tmp_path):
    """Nesting deeper than the stack and an integer of 5,000 digits raise other errors than
    JSONDecodeError in `json.loads`: each is a malformed_json reject, the file read on."""
    f = write(tmp_path / "j.jsonl", "[" * 200_000 + "\n" + '{"id": 1' + "1" * 5000 + ', "text": "x"}\n'
              + json.dumps({"text": FRENCH}) + "\n")
    docs, rej = read_part(Part(str(f)))
    assert docs["id"].to_pylist() == ["j.jsonl:3"]
    assert rej["reason"].to_pylist() == ["malformed_json"] * 2
    assert "recursion" in rej["detail"][0].as_py() and "4300" in rej["detail"][1].as_py()


def test_parquet_is_read_by_slices_and_overlong_cells_rejected(tmp_path):
    """One row group of 3,000 rows is read in slices of about `batch_bytes`, the batches
    together giving what one read gives; a 3M-character cell is document_too_long (cut in
    Arrow, its reject keeping a prefix) and a 5,000-character id is id_too_long."""
    texts = [f"{FRENCH} {i}" for i in range(3000)]
    ids = [f"p{i}" for i in range(3000)]
    texts[10] = "y" * 3_000_000
    ids[20] = "i" * 5000
    f = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": ids, "text": texts, "other": [b"z" * 100] * 3000}), f, row_group_size=10_000)
    assert pq.ParquetFile(f).metadata.num_row_groups == 1
    sliced = list(iter_part(Part(str(f)), batch_bytes=64 << 10))
    whole = list(iter_part(Part(str(f)), batch_bytes=1 << 30))
    assert len(sliced) > 10 and len(whole) == 1
    assert _ids(sliced) == _ids(whole) == [i for k, i in enumerate(ids) if k not in (10, 20)]
    rejects = _rejects(sliced)
    assert rejects == _rejects(whole)
    assert [(r["id"], r["reason"]) for r in rejects] == [(f"{f}:11", "document_too_long"), (f"{f}:21", "id_too_long")]
    assert rejects[0]["text"] == "y" * KEPT_CHARS and "'text' has 3000000 characters" in rejects[0]["detail"]


def _warc(records: list[tuple[str, bytes]]) -> bytes:
    from fastwarc.warc import WarcRecord, WarcRecordType

    buf = io.BytesIO()
    for uri, body in records:
        rec = WarcRecord()
        rec.init_headers(record_type=WarcRecordType.response)
        rec.headers["WARC-Target-URI"] = uri
        rec.headers["Content-Type"] = "application/http; msgtype=response"
        rec.set_bytes_content(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body)
        rec.write(buf)
    return buf.getvalue()


def test_warc_is_read_record_by_record_and_a_huge_record_skipped(tmp_path):
    """WARC records come in batches of about `batch_bytes`; a record whose payload is over
    max_line_bytes is rejected unread (document_too_long, its start kept), the next one read."""
    pages = [(f"https://example.org/{i}", f"{FRENCH} {i}".encode()) for i in range(40)]
    pages[5] = ("https://example.org/huge", b"z" * (3 << 20))
    f = write(tmp_path / "crawl.warc.gz", gzip.compress(_warc(pages)))
    batches = list(iter_part(Part(str(f)), batch_bytes=1024, limits=Limits(1 << 20, 2_000_000, 4096)))
    assert len(batches) > 3
    texts = [t for docs, _ in batches for t in docs["text"].to_pylist()]
    assert texts == [p.decode() for u, p in pages if not u.endswith("huge")]
    (rej,) = _rejects(batches)
    assert rej["reason"] == "document_too_long" and rej["id"] == f"{f}:6"
    assert "https://example.org/huge: record payload of" in rej["detail"] and rej["text"] == "z" * KEPT_CHARS


def test_parallel_files_are_read_in_chunks_and_long_lines_rejected(tmp_path):
    """Line-aligned files, a TSV and a JSONL of pairs are read in chunks: small chunks give the
    pairs and rejects of one chunk; a line over max_line_bytes is a line_too_long reject of its
    pair (both sides kept in part), and the lines after it keep their numbers."""
    from pipeline.config import ParallelInput
    from pipeline.corpus.parallel import plan, read_chunks

    n = 300
    src = [f"The committee published report number {i}." for i in range(n)]
    tgt = [f"Le comité a publié le rapport numéro {i}." for i in range(n)]
    src[7] = "x" * 5000
    write(tmp_path / "a" / "c.en", "\n".join(src) + "\n")
    write(tmp_path / "a" / "c.fr", "\n".join(tgt) + "\n")
    write(tmp_path / "b" / "p.tsv", "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt)))
    write(tmp_path / "c" / "p.jsonl", "".join(json.dumps({"src": s, "tgt": t}) + "\n" for s, t in zip(src, tgt)))
    limits = Limits(4096, 2_000_000, 4096)
    for folder in ("a", "b", "c"):
        pin = ParallelInput(path=str(tmp_path / folder / "*"), src_lang="en", tgt_lang="fr")
        (unit,) = plan([pin])
        small = list(read_chunks(unit, pin, limits, chunk_bytes=1024))
        one = list(read_chunks(unit, pin, limits, chunk_bytes=1 << 30))
        assert len(small) > 5 and len(one) == 1
        assert [i for c, _ in small for i in c["id"]] == one[0][0]["id"]
        assert [t for c, _ in small for t in c["tgt"]] == one[0][0]["tgt"] == [t for k, t in enumerate(tgt) if k != 7]
        bad = [b for _, rows in small for b in rows]
        assert bad == one[0][1] and [(b["reason"], b["id"]) for b in bad] == [("line_too_long", f"{unit.uris[0].rsplit('/', 1)[1]}:8")]
        assert "line of 5" in bad[0]["detail"] and len(bad[0]["src_text"] or bad[0]["tgt_text"]) <= KEPT_CHARS
        assert one[0][0]["id"][7] == f"{unit.uris[0].rsplit('/', 1)[1]}:9"


# ------------------------------------------------------------------ retrieval, timeouts


def test_retrieval_in_blocks_gives_the_whole_matrix_figures():
    """Accuracy by cosine and by ratio margin, computed in blocks of any size (one row, a few,
    all), equals the figures of the whole similarity matrix, ties (duplicated vectors) included."""
    from pipeline.evaluation.retrieval import accuracy, ratio_margin

    def whole(za, zb, margin):  # the previous implementation: the n x n matrix at once
        sim = za @ zb.T
        if margin:
            sim = ratio_margin(sim)
        target = torch.arange(len(za))
        return float((sim.argmax(1) == target).float().mean()), float((sim.argmax(0) == target).float().mean())

    g = torch.Generator().manual_seed(31)
    for n, d in ((1, 8), (3, 8), (97, 16), (400, 32)):
        za = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
        zb = torch.nn.functional.normalize(za + 1.2 * torch.randn(n, d, generator=g), dim=-1)
        if n > 10:
            zb[5], za[7], zb[9] = zb[3], za[2], za[9]
        for margin in (False, True):
            expect = whole(za, zb, margin)
            assert 0 < expect[0] < 1 or n < 10
            for cells in (1, 3 * n, 50 * n, 1 << 30):
                assert accuracy(za, zb, margin, block_cells=cells) == expect, (n, margin, cells)


def test_every_stage_has_a_default_timeout():
    """Each Prefect task the flows run through `stage` gets a finite timeout by default, and a
    stage name that is none of them is a config error naming the field."""
    from pydantic import ValidationError

    from pipeline.config import STAGE_TIMEOUTS, PipelineConfig
    from tasks import stage
    from tasks.corpus import prepare_corpus_task
    from tasks.evaluate import evaluate_task
    from tasks.register import register_task
    from tasks.train import finetune_task, pretrain_task, train_tokenizer_task, translate_train_task

    cfg = PipelineConfig()
    tasks = (prepare_corpus_task, train_tokenizer_task, pretrain_task, finetune_task, translate_train_task,
             evaluate_task, register_task)
    assert {t.name for t in tasks} == set(STAGE_TIMEOUTS)
    for t in tasks:
        assert stage(t, cfg).timeout_seconds == STAGE_TIMEOUTS[t.name] > 0
    with pytest.raises(ValidationError, match="timeout_seconds"):
        PipelineConfig.model_validate({"orchestration": {"timeout_seconds": {"pretrian": 60}}})
