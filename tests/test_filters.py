import random

import pytest

from pipeline.config import CleanConfig, ConfigError, load_yaml
from pipeline.corpus.clean import redact_pii
from pipeline.corpus.filters import check
from pipeline.corpus.profiles import PROFILE_DIR, profile, segment

EN = ("Heavy rain fell over the mountains all night and the river rose quickly. In spring the forest is "
      "full of birds, flowers and young green leaves. The lake freezes in winter, and snow covers the hills "
      "around the village. Farmers hope the dry weather ends soon because the fields need water.")


GIBBERISH_WORDS = ("Zorb wibble flarn quux blorp snark grault garply waldo fred plugh xyzzy thud corge "
                   "spam eggs foo bar baz qux norf blip blop zing zang zong wump.")


def test_profiles_layer_defaults_script_language_and_overrides():
    assert profile("zho_Hans", "Hani").segmentation == "jieba"
    assert profile("xx", "Hani").segmentation == "jieba"          # unconfigured: script family
    assert profile("tha_Thai", "Thai").lines.min_line_punct_ratio == 0
    assert profile("deu_Latn", "Latn").quality.max_avg_word_length == 18  # deu.yaml
    assert profile("deu_Latn", "Latn", {"quality": {"min_words": 2}}).quality.min_words == 2
    assert profile("deu_Latn", "Latn", {"quality": {"min_words": 2}}).quality.max_avg_word_length == 18
    assert "no" in profile("spa_Latn", "Latn").stopwords                  # YAML 'no' stays a string
    assert {"eng", "fra", "zho", "tha", "swh"} <= {p.stem for p in PROFILE_DIR.glob("*.yaml")}


def test_bad_override_fails_in_config_validation(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("corpus:\n  clean:\n    languages:\n      fr: {quality: {min_wrds: 3}}\n")
    with pytest.raises(ConfigError, match="min_wrds"):
        load_yaml(f)


@pytest.mark.parametrize("text,mode,expected", [
    ("主队在下半场打进两球", "jieba", ["主队", "在", "下半场", "打进", "两球"]),
    ("ฝนตกหนักบนภูเขา", "thai", ["ฝน", "ตกหนัก", "บน", "ภูเขา"]),
    ("こんにちは。", "chars", list("こんにちは")),
    ("«Les» enfants, qui jouent...", "whitespace", ["Les", "enfants", "qui", "jouent"]),
    ("घरेलू टीम ने गोल किए।", "whitespace", ["घरेलू", "टीम", "ने", "गोल", "किए"]),  # vowel signs kept
])
def test_segmentation(text, mode, expected):
    assert segment(text, mode) == expected


def test_clean_prose_passes():
    assert check(EN, "eng_Latn", "Latn") is None


@pytest.mark.parametrize("text,reason", [
    ("Click here now", "too_few_words"),
    ("# # # # # # buy # now # cheap # deals # here # today # fast", "symbol_ratio"),
    ("\n".join(["• item one of the list", "• item two of the list", "• item three of the list",
                "• item four of the list"]), "bullet_lines"),
    (EN + "\n" + "\n".join(["Read more about this story here today"] * 6), "duplicate_lines"),
    (" ".join(["cheap shoes online store"] * 12) + " " + EN, "top_2gram"),
    ("2012 3434 5656 7878 9090 1111 2222 3333 4444 5555 6666 7777 8888 9999 page", "alpha_words"),
    (GIBBERISH_WORDS, "stopwords"),
    ("\n".join(["Menu.", "Login.", "Sports news today and tomorrow in the city.", "Weather.", "Shop.", "Cart."]),
     "short_lines"),
    ("\n".join(["Sports news today and tomorrow in the city", "Weather for the whole region and the coast",
                 "Shop for the best deals of the season here"]), "lines_without_punctuation"),
])
def test_each_check_catches_its_noise(text, reason):
    hit = check(text, "eng_Latn", "Latn")
    assert hit is not None and hit[1] == reason, hit


def test_stopword_check_skips_uncertain_language_id_and_short_documents():
    assert check(GIBBERISH_WORDS, "eng_Latn", "Latn", lang_score=0.3) is None
    assert check("Zorb wibble flarn quux blorp snark grault garply waldo fred plugh.", "eng_Latn", "Latn") is None


def test_pii_redaction_keeps_ordinary_numbers():
    text, n = redact_pii("Match 2026-11-22: 3-1 at 19.30, ticket 1234. Mail a.b@c.io, server 10.0.0.1, "
                         "+1 (555) 123-4567 or 020 7946 0958.")
    assert n == 4
    assert text == ("Match 2026-11-22: 3-1 at 19.30, ticket 1234. Mail <EMAIL>, server <IP>, "
                    "<PHONE> or <PHONE>.")


def _documents(lines: list[str], k: int, seed: int = 0) -> list[str]:
    lines = list(lines)
    random.Random(seed).shuffle(lines)
    return [" ".join(lines[i : i + k]) for i in range(0, len(lines) - k + 1, k)]


def test_clean_real_text_survives_in_every_language(shared_data):
    """Documents of several real sentences (lingua 75 languages, Tatoeba 112) go through
    normalisation, language ID and the quality filters with default settings: >= 95% of the
    documents are kept in >= 95% of the sets (issue 3 target)."""
    from pipeline.corpus.clean import filter_quality, normalize
    from pipeline.corpus.langid import identify
    from pipeline.schema import make_docs

    sets = {}
    for f in sorted((shared_data / "lingua-sentences").glob("*.txt")):
        sets[f"lingua:{f.stem}"] = _documents([l for l in f.read_text().splitlines() if l.strip()][:480], 4)
    for f in sorted((shared_data / "tatoeba").glob("tatoeba.*-eng.*")):
        if not f.name.endswith(".eng"):
            sets[f"tatoeba:{f.suffix[1:]}"] = _documents([l for l in f.read_text().splitlines() if l.strip()][:600], 5)
    cfg = CleanConfig()
    low = {}
    for name, texts in sets.items():
        docs = make_docs([str(i) for i in range(len(texts))], texts, ["x"] * len(texts))
        docs, _ = normalize(docs, cfg)
        docs, _ = identify(docs)
        kept, _ = filter_quality(docs, cfg)
        if kept.num_rows < 0.95 * len(texts):
            low[name] = round(kept.num_rows / len(texts), 3)
    assert len(low) <= 0.05 * len(sets), low


def _random_words(alphabet: str, rng: random.Random, n: int = 40) -> str:
    return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9))) for _ in range(n))


@pytest.mark.parametrize("alphabet", [
    "abcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzáéíóúäöüñçšžčł",
    "абвгдежзийклмнопрстуфхцчшщъыьэюя",
    "".join(chr(c) for c in range(0x915, 0x939)),  # Devanagari consonants
    "αβγδεζηθικλμνξοπρστυφχψω",
])
def test_random_letters_are_gibberish_whatever_the_label(alphabet):
    """Random letters of a script are rejected as gibberish by the letter-pair check, whether
    language ID gave them a language or left them unidentified (und_<Script>)."""
    from conftest import detect_script

    rng = random.Random(7)
    for _ in range(5):
        text = _random_words(alphabet, rng)
        script = detect_script(text)
        for lang in (f"und_{script}", "cym" if script == "Latn" else f"und_{script}"):
            hit = check(text, lang, script)
            assert hit and hit[1] == "gibberish", (text[:60], lang, hit)


def test_letter_pairs_need_enough_text_and_a_known_script():
    from pipeline.corpus import letter_pairs

    assert letter_pairs.score("qzx vbn", "Latn") is None  # too few pairs to judge
    assert letter_pairs.score("漢字" * 200, "Hani") is None  # no table for thousands of characters
    tables = letter_pairs.build({"Latn": ["the cat sat on the mat " * 20] * 10})
    alphabet, pmi, counts, support = tables["Latn"]
    assert "".join(map(chr, alphabet)) == "acehmnost" and pmi.dtype.name == "float16"
    assert counts.sum() == support["letters"] == 3400 and support["pairs"] == 4600  # what it stands on
    assert letter_pairs.score("the cat sat on the mat " * 10, "Latn", tables=tables) > 1.0
    assert letter_pairs.score("tah mta nso cat " * 10, "Latn", tables=tables) < 0.0


def test_clean_held_out_text_is_never_gibberish(shared_data):
    """UDHR, Tatoeba and lingua lines held out from the tables (the `langid train` split), as
    documents of 3 lines, in every script that has a table: none scores below the default
    threshold."""
    from pipeline.config import LidTrainConfig
    from pipeline.corpus import langid_train, letter_pairs
    from pipeline.corpus.langid import detect_scripts
    from pipeline.corpus.profiles import QualityThresholds

    bar = QualityThresholds().min_letter_pair_pmi
    low, judged, scripts = [], 0, set()
    for folder in ("udhr", "tatoeba", "lingua-sentences"):
        raw, texts = langid_train.read_labelled([str(shared_data / folder)])
        labs = langid_train.canonical_labels(raw, texts)
        _, held, _ = langid_train.split_examples(labs, texts, LidTrainConfig())
        docs = [(lab, " ".join(lines[i : i + 3])) for lab, lines in held.items() for i in range(0, len(lines) - 2, 3)]
        for (lab, text), script in zip(docs, detect_scripts([t for _, t in docs])):
            s = letter_pairs.score(text, script)
            if s is not None:
                judged += 1
                scripts.add(script)
                if s < bar:
                    low.append((lab, round(s, 2)))
    assert judged > 5000 and len(scripts) >= 20, (judged, scripts)
    assert not low, low
