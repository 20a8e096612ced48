"""Parallel text as a corpus: readers, pair checks with reasons, dedup, shards and manifest."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, write

from pipeline.config import CorpusConfig, ParallelInput
from pipeline.corpus import parallel
from pipeline.corpus.prepare import prepare

EN_FR = [
    ("The children are playing in the garden behind the house.", "Les enfants jouent dans le jardin derrière la maison."),
    ("We will take the train to the mountains tomorrow morning.", "Nous prendrons le train pour la montagne demain matin."),
    ("The library closes at six o'clock on Saturdays.", "La bibliothèque ferme à six heures le samedi."),
    ("My grandmother makes the best apple pie in the village.", "Ma grand-mère fait la meilleure tarte aux pommes du village."),
    ("It rained all night and the river is very high.", "Il a plu toute la nuit et la rivière est très haute."),
    ("Could you tell me where the nearest pharmacy is?", "Pourriez-vous me dire où se trouve la pharmacie la plus proche ?"),
]
EN_DE = [
    ("The doctor said that I should drink more water.", "Der Arzt sagte, dass ich mehr Wasser trinken sollte."),
    ("Our neighbours have bought a new red car.", "Unsere Nachbarn haben ein neues rotes Auto gekauft."),
    ("The museum is open every day except Monday.", "Das Museum ist jeden Tag außer Montag geöffnet."),
]


def _cfg(*inputs: ParallelInput, **parallel_kw) -> CorpusConfig:
    cfg = CorpusConfig()
    cfg.ingest.inputs = [str(SAMPLE / "corpus" / "forum.txt")]
    for k, v in parallel_kw.items():
        setattr(cfg.parallel, k, v)
    cfg.parallel.inputs = list(inputs)
    return cfg


def _rejects(out) -> list[dict]:
    return pq.read_table(out / "rejects" / "parallel.parquet").to_pylist()


def test_line_aligned_files_tsv_and_jsonl_become_pair_shards(tmp_path):
    d = tmp_path / "in"
    write(d / "news.en", "\n".join(e for e, _ in EN_FR) + "\n")
    write(d / "news.fr", "\n".join(f for _, f in EN_FR) + "\n")
    write(d / "de.tsv", "\n".join(f"{e}\t{g}" for e, g in EN_DE) + "\n")
    write(d / "mixed.jsonl", "\n".join(json.dumps({"en": e, "de": g, "l": "de"}) for e, g in EN_DE[:2]) + "\n")
    cfg = _cfg(ParallelInput(path=str(d / "news.*")),
               ParallelInput(path=str(d / "de.tsv"), src_lang="en", tgt_lang="de"),
               ParallelInput(path=str(d / "mixed.jsonl"), src_field="en", tgt_field="de", src_lang="en",
                             tgt_lang_field="l"), heldout_fraction=0.3)
    out = tmp_path / "corpus"
    report = prepare(cfg.ingest.inputs, str(out), cfg)
    rep = report["parallel"]
    assert rep["input"] == len(EN_FR) + len(EN_DE) + 2
    # the jsonl repeats two TSV pairs: exact duplicates across inputs are rejects naming the pair kept
    assert rep["rejected_by_reason"] == {"duplicate": 2}
    assert rep["pairs"]["eng_Latn-fra_Latn"] == {"input": 6, "kept": 6, "rejected": {}}
    assert rep["pairs"]["deu_Latn-eng_Latn"]["kept"] == 3
    dups = _rejects(out)
    assert {r["detail"] for r in dups} == {"same pair as de.tsv:1", "same pair as de.tsv:2"}
    manifest = json.loads((out / "manifest.json").read_text())
    section = manifest["parallel"]
    assert set(section["pairs"]) == {"deu_Latn-eng_Latn", "eng_Latn-fra_Latn"}
    fr = section["pairs"]["eng_Latn-fra_Latn"]
    assert fr["train_rows"] + fr["heldout_rows"] == 6 and fr["train_tokens"] > 0
    assert abs(sum(v["weight"] for v in section["pairs"].values()) - 1) < 1e-6
    rows = pq.read_table([str(out / f["path"]) for f in section["files"] if f["pair"] == "eng_Latn-fra_Latn"]).to_pylist()
    by_id = {r["id"]: r for r in rows}
    assert by_id["news.en:3"]["src_text"] == EN_FR[2][0] and by_id["news.en:3"]["tgt_text"] == EN_FR[2][1]
    assert {r["src_lang"] for r in rows} == {"eng_Latn"} and {r["tgt_lang"] for r in rows} == {"fra_Latn"}
    assert not any(r["synthetic"] for r in rows)
    for f in section["files"]:
        assert f["rows"] == pq.ParquetFile(out / f["path"]).metadata.num_rows
    # held-out pairs are what retrieval evaluation reads
    held = parallel.read_pairs(manifest, str(out), "heldout")
    assert held.num_rows == sum(v["heldout_rows"] for v in section["pairs"].values())


def test_bad_pairs_are_rejected_with_reasons_and_nothing_is_lost(tmp_path):
    d = tmp_path / "in"
    lines = [f"{e}\t{f}" for e, f in EN_FR[:3]]
    lines += [
        "only one field here",                                   # 4 bad_row
        f"{EN_FR[3][0]}\t{EN_FR[3][0]}",                         # 5 copy
        f"Yes.\t{EN_FR[4][1]} {EN_FR[5][1]} {EN_FR[2][1]}",       # 6 length_ratio
        f"{EN_FR[4][0]}\t{EN_DE[1][1]}",                         # 7 target is German, not French
        f"{EN_FR[5][0]}\t   ",                                   # 8 empty target
        f"  {EN_FR[2][0]}\t{EN_FR[2][1]}",                       # 9 line 3 again: duplicate
    ]
    write(d / "pairs.tsv", "\n".join(lines) + "\n")
    reversed_pair = json.dumps({"src": EN_FR[1][1], "tgt": EN_FR[1][0]})  # line 2 of the TSV, other way round
    write(d / "broken.jsonl", f'{{"src": "Bonjour tout le monde", "tgt": 3}}\nnot json\n{reversed_pair}\n')
    write(d / "short.en", "one\ntwo\nthree\n")
    write(d / "short.fr", "un\ndeux\n")
    cfg = _cfg(ParallelInput(path=str(d / "pairs.tsv"), src_lang="en", tgt_lang="fr"),
               ParallelInput(path=str(d / "broken.jsonl"), src_lang="fr", tgt_lang="en"),
               ParallelInput(path=str(d / "short.*")))
    out = tmp_path / "corpus"
    rep = prepare(cfg.ingest.inputs, str(out), cfg)["parallel"]
    assert rep["input"] == 9 + 3 + 3 == rep["kept"] + rep["rejected"]
    assert rep["kept"] == 3
    by_id = {r["id"]: r for r in _rejects(out)}
    assert by_id["pairs.tsv:4"]["reason"] == "bad_row" and "pairs.tsv:4" in by_id["pairs.tsv:4"]["detail"]
    assert by_id["pairs.tsv:5"]["reason"] == "copy"
    assert by_id["pairs.tsv:6"]["reason"] == "length_ratio"
    assert by_id["pairs.tsv:7"]["reason"] == "language_mismatch"
    assert "declared fra_Latn, detected deu_Latn" in by_id["pairs.tsv:7"]["detail"]
    assert by_id["pairs.tsv:7"]["tgt_text"] == EN_DE[1][1]  # the reject keeps the pair
    assert by_id["pairs.tsv:8"]["reason"] == "empty_after_cleaning"
    assert (by_id["pairs.tsv:9"]["reason"], by_id["pairs.tsv:9"]["detail"]) == ("duplicate", "same pair as pairs.tsv:3")
    assert (by_id["broken.jsonl:3"]["reason"], by_id["broken.jsonl:3"]["detail"]) == ("duplicate", "same pair as pairs.tsv:2")
    assert by_id["broken.jsonl:1"]["reason"] == "bad_row" and "['tgt']" in by_id["broken.jsonl:1"]["detail"]
    assert by_id["broken.jsonl:2"]["reason"] == "bad_row" and "not JSON" in by_id["broken.jsonl:2"]["detail"]
    mismatch = [r for r in by_id.values() if r["reason"] == "line_count_mismatch"]
    assert len(mismatch) == 3 and "short.fr has 2" in mismatch[0]["detail"]


def test_aligned_files_must_come_in_twos(tmp_path):
    write(tmp_path / "a.en", "x\n")
    write(tmp_path / "a.fr", "x\n")
    write(tmp_path / "a.de", "x\n")
    with pytest.raises(parallel.ParallelInputError, match=r"come in twos.*found 3"):
        parallel.plan([ParallelInput(path=str(tmp_path / "a.*"))])
    write(tmp_path / "b" / "notes.md", "x\n")
    with pytest.raises(parallel.ParallelInputError, match="notes.md: not a parallel input"):
        parallel.plan([ParallelInput(path=str(tmp_path / "b"))])


def test_rerun_reuses_committed_units_and_writes_the_same_manifest(tmp_path):
    d = tmp_path / "in"
    write(d / "n.en", "\n".join(e for e, _ in EN_FR) + "\n")
    write(d / "n.fr", "\n".join(f for _, f in EN_FR) + "\n")
    cfg = _cfg(ParallelInput(path=str(d / "n.*")))
    out = tmp_path / "corpus"
    first = prepare(cfg.ingest.inputs, str(out), cfg)
    (out / "manifest.json").unlink()  # as if killed before the commit point
    units = list((out / "_units").glob("pairs-*"))
    assert len(units) == 1
    second = prepare(cfg.ingest.inputs, str(out), cfg)
    assert second["manifest_sha256"] == first["manifest_sha256"]
    assert second["parallel"] == first["parallel"]


def test_tatoeba_pairs_in_many_languages_are_kept(shared_data, tmp_path):
    """Real line-aligned pairs (Tatoeba, named <stem>.<xxx> / <stem>.eng) in languages of several
    scripts, some unknown to lid.176: almost every pair is kept, each under its language pair."""
    d = tmp_path / "tatoeba"
    d.mkdir()
    for code in ["afr", "amh", "jpn", "kab", "tha", "yid", "gsw", "sqi"]:
        for side in (code, "eng"):
            shutil.copy(shared_data / "tatoeba" / f"tatoeba.{code}-eng.{side}", d / f"t.{code}-eng.{side}")
    cfg = _cfg(ParallelInput(path=str(d)))
    out = tmp_path / "corpus"
    rep = prepare(cfg.ingest.inputs, str(out), cfg)["parallel"]
    assert rep["input"] == rep["kept"] + rep["rejected"]
    keys = {k: v for k, v in rep["pairs"].items() if v["input"] >= 100}
    # sqi is the Albanian macrolanguage (-> als, Tosk), never Wikipedia's 'als' (Alemannic, gsw)
    expected = {"afr_Latn", "amh_Ethi", "jpn_Jpan", "kab_Latn", "tha_Thai", "ydd_Hebr", "gsw_Latn", "als_Latn"}
    assert {k.replace("-eng_Latn", "").replace("eng_Latn-", "") for k in keys} == expected
    for key, info in keys.items():
        assert info["kept"] / info["input"] >= 0.8, (key, info)
    assert rep["kept"] / rep["input"] >= 0.95


def test_multiway_documents_are_aligned_to_the_pivot_by_line_lengths(tmp_path):
    """One text per language, split into lines differently: every file aligns with the pivot's,
    two sentences on one line pair with both of theirs, a file that cannot be the same text is
    rejected line by line with the reason, and nothing is lost."""
    d = tmp_path / "multi"
    en = [e for e, _ in EN_FR]
    fr = [f for _, f in EN_FR]
    write(d / "eng_Latn.txt", "\n".join(en) + "\n")
    write(d / "fra_Latn.txt", "\n".join([fr[0] + " " + fr[1], "", *fr[2:]]) + "\n")  # two sentences, one line
    write(d / "deu_Latn.txt", " ".join(g for _, g in EN_DE) + "\n")  # one line against six: another text
    cfg = _cfg(ParallelInput(path=str(d / "*.txt"), pivot="en"), heldout_fraction=0.0)
    out = tmp_path / "corpus"
    rep = prepare(cfg.ingest.inputs, str(out), cfg)["parallel"]
    pairs = pq.read_table(out / "pairs" / "eng_Latn-fra_Latn").to_pylist()
    got = {p["src_text"]: p["tgt_text"] for p in pairs}
    assert got == {en[0] + " " + en[1]: fr[0] + " " + fr[1], **{e: f for e, f in EN_FR[2:]}}
    assert {p["src_lang"] for p in pairs} == {"eng_Latn"} and {p["tgt_lang"] for p in pairs} == {"fra_Latn"}
    assert sorted(p["id"] for p in pairs) == ["fra_Latn.txt:1", "fra_Latn.txt:3", "fra_Latn.txt:4",
                                              "fra_Latn.txt:5", "fra_Latn.txt:6"]  # file lines, blank one skipped
    failed = [r for r in _rejects(out) if r["reason"] == "alignment_failed"]
    assert failed and all("deu_Latn.txt" in r["detail"] and "not the same text" in r["detail"] for r in failed)
    assert {r["tgt_text"] for r in failed if r["tgt_text"]} == {" ".join(g for _, g in EN_DE)}
    assert {e for r in failed for e in en if e in (r["src_text"] or "")} == set(en)  # the pivot's lines too
    assert rep["pairs"]["deu_Latn-eng_Latn"]["kept"] == 0
    assert rep["input"] == rep["kept"] + rep["rejected"]


def test_gale_church_beads():
    """Lengths of a text and its translation (10% longer) with two lines merged into one, and a
    line left without a partner (one line against six)."""
    src = [60, 45, 70, 52, 48, 66, 55, 58, 49, 61, 30, 75]
    tgt = [int(x * 1.1) for x in src]
    tgt[3:5] = [tgt[3] + tgt[4] + 1]
    beads = parallel.align_lines(src, tgt)
    assert beads[:5] == [([0], [0]), ([1], [1]), ([2], [2]), ([3, 4], [3]), ([5], [4])]
    assert all(len(s) == len(t) == 1 for s, t in beads[4:])
    assert parallel.align_lines([50] * 6, [320]) == [([0, 1], [0]), ([2], []), ([3], []), ([4], []), ([5], [])]


def test_udhr_translations_align_with_english(shared_data, tmp_path):
    """The UDHR in nine languages of seven scripts (paragraphs split differently from English's):
    aligned with English by line lengths, the numbers in the article headings agree (numbers
    in any script's digits), almost every line is kept, each pair under its language pair."""
    d = tmp_path / "udhr"
    d.mkdir()
    files = ["eng_Latn", "fra_Latn", "deu_Latn", "rus_Cyrl", "cmn_Hans", "jpn_Jpan", "hin_Deva", "arb_Arab",
             "amh_Ethi", "swh_Latn"]
    for f in files:
        shutil.copy(shared_data / "udhr" / f"{f}.txt", d / f"{f}.txt")
    cfg = _cfg(ParallelInput(path=str(d / "*.txt"), pivot="eng_Latn"), heldout_fraction=0.0)
    out = tmp_path / "corpus"
    rep = prepare(cfg.ingest.inputs, str(out), cfg)["parallel"]
    assert rep["input"] == rep["kept"] + rep["rejected"]
    langs = {k.replace("eng_Latn-", "").replace("-eng_Latn", "") for k in rep["pairs"]}
    assert langs == {"fra_Latn", "deu_Latn", "rus_Cyrl", "zho_Hans", "jpn_Jpan", "hin_Deva", "arb_Arab",
                     "amh_Ethi", "swh_Latn"}
    numbered = agree = 0
    for key in rep["pairs"]:
        info = rep["pairs"][key]
        # of ~90 lines; "Article 1" is "Article 1" in French: an identical pair is a copy reject
        assert info["kept"] + info["rejected"].get("copy", 0) >= 0.85 * info["input"] >= 0.85 * 75, (key, info)
        for p in pq.read_table(out / "pairs" / key).to_pylist():
            a, b = parallel._numerals(p["src_text"]), parallel._numerals(p["tgt_text"])
            if a and b:
                numbered += 1
                agree += a == b
    assert numbered >= 150 and agree == numbered  # disagreeing beads are number_mismatch rejects
    reasons = {r["reason"] for r in _rejects(out)}
    assert reasons <= {"unaligned", "number_mismatch", "length_ratio", "language_mismatch", "duplicate",
                       "too_short", "copy"}, reasons


def test_multiway_input_names_its_files_by_language(tmp_path):
    d = tmp_path / "multi"
    write(d / "eng_Latn.txt", "One line.\n")
    write(d / "languages.txt", "eng_Latn\tEnglish\n")  # an index file in the folder
    with pytest.raises(parallel.ParallelInputError, match="languages.txt.*named by their language"):
        parallel.plan([ParallelInput(path=str(d / "*.txt"), pivot="en")])
    with pytest.raises(parallel.ParallelInputError, match="exactly one file in its pivot language fra_Latn"):
        parallel.plan([ParallelInput(path=str(d / "eng_Latn.txt"), pivot="fr")])


def test_a_document_too_long_to_align_is_rejected_whole_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "MAX_ALIGN_LINES", 4)  # nltk's limit is 4,000 lines
    d = tmp_path / "multi"
    write(d / "eng_Latn.txt", "\n".join(e for e, _ in EN_FR) + "\n")
    write(d / "fra_Latn.txt", "\n".join(f for _, f in EN_FR) + "\n")
    cfg = _cfg(ParallelInput(path=str(d / "*.txt"), pivot="en"))
    rep = prepare(cfg.ingest.inputs, str(tmp_path / "corpus"), cfg)["parallel"]
    rejects = _rejects(tmp_path / "corpus")
    assert rep["kept"] == 0 and rep["rejected"] == 2 * len(EN_FR) == len(rejects)
    assert {r["reason"] for r in rejects} == {"alignment_failed"}
    assert all("6 lines: more than the 4 one alignment takes" in r["detail"] for r in rejects)
