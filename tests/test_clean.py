import pyarrow as pa
from conftest import detect_script

from pipeline.config import CleanConfig
from pipeline.corpus.clean import filter_quality, normalize
from pipeline.corpus.dedup import dedup_key
from pipeline.schema import make_docs


def docs_of(*texts):
    t = make_docs([f"d{i}" for i in range(len(texts))], list(texts), ["src"] * len(texts))
    return t.set_column(t.schema.get_field_index("script"), "script", pa.array([detect_script(x) for x in texts]))


def test_normalize_repairs_mojibake_and_whitespace():
    broken = "Ma grand-mère fait du pain frais".encode("utf-8").decode("cp1252")
    kept, rej = normalize(docs_of(broken + "  \t avec   du miel.\r\n\n\x07"), CleanConfig())
    assert kept["text"].to_pylist() == ["Ma grand-mère fait du pain frais avec du miel."]
    assert rej.num_rows == 0


def test_normalize_removes_boilerplate_lines_and_rejects_pure_boilerplate():
    kept, rej = normalize(docs_of("This site uses cookies.\nDer Fluss stieg schnell an.\nHome | News | Contact",
                                  "Please enable JavaScript to view this page."), CleanConfig())
    assert kept["text"].to_pylist() == ["Der Fluss stieg schnell an."]
    assert rej["reason"].to_pylist() == ["empty_after_cleaning"] and rej["id"].to_pylist() == ["d1"]


def test_nfc_normalisation():
    kept, _ = normalize(docs_of("Cafe\u0301 au lait et croissants"), CleanConfig(fix_mojibake=False))
    assert kept["text"][0].as_py() == "Caf\u00e9 au lait et croissants"


def test_filter_keeps_unsegmented_scripts_and_drops_short():
    t = docs_of("ทีมเจ้าบ้านยิงได้สองประตูในครึ่งหลังและชนะการแข่งขัน", "主队在下半场打进两球，最终赢得了比赛。", "ok",
                "The lake freezes in winter, and snow covers the hills.", "Contact: Home. Menu.")
    t = t.set_column(t.schema.get_field_index("lang"), "lang", pa.array(["tha_Thai", "zho_Hans", "eng_Latn", "eng_Latn", "eng_Latn"]))
    kept, rej = filter_quality(t, CleanConfig(min_chars=10))
    assert kept["id"].to_pylist() == ["d0", "d1", "d3"]
    assert dict(zip(rej["id"].to_pylist(), rej["reason"].to_pylist())) == {"d2": "too_short", "d4": "too_few_words"}
    assert dict(zip(rej["id"].to_pylist(), rej["stage"].to_pylist())) == {"d2": "clean", "d4": "quality"}


def test_pii_is_redacted():
    kept, _ = normalize(docs_of("Write to jane.doe@example.org or call +44 20 7946 0958 from 192.168.1.20 in 2026."),
                        CleanConfig())
    assert kept["text"][0].as_py() == "Write to <EMAIL> or call <PHONE> from <IP> in 2026."


def test_exact_dedup_key_folds_case_punctuation_and_spacing():
    assert dedup_key("The river rose quickly.") == dedup_key("THE RIVER ROSE  QUICKLY !!")
    assert dedup_key("The river rose quickly.") != dedup_key("The river rose slowly.")
    assert dedup_key("Ｔｈｅ river") == dedup_key("the river")  # NFKC folds full-width forms
