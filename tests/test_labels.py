"""One code scheme for every language-ID model: ISO 639-3 + script (pipeline/language_codes.py)."""

import pytest

from pipeline.config import ConfigError, LangIdConfig, PipelineConfig, load_yaml
from pipeline.corpus.langid import identify, predict
from pipeline.language_codes import han_variant, lookup, matches, normalize, normalize_code
from pipeline.schema import make_docs


@pytest.mark.parametrize("label,script,expected", [
    ("__label__fr", "Latn", "fra_Latn"),          # lid.176: ISO 639-1
    ("__label__fra_Latn", "Latn", "fra_Latn"),    # GlotLID / NLLB style: kept
    ("fre", "Latn", "fra_Latn"),                  # ISO 639-2/B
    ("__label__ar", "Arab", "arb_Arab"),          # macrolanguage -> FLORES individual language
    ("__label__sw", "Latn", "swh_Latn"),
    ("__label__fa", "Arab", "pes_Arab"),
    ("__label__cmn_Hani", "Hani", "zho_Hans"),    # GlotLID's Mandarin = FLORES zho
    ("__label__sr", "Cyrl", "srp_Cyrl"),          # the detected script, when the language uses it
    ("__label__sr", "Latn", "srp_Latn"),
    ("__label__ru", "Latn", "rus_Cyrl"),          # a script the language is not written in: its own
    ("__label__uz", "Cyrl", "uzn_Cyrl"),          # a well-known second script (MULTI_SCRIPT)
    ("__label__el", "Deva", "ell_Grek"),          # a script the language is not known in: its usual one
    ("__label__ja", "Hani", "jpn_Jpan"),          # kanji-only Japanese is still Japanese
    ("__label__ko", "Hang", "kor_Hang"),          # CLDR says Kore; FLORES Hang
    ("__label__als", "Latn", "gsw_Latn"),         # lid.176's Wikipedia code for Alemannic
    ("__label__als_Latn", "Latn", "als_Latn"),    # ... while GlotLID's als_Latn is Tosk Albanian
    ("__label__en", "Zyyy", "eng_Latn"),          # no letters: the language's usual script
    ("__label__qq", "Latn", "und_Latn"),          # not a language code: unknown, not an error
])
def test_model_labels_map_to_one_scheme(label, script, expected):
    assert normalize(label, script) == expected


def test_chinese_variant_from_the_characters():
    assert han_variant("這是我們的學校，他們說會來。") == "Hant"
    assert han_variant("这是我们的学校，他们说会来。") == "Hans"
    assert normalize("__label__zh", "Hani", "這是我們的學校") == "zho_Hant"
    assert normalize("__label__zh", "Hani", "这是我们的学校") == "zho_Hans"
    assert normalize("__label__yue", "Hani", "佢哋話會嚟，我哋等緊佢哋。") == "yue_Hant"


def test_config_codes_in_any_form_match_labels():
    assert [normalize_code(c) for c in ["fr", "fra", "fre", "fra_Latn", "zh-Hant", "sw", "*"]] == \
        ["fra", "fra", "fra", "fra_Latn", "zho_Hant", "swh", "*"]
    assert matches("srp_Latn", {"srp"}) and matches("srp_Latn", {"srp_Latn"}) and not matches("srp_Latn", {"srp_Cyrl"})
    assert lookup({"srp": 1, "srp_Latn": 2, "*": 3}, "srp_Latn") == 2
    assert lookup({"srp": 1, "*": 3}, "srp_Cyrl") == 1 and lookup({"*": 3}, "fra_Latn") == 3
    cfg = PipelineConfig.model_validate({"corpus": {"langid": {"languages": ["en", "eng", "sw"],
                                                                "min_score_per_language": {"sw": 0.1}}}})
    assert cfg.corpus.langid.languages == ["eng", "swh"]
    assert cfg.corpus.langid.min_score_per_language == {"swh": 0.1}


def test_bad_code_in_config_names_file_and_field(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("corpus:\n  langid:\n    languages: [en, klingon]\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*corpus.langid.languages.*klingon"):
        load_yaml(f)
    f.write_text("corpus:\n  shard:\n    token_cap: {en: 10, eng: 20}\n")
    with pytest.raises(ConfigError, match="same language"):
        load_yaml(f)


def _fasttext_lines(shared_data, codes: dict[str, str], per_lang: int) -> tuple[list[str], dict[str, list[str]]]:
    train, test = [], {}
    for lingua, model_label in codes.items():
        lines = [l for l in (shared_data / "lingua-sentences" / f"{lingua}.txt").read_text().splitlines() if l.strip()]
        train += [f"__label__{model_label} {l.lower()}" for l in lines[:per_lang]]
        test[lingua] = [" ".join(lines[i : i + 3]) for i in range(per_lang, min(len(lines), per_lang + 150) - 2, 3)]
    return train, test


def test_any_fasttext_model_gives_the_same_codes(shared_data, tmp_path):
    """A custom fastText model with GlotLID-style labels (ISO 639-3 + script, macrolanguage
    codes, Mandarin as cmn_Hani) and lid.176 with its ISO 639-1 labels label the same documents
    with the same canonical codes."""
    import fasttext

    codes = {"fr": "fra_Latn", "de": "deu_Latn", "ar": "ara_Arab", "zh": "cmn_Hani", "ru": "rus_Cyrl",
             "sw": "swa_Latn", "ja": "jpn_Jpan", "hi": "hin_Deva"}
    train, test = _fasttext_lines(shared_data, codes, 300)
    (tmp_path / "train.txt").write_text("\n".join(train), encoding="utf-8")
    model = fasttext.train_supervised(str(tmp_path / "train.txt"), epoch=15, lr=0.5, minn=2, maxn=4,
                                      dim=32, wordNgrams=1, thread=2, seed=0, verbose=0)
    model.save_model(str(tmp_path / "custom.bin"))
    for lingua, docs in test.items():
        custom, _ = predict(docs, str(tmp_path / "custom.bin"))
        lid176, _ = predict(docs)
        agree = sum(a == b for a, b in zip(custom, lid176)) / len(docs)
        assert agree >= 0.9, (lingua, custom[:3], lid176[:3])
        # 'ara_Arab' -> arb_Arab, 'swa_Latn' -> swh_Latn, 'cmn_Hani' -> zho_Hans...
        assert max(set(custom), key=custom.count) == normalize(lingua)
    docs = make_docs([f"d{i}" for i in range(len(test["sw"]))], test["sw"], ["s"] * len(test["sw"]))
    cfg = LangIdConfig(models=[{"path": str(tmp_path / "custom.bin")}], languages=["swh"], top_k=3)
    kept, _ = identify(docs, cfg)
    assert set(kept["lang"].to_pylist()) == {"swh_Latn"}
    assert {t["lang"] for row in kept["lang_top"].to_pylist() for t in row} <= set(map(normalize, codes.values()))
