import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, read_file, write

from pipeline.config import CorpusConfig
from pipeline.storage import expand

UDHR = SHARED_DATA / "udhr"


def test_jsonl_keeps_ids_and_rejects_bad_lines_without_losing_the_rest(tmp_path):
    f = write(tmp_path / "a.jsonl", b"".join([
        '{"id": "d1", "text": "première ligne"}\n'.encode(),
        b'{"id": "d2", "text": "cut off\n',                       # malformed JSON
        b'{"id": "d3", "text": "caf\xe9 latin-1 bytes"}\n',        # invalid UTF-8
        b'{"id": "d4", "title": "no text"}\n',                     # missing text
        b'{"id": "d5", "text": 42}\n',                             # text not a string
        b'["not", "an", "object"]\n',
        b"\n",                                                     # blank line: not a document
        b'{"text": "no id here"}\n',
    ]))
    docs, rej = read_file(str(f))
    assert docs["id"].to_pylist() == ["d1", "a.jsonl:8"]
    assert docs["text"].to_pylist() == ["première ligne", "no id here"]
    reasons = dict(zip(rej["id"].to_pylist(), rej["reason"].to_pylist()))
    assert reasons == {f"{f}:2": "malformed_json", f"{f}:3": "invalid_utf8", f"{f}:4": "missing_text",
                       f"{f}:5": "text_not_string", f"{f}:6": "malformed_json"}
    assert all(d.startswith(f"{f}:") for d in rej["detail"].to_pylist())
    assert set(rej["stage"].to_pylist()) == {"ingest"}
    assert rej.filter(pa.compute.equal(rej["reason"], "invalid_utf8"))["text"][0].as_py().startswith('{"id": "d3"')


def test_txt_one_document_per_line(tmp_path):
    f = write(tmp_path / "b.txt", "eins zwei drei\n\nvier fünf sechs\n")
    docs, rej = read_file(str(f))
    assert docs["id"].to_pylist() == ["b.txt:1", "b.txt:3"]
    assert rej.num_rows == 0


def test_parquet_text_column_and_nulls(tmp_path):
    f = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["x", "y", None], "text": ["hola mundo", None, "sin id"]}), f)
    docs, rej = read_file(str(f))
    assert docs["id"].to_pylist() == ["x", "c.parquet:3"]
    assert rej["reason"].to_pylist() == ["missing_text"]


def test_parquet_without_text_column_rejects_every_row(tmp_path):
    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), f)
    docs, rej = read_file(str(f))
    assert docs.num_rows == 0 and rej.num_rows == 2
    assert "no column 'text'" in rej["detail"][0].as_py()


def test_empty_file_is_a_reject_not_a_crash(tmp_path):
    f = write(tmp_path / "empty.jsonl", "")
    docs, rej = read_file(str(f))
    assert docs.num_rows == 0
    assert rej["reason"].to_pylist() == ["empty_file"] and rej["id"][0].as_py() == str(f)


def test_unsupported_file_is_a_reject_naming_it_and_the_folder_still_runs(tmp_path):
    from pipeline.corpus.prepare import prepare

    f = write(tmp_path / "in" / "e.csv", "text\nhello\n")
    write(tmp_path / "in" / "ok.txt", "Le lac gèle en hiver et la neige couvre les collines du nord.\n")
    docs, rej = read_file(str(f))
    assert docs.num_rows == 0 and rej["reason"].to_pylist() == ["unsupported_format"]
    assert rej["id"][0].as_py() == str(f) and "e.csv" in rej["detail"][0].as_py()
    report = prepare([str(tmp_path / "in")], str(tmp_path / "out"))
    assert report["input"] == 2 and report["kept"] == 1
    assert report["rejected_by_reason"] == {"unsupported_format": 1}


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.bz2", ".jsonl.xz", ".jsonl.zst", ".txt.gz"])
def test_compressed_line_files_read_like_plain_ones_and_split_into_units(tmp_path, suffix):
    import bz2
    import gzip
    import lzma

    import zstandard

    from pipeline.corpus.ingest import plan

    jsonl = suffix.startswith(".jsonl")
    lines = [(f'{{"text": "document numéro {i}"}}' if jsonl else f"document numéro {i}") for i in range(400)]
    lines[7] = '{"text": "broken' if jsonl else lines[7]
    raw = ("\n".join(lines) + "\n").encode()
    codec = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
             ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}["." + suffix.rsplit(".", 1)[1]]
    plain = write(tmp_path / ("plain" + suffix.rsplit(".", 1)[0]), raw)
    packed = write(tmp_path / ("plain" + suffix.rsplit(".", 1)[0] + "." + suffix.rsplit(".", 1)[1]), codec(raw))
    whole_docs, whole_rej = read_file(str(plain))
    docs, rej = read_file(str(packed))
    assert docs["text"].to_pylist() == whole_docs["text"].to_pylist() and docs.num_rows == 400 - jsonl
    assert [d.rsplit(":", 1)[1] for d in rej["id"].to_pylist()] == [d.rsplit(":", 1)[1] for d in whole_rej["id"].to_pylist()]
    parts = plan(str(packed), 2048)           # decompressed byte ranges, cut after newlines
    assert len(parts) > 2
    docs, rej = _concat_parts(parts)
    assert docs["text"].to_pylist() == whole_docs["text"].to_pylist()
    assert rej.num_rows == whole_rej.num_rows


def test_byte_order_mark_is_not_an_error(tmp_path):
    f = write(tmp_path / "bom.jsonl", b'\xef\xbb\xbf{"id": "a", "text": "avec une marque"}\n{"id": "b", "text": "deux"}\n')
    docs, rej = read_file(str(f))
    assert docs["id"].to_pylist() == ["a", "b"] and rej.num_rows == 0
    t = write(tmp_path / "bom.txt", b"\xef\xbb\xbfpremi\xc3\xa8re ligne\n")
    assert read_file(str(t))[0]["text"].to_pylist() == ["première ligne"]


def test_corrupt_parquet_row_group_is_a_reject_naming_it(tmp_path):
    from pipeline.corpus.ingest import plan, read_part

    f = tmp_path / "rg.parquet"
    pq.write_table(pa.table({"text": [f"texte numéro {i} " * 20 for i in range(300)]}), f, row_group_size=100,
                   compression="none")
    meta = pq.ParquetFile(f).metadata
    col = meta.row_group(1).column(0)
    data = bytearray(f.read_bytes())
    start = col.data_page_offset
    data[start + 20 : start + 400] = b"\xff" * 380        # garble the middle row group's page
    f.write_bytes(bytes(data))
    docs, rej = read_file(str(f))
    assert docs.num_rows == 200                          # the other two groups are read
    assert rej["reason"].to_pylist() == ["unreadable_row_group"]
    assert "row group 1 (rows 101-200)" in rej["detail"][0].as_py() and str(f) in rej["detail"][0].as_py()
    parts = plan(str(f), 1000)
    assert len(parts) == 3
    assert read_part(parts[1])[1]["reason"].to_pylist() == ["unreadable_row_group"]


def test_expand_globs_dirs_and_missing(tmp_path):
    write(tmp_path / "x" / "1.txt", "a")
    write(tmp_path / "x" / "2.jsonl", "{}")
    assert [p.rsplit("/", 1)[1] for p in expand([str(tmp_path / "x" / "*")])] == ["1.txt", "2.jsonl"]
    assert len(expand([str(tmp_path / "x")])) == 2
    with pytest.raises(FileNotFoundError, match="nope"):
        expand([str(tmp_path / "nope.txt")])


def test_hugging_face_dataset_saved_to_disk(tmp_path):
    import datasets

    from pipeline.corpus.prepare import prepare

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["Le lac gèle en hiver et la neige couvre les collines.", None]}),
        "test": datasets.Dataset.from_dict({"text": ["Die Bauern hoffen, dass die Trockenheit bald endet."]}),
    })
    dd.save_to_disk(str(tmp_path / "hf"))
    assert expand([str(tmp_path / "hf")]) == [str(tmp_path / "hf")]
    docs, rej = read_file(str(tmp_path / "hf"))
    assert docs["id"].to_pylist() == ["test:1", "train:1"] or docs["id"].to_pylist() == ["train:1", "test:1"]
    assert rej["reason"].to_pylist() == ["missing_text"]
    report = prepare([str(tmp_path / "hf")], str(tmp_path / "out"))
    assert report["input"] == 3 and report["kept"] + report["unidentified"] + report["rejected"] == 3


def test_a_large_hugging_face_dataset_is_read_in_row_ranges(tmp_path):
    """A saved dataset larger than a work unit is split into row ranges of each split: every
    row read exactly once, ids and reject rows numbered over the whole split, and `prepare`
    gives the same corpus as with one unit."""
    import datasets

    from pipeline.corpus.ingest import plan, read_part
    from pipeline.corpus.prepare import prepare

    lines = [l for l in (UDHR / "fra_Latn.txt").read_text().splitlines() if len(l) > 40] if UDHR.exists() else \
        [f"Phrase numéro {i} : le lac gèle en hiver et la neige couvre les collines." for i in range(80)]
    train = [t if i % 17 else None for i, t in enumerate(lines * 3)]  # every 17th row empty: a reject
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": train}),
                          "test": datasets.Dataset.from_dict({"text": lines[:10]})}).save_to_disk(str(tmp_path / "hf"))
    parts = plan(str(tmp_path / "hf"), unit_bytes=4000)
    assert len(parts) > 5 and {p.split for p in parts} == {"train", "test"}
    read = [read_part(p) for p in parts]
    ids = [i for d, _ in read for i in d["id"].to_pylist()]
    assert len(ids) == len(set(ids)) == sum(t is not None for t in train) + 10
    assert sorted(i for i in ids if i.startswith("train:")) == sorted(
        f"train:{k + 1}" for k, t in enumerate(train) if t is not None)
    rejected = [r for _, rej in read for r in rej["detail"].to_pylist()]
    assert rejected == [f"{tmp_path}/hf#train:{k + 1}: row {k + 1}: 'text' is null or empty"  # file, split, row
                        for k, t in enumerate(train) if t is None]
    one = prepare([str(tmp_path / "hf")], str(tmp_path / "one"))
    many = prepare([str(tmp_path / "hf")], str(tmp_path / "many"),
                   CorpusConfig.model_validate({"ingest": {"unit_bytes": 4000}}))
    assert many["units"]["total"] == len(parts) and one["units"]["total"] == 2
    assert {k: v["kept"] for k, v in one["languages"].items()} == {k: v["kept"] for k, v in many["languages"].items()}


def _concat_parts(parts):
    from pipeline.corpus.ingest import read_part

    read = [read_part(p) for p in parts]
    return pa.concat_tables([d for d, _ in read]), pa.concat_tables([r for _, r in read])


@pytest.mark.parametrize("unit_bytes", [1024, 1500, 4096])
def test_large_line_files_split_into_parts_that_read_like_the_whole(tmp_path, unit_bytes):
    """A file over `unit_bytes` becomes several line-aligned parts; together they give the
    same documents, ids, line numbers and rejects as reading the whole file."""
    from pipeline.corpus.ingest import plan

    lines = []
    for i in range(300):
        if i % 37 == 5:
            lines.append(b'{"text": "broken\n')
        elif i % 41 == 7:
            lines.append(b"\n")
        else:
            lines.append(f'{{"text": "document {i} {"é" * (i % 13)}"}}\n'.encode())
    f = write(tmp_path / "big.jsonl", b"".join(lines))
    parts = plan(str(f), unit_bytes)
    assert len(parts) > 2 and parts[0].start == 0 and parts[-1].end == f.stat().st_size
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    whole_docs, whole_rej = read_file(str(f))
    docs, rej = _concat_parts(parts)
    assert docs["id"].to_pylist() == whole_docs["id"].to_pylist()      # 'big.jsonl:<line>' ids
    assert docs["text"].to_pylist() == whole_docs["text"].to_pylist()
    assert rej["detail"].to_pylist() == whole_rej["detail"].to_pylist()  # same line numbers
    txt = write(tmp_path / "big.txt", "".join(f"line {i}\n" for i in range(500)))
    docs, _ = _concat_parts(plan(str(txt), unit_bytes))
    assert docs["id"].to_pylist() == read_file(str(txt))[0]["id"].to_pylist()


@pytest.mark.parametrize("batch_bytes", [64, 300, 4096])
def test_a_part_is_read_in_batches_that_read_like_the_whole(tmp_path, batch_bytes):
    """`iter_part` streams a part in blocks of about `batch_bytes`: together its batches give
    the documents, ids, line numbers and rejects of reading it at once (a byte-order mark,
    CRLF and lone CR line ends, blank lines, bad JSON, invalid UTF-8, a line longer than a
    block), for a whole file and for each part of a split one."""
    from pipeline.corpus.ingest import iter_part, plan

    lines = [b"\xef\xbb\xbf" + '{"text": "première ligne"}\r\n'.encode()]
    for i in range(120):
        if i % 29 == 3:
            lines.append(b'{"text": "broken\n')
        elif i % 31 == 4:
            lines.append(b"\r\n")
        elif i % 37 == 5:
            lines.append(b'{"text": "bad \xff byte"}\n')
        elif i % 43 == 6:
            lines.append(('{"text": "%s"}\r' % ("long " * 200)).encode())
        else:
            lines.append(f'{{"text": "document {i} {"ж" * (i % 11)}"}}\n'.encode())
    f = write(tmp_path / "b.jsonl", b"".join(lines))
    whole_docs, whole_rej = read_file(str(f))
    assert whole_rej.num_rows >= 6 and whole_docs.num_rows > 100
    for parts in ([plan(str(f), 1 << 30)[0]], plan(str(f), 1500)):
        batches = [b for p in parts for b in iter_part(p, batch_bytes=batch_bytes)]
        if batch_bytes < 1000:
            assert len(batches) > 2 * len(parts)
        docs = pa.concat_tables([d for d, _ in batches])
        rej = pa.concat_tables([r for _, r in batches])
        assert docs["id"].to_pylist() == whole_docs["id"].to_pylist()
        assert docs["text"].to_pylist() == whole_docs["text"].to_pylist()
        assert rej["detail"].to_pylist() == whole_rej["detail"].to_pylist()


def test_large_parquet_split_by_row_groups(tmp_path):
    from pipeline.corpus.ingest import plan

    texts = [f"texte numéro {i}" if i % 50 else None for i in range(1000)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "big.parquet", row_group_size=100)
    parts = plan(str(tmp_path / "big.parquet"), 2000)
    assert len(parts) > 2 and parts[-1].end == 10
    whole_docs, whole_rej = read_file(str(tmp_path / "big.parquet"))
    docs, rej = _concat_parts(parts)
    assert docs["id"].to_pylist() == whole_docs["id"].to_pylist()
    assert rej["detail"].to_pylist() == whole_rej["detail"].to_pylist()
    assert plan(str(tmp_path / "big.parquet"), 1 << 30)[0].start is None   # small: one part


def _warc_record(kind: str, uri: str, payload: bytes, http: bool = False):
    from fastwarc.warc import WarcRecord, WarcRecordType

    rec = WarcRecord()
    rec.init_headers(record_type=getattr(WarcRecordType, kind))
    rec.headers["WARC-Target-URI"] = uri
    if http:
        rec.headers["Content-Type"] = "application/http; msgtype=response"
    rec.set_bytes_content(payload)
    return rec


def _page(paragraphs: list[str], lang: str) -> str:
    """An HTML page as crawled: navigation, a cookie banner and a footer around the article."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f'<html lang="{lang}"><head><title>{paragraphs[0][:30]}</title><script>var x = 1;</script></head><body>'
            '<nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/login">Login</a></nav>'
            '<div class="cookie">We use cookies. Accept all cookies</div>'
            f'<main><article><h1>{paragraphs[0][:40]}</h1>{body}</article></main>'
            '<footer>Copyright 2026 Example Ltd. All rights reserved. Privacy | Terms</footer></body></html>')


UDHR_PAGES = {"fra_Latn": "utf-8", "rus_Cyrl": "windows-1251", "hin_Deva": "utf-8", "tha_Thai": "utf-8",
              "yor_Latn": "utf-8", "arb_Arab": "utf-8", "ell_Grek": "utf-8",
              "pol_Latn": "iso-8859-2"}


@pytest.mark.skipif(not UDHR.exists(), reason="needs ../shared/data/udhr (real text in many scripts)")
def test_warc_and_wet_files_become_documents_and_rejects(tmp_path):
    """Common Crawl's formats: HTML pages in WARC response records (7 scripts, charsets given
    in the HTTP header or left to detection) give their main text without the boilerplate;
    WET conversion records give theirs; request records are not documents; a redirect, an
    image and an empty page are rejects naming the file and record; a file cut off mid-record
    keeps what came before; `prepare` identifies every page's language."""
    import gzip
    import io

    from pipeline.corpus.prepare import prepare

    paras = {lang: [l for l in (UDHR / f"{lang}.txt").read_text().splitlines() if len(l) > 60][8:12]
             for lang in [*UDHR_PAGES, "swh_Latn", "jpn_Jpan", "kat_Geor"]}
    buf, n = io.BytesIO(), 0
    for k, (lang, charset) in enumerate(UDHR_PAGES.items()):
        html = _page(paras[lang], lang).encode(charset, errors="ignore")
        header = f"text/html; charset={charset}" if k % 2 == 0 else "text/html"  # odd pages: detect the charset
        url = f"https://example.org/{lang}"
        _warc_record("request", url, b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n").write(buf)
        _warc_record("response", url, f"HTTP/1.1 200 OK\r\nContent-Type: {header}\r\n\r\n".encode() + html,
                     http=True).write(buf)
        n += 1
    _warc_record("response", "https://example.org/old", b"HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\n\r\n",
                 http=True).write(buf)
    _warc_record("response", "https://example.org/a.png", b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n"
                 + b"\x89PNG\r\n\x1a\n" + bytes(range(256)), http=True).write(buf)
    _warc_record("response", "https://example.org/empty", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
                 b"<html><body><nav>Home</nav></body></html>", http=True).write(buf)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "crawl.warc.gz").write_bytes(gzip.compress(buf.getvalue()))
    wet = io.BytesIO()
    for lang in ("swh_Latn", "jpn_Jpan", "kat_Geor"):
        _warc_record("conversion", f"https://example.org/{lang}", "\n".join(paras[lang]).encode()).write(wet)
    whole = wet.getvalue()
    (tmp_path / "in" / "crawl.warc.wet.gz").write_bytes(gzip.compress(whole))
    (tmp_path / "in" / "cut.warc.wet").write_bytes(whole[: len(whole) - 300])   # breaks off in the last record

    docs, rej = read_file(str(tmp_path / "in" / "crawl.warc.gz"))
    assert docs.num_rows == n and all(i.startswith("urn:uuid:") for i in docs["id"].to_pylist())
    for text, lang in zip(docs["text"].to_pylist(), UDHR_PAGES):
        assert paras[lang][1][:25] in text, (lang, text[:200])              # the article, decoded right
        assert "cookies" not in text and "Copyright" not in text and "Login" not in text  # no boilerplate
    assert rej["reason"].to_pylist() == ["http_status", "unsupported_content_type", "no_text"]
    assert [d.split(": ", 1)[0] for d in rej["detail"].to_pylist()] == [
        f"{tmp_path}/in/crawl.warc.gz:{k}" for k in (n + 1, n + 2, n + 3)]   # file and record number
    assert "HTTP status 301" in rej["detail"][0].as_py() and "image/png" in rej["detail"][1].as_py()
    docs, rej = read_file(str(tmp_path / "in" / "crawl.warc.wet.gz"))
    assert docs["text"].to_pylist() == ["\n".join(paras[lang]) for lang in ("swh_Latn", "jpn_Jpan", "kat_Geor")]
    docs, rej = read_file(str(tmp_path / "in" / "cut.warc.wet"))
    assert docs.num_rows == 2 and rej["reason"].to_pylist() == ["truncated_record"]
    assert rej["detail"][0].as_py().startswith(f"{tmp_path}/in/cut.warc.wet:3: urn:uuid:")

    report = prepare([str(tmp_path / "in")], str(tmp_path / "out"))
    kept = {lang: v["kept"] for lang, v in report["languages"].items() if v["kept"]}
    assert {lang for lang in kept} >= {*UDHR_PAGES, "swh_Latn", "jpn_Jpan", "kat_Geor"}, kept
