"""Translation building blocks: sentence splitting per script, each model family's language
codes (tiny MarianMT, M2M100 and NLLB built offline), both backends, errors isolated."""

import pytest
from tiny_models import build_tiny_m2m100, build_tiny_marian, build_tiny_nllb

from pipeline.translation import sentences
from pipeline.translation.backends import HFBackend, load
from pipeline.translation.codes import LanguageNotSupported, model_codes
from pipeline.translation.quality import check, longest_loop

TEXTS = ["The cat sat on the mat.", "Le chat est assis sur le tapis.", "Paka ameketi juu ya mkeka.",
         "我们今天去公园散步。", "Кошка сидит на ковре."] * 10


@pytest.mark.parametrize("text, script, expected", [
    ("Hello there. It is 3.5 m long! Is it? “Yes.” OK", "Latn", ["Hello there.", "It is 3.5 m long!", "Is it?", "“Yes.”", "OK"]),
    ("我们今天去公园。天气很好！你呢？", "Hans", ["我们今天去公园。", "天气很好！", "你呢？"]),
    ("यह एक वाक्य है। यह दूसरा है।", "Deva", ["यह एक वाक्य है।", "यह दूसरा है।"]),
    ("ሰላም ነው። ደህና ነህ?", "Ethi", ["ሰላም ነው።", "ደህና ነህ?"]),
    ("هذا جميل؟ نعم.", "Arab", ["هذا جميل؟", "نعم."]),
    ("ฉันไปตลาด วันนี้อากาศดี", "Thai", ["ฉันไปตลาด", "วันนี้อากาศดี"]),
    ("今日は晴れです。散歩に行きます。", "Jpan", ["今日は晴れです。", "散歩に行きます。"]),
])
def test_sentences_per_script(text, script, expected):
    assert sentences.sentences(text, script) == expected


def test_long_sentences_are_cut_never_truncated_and_documents_come_back_in_order():
    text = "A long sentence, with a clause; and another part here. Short one.\nNew line here."
    pieces = sentences.split(text, "Latn", lambda s: len(s) <= 25)
    assert all(len(p.text) <= 25 for p in pieces)
    assert " ".join(p.text for p in pieces).replace("\n", " ") == text.replace("\n", " ")
    assert [p.after for p in pieces] == ["cut", "cut", "sentence", "line", "end"]
    assert sentences.join([p.text.upper() for p in pieces], pieces, "Latn") == text.upper()
    # unspaced target script: no spaces between sentences, the line break kept
    assert sentences.join(["甲。", "乙，", "丙。", "丁。", "戊。"], pieces, "Hans") == "甲。乙，丙。丁。\n戊。"
    # a sentence without any break point is cut between characters
    assert all(len(p.text) <= 10 for p in sentences.split("x" * 95, "Latn", lambda s: len(s) <= 10))


def test_quality_checks_name_the_failure():
    src, sw = ("eng_Latn", "Latn"), ("swh_Latn", "Latn")
    kw = {"max_length_ratio": 3.0, "max_repeats": 4}
    assert longest_loop("a b a b a b a b c".split()) == (4, "a b")
    assert check("The cat sat on the mat.", "Paka ameketi juu ya mkeka.", src, sw, **kw) is None
    assert check("The cat sat.", "", src, sw, **kw)[0] == "empty_output"
    assert check("The cat sat.", "the cat sat.", src, sw, **kw)[0] == "copy_of_source"
    assert check("The cat sat on the mat today.", "paka paka paka paka paka", src, sw, **kw)[0] == "repetition_loop"
    assert check("Yes.", "x", src, sw, **kw) is None  # tiny texts: no ratio verdict
    assert check("The cat sat on the mat in the sun today and then it slept.", "Paka.", src, sw, **kw)[0] == "length_ratio"
    assert check("a", None, src, sw, error="IndexError: boom", **kw) == ("translation_error", "IndexError: boom")
    # loops inside a word, as a small subword model writes them (real output of bench/mt_train.py's model)
    ar = ("arb_Arab", "Arab")
    assert check("He wanted to go.", "انانانانانان في في اللغةة شئئئئئئئئئئئئ أكثر.", src, ar, **kw)[0] == "repetition_loop"
    assert check("Money started pouring in.", "بدأ المال يتدفّق.", src, ar, **kw) is None
    assert check("They sailed by ship.", "Sie fuhren mit dem Schifffahrtsschiff.", src, ("deu_Latn", "Latn"), **kw) is None


def test_letter_loops_are_rare_in_real_text(shared_data):
    """The within-word check rejects almost no human sentence (Tatoeba, every spaced script)."""
    from pipeline.corpus.langid import detect_scripts
    from pipeline.translation.quality import letter_loop

    seen = flagged = 0
    for f in sorted((shared_data / "tatoeba").glob("tatoeba.*")):
        lines = [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        for line, script in zip(lines, detect_scripts(lines)):
            if script not in sentences.UNSPACED:
                seen += 1
                flagged += letter_loop(line.split())[0] >= 4
    assert seen > 100_000 and flagged / seen < 1e-4, (flagged, seen)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {"m2m100": str(build_tiny_m2m100(root / "m2m", TEXTS)), "nllb": str(build_tiny_nllb(root / "nllb", TEXTS)),
            "marian": str(build_tiny_marian(root / "marian", TEXTS, TEXTS))}


@pytest.mark.parametrize("family, source, target", [
    ("nllb", "eng_Latn", "swh_Latn"), ("m2m100", "__en__", "__sw__")])
def test_language_codes_of_many_to_many_models(families, family, source, target):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(families[family], local_files_only=True)
    codes = model_codes(tok, families[family])
    assert codes.family == family
    assert codes.source("eng_Latn") == source and codes.target("swh_Latn") == target
    assert codes.target("arb_Arab") == ("arb_Arab" if family == "nllb" else "__ar__")  # macrolanguage name
    with pytest.raises(LanguageNotSupported, match="no language code for xyz_Latn"):
        codes.target("xyz_Latn")
    # the source token is what the model sees first; the target token is generated first
    codes.set_source(tok, "eng_Latn")
    assert tok.convert_ids_to_tokens(tok("The cat.")["input_ids"])[0] == source
    for backend in ("hf", "ct2"):
        b = load(backend, families[family], max_new_tokens=6)
        assert b.codes.family == family
        out, errors = b.translate(["The cat sat.", "Le chat."], "eng_Latn", "swh_Latn")
        assert not errors and len(out) == 2
        assert not any(t in o for o in out for t in codes.tokens)  # language tokens never leak into text


def test_marian_single_pair_needs_no_codes(families):
    from transformers import AutoTokenizer

    codes = model_codes(AutoTokenizer.from_pretrained(families["marian"]), "m")
    assert codes.family == "marian" and codes.source("eng_Latn") is None and codes.target("swh_Latn") is None


class FlakyBackend(HFBackend):
    """The real tiny model, except that any batch holding a poisoned sentence raises, as a CUDA
    out-of-memory or a model bug on one input would."""

    def generate(self, texts, src, tgt, seed):
        if any("POISON" in t for t in texts):
            raise RuntimeError("CUDA out of memory (simulated)")
        return super().generate(texts, src, tgt, seed)


def test_a_failing_batch_costs_only_its_failing_sentence(families):
    b = FlakyBackend(families["marian"], max_new_tokens=6, batch_tokens=10_000)
    texts = ["The cat sat.", "POISON here.", "Le chat.", "Paka ameketi."]
    out, errors = b.translate(texts, "eng_Latn", "swh_Latn")
    assert set(errors) == {1} and "CUDA out of memory" in errors[1]
    assert out[1] is None and all(out[i] is not None for i in (0, 2, 3))
    # the others come out as when translated without the poisoned one (same batch seeds aside: greedy)
    clean, _ = load("hf", families["marian"], max_new_tokens=6).translate([texts[0], texts[2], texts[3]],
                                                                           "eng_Latn", "swh_Latn")
    assert [out[0], out[2], out[3]] == clean


def test_multi_target_marian_gets_its_target_token_before_the_text(tmp_path):
    model = str(build_tiny_marian(tmp_path / "multi", TEXTS, TEXTS, language_tokens=(">>swh<<", ">>fra<<")))
    b = load("hf", model, max_new_tokens=4)
    assert b.codes.family == "marian" and b.codes.target("swh_Latn") == ">>swh<<" and b.codes.target("fr") == ">>fra<<"
    with pytest.raises(LanguageNotSupported, match=">>deu<<"):
        b.codes.target("deu_Latn")
    ids = b.tokenizer(b._prefixed(["The cat sat."], "swh_Latn"))["input_ids"][0]
    assert b.tokenizer.convert_ids_to_tokens(ids)[0] == ">>swh<<"
    assert b.lengths(["The cat sat."], "eng_Latn", "swh_Latn") == [len(ids)]


def test_batches_keep_every_sentence_once_within_the_token_budget(families):
    b = load("hf", families["marian"], batch_tokens=40)
    lengths = [3, 17, 5, 5, 41, 9, 2, 12, 5, 8]
    batches = b.batches(lengths)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    # longest first; a batch over the budget only when one sentence alone is
    assert [lengths[i] for batch in batches for i in batch] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 40
    assert batches[0] == [4]  # 41 tokens: alone, never dropped
