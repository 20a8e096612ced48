import pytest
from conftest import SAMPLE_LANGS, detect_script, label

from pipeline.config import LangIdConfig
from pipeline.corpus.langid import identify, predict
from pipeline.schema import make_docs

LINGUA = ["ar", "de", "en", "es", "eu", "fr", "hi", "ja", "ru", "sw", "th", "zh", "ko", "vi", "uk", "he", "el", "ta"]


def test_sample_languages_are_identified():
    import sys
    sys.path.insert(0, str(__import__("conftest").SAMPLE))
    from texts import DOCS

    for lang in SAMPLE_LANGS:
        texts = [t for docs in DOCS[lang].values() for t in docs]
        langs, scores = predict(texts)
        assert sum(l == label(lang) for l in langs) >= 0.75 * len(texts), (lang, langs)


@pytest.mark.parametrize("lang", LINGUA)
def test_real_sentences_per_language(shared_data, lang):
    """Three-sentence documents from lingua's test sentences: >= 95% identified correctly."""
    lines = [l for l in (shared_data / "lingua-sentences" / f"{lang}.txt").read_text().splitlines() if l.strip()][:300]
    docs = [" ".join(lines[i : i + 3]) for i in range(0, len(lines), 3)]
    langs, _ = predict(docs)
    accuracy = sum(l == label(lang) for l in langs) / len(langs)
    assert accuracy >= 0.95, f"{lang}: {accuracy:.2f}"


def test_all_caps_and_newlines_do_not_confuse_the_model():
    langs, scores = predict(["DAS NEUE RESTAURANT AM MARKT SERVIERT REIS MIT GEGRILLTEM FISCH",
                             "Le lac gèle en hiver\net la neige couvre\nles collines."])
    assert langs == ["deu_Latn", "fra_Latn"] and min(scores) > 0.8


@pytest.mark.parametrize("text,script", [
    ("Hello world", "Latn"), ("Привет, мир", "Cyrl"), ("你好，世界", "Hani"), ("こんにちは世界", "Jpan"),
    ("مرحبا بالعالم", "Arab"), ("नमस्ते दुनिया", "Deva"), ("สวัสดีชาวโลก", "Thai"), ("안녕하세요", "Hang"),
    ("12345 !!!", "Zyyy"),
])
def test_detect_script(text, script):
    assert detect_script(text) == script


def test_identify_rejects_foreign_languages_and_keeps_unsure_ones_apart():
    """Outside `languages`: rejected with the language named. Below its threshold (per
    language: the config's, else the profile's): kept as und_<Script> with its candidates."""
    docs = make_docs(["en", "it", "sym", "sw"],
                     ["The weather was cold and rainy all week in the north.",
                      "Il treno per Milano parte alle otto e arriva a mezzogiorno.",
                      "#### @@@ %%%",
                      "Upepo mkali ulivuma kutoka baharini na mawingu meusi yakafunika kijiji chote."],
                     ["s"] * 4)
    cfg = LangIdConfig(min_score=0.5, languages=["eng", "swh"], min_score_per_language={"swh": 0.05})
    kept, rej = identify(docs, cfg)
    assert kept["id"].to_pylist() == ["en", "sym", "sw"]
    assert kept["lang"].to_pylist() == ["eng_Latn", "und_Zyyy", "swh_Latn"]
    assert kept["script"].to_pylist() == ["Latn", "Zyyy", "Latn"]
    assert dict(zip(rej["id"].to_pylist(), rej["reason"].to_pylist())) == {"it": "language_not_allowed"}
    assert rej["detail"][0].as_py().startswith("ita_Latn:")
    assert rej["stage"].to_pylist() == ["langid"]
    strict = LangIdConfig(min_score=0.5, min_score_per_language={"swh": 0.99})
    kept, _ = identify(docs.slice(3), strict)
    assert kept["lang"].to_pylist() == ["und_Latn"]                 # unsure: kept apart, not dropped
    assert kept["lang_top"][0][0]["lang"].as_py() == "swh_Latn"     # with its best candidate


def test_ensemble_sums_normalised_labels_and_consults_the_second_model_only_when_unsure():
    from pipeline.corpus.langid import predict_top

    text = ["Upepo mkali ulivuma kutoka baharini na mawingu meusi yakafunika kijiji chote."]
    lid176, s1, _ = predict_top(text, "lid.176", k=3)
    always = LangIdConfig(confident=1.0, recheck=[])
    both, s, top = predict_top(text, always, k=3)
    a, b = always.models
    p1 = dict((t["lang"], t["score"]) for t in predict_top(text, "lid.176", k=5)[2][0].as_py())
    p2 = dict((t["lang"], t["score"]) for t in predict_top(text, "babelforge", k=5)[2][0].as_py())
    expect = (a.weight * p1.get(both[0], 0) + b.weight * p2.get(both[0], 0)) / (a.weight + b.weight)
    assert s[0] == pytest.approx(expect, rel=1e-5)
    assert both[0] == "swh_Latn" and top[0][0]["lang"].as_py() == "swh_Latn"
    # a confident first model is not second-guessed: its own answer and score stand
    sure, s_sure, _ = predict_top(text, LangIdConfig(confident=min(s1[0], 0.99) - 1e-6, recheck=[]), k=3)
    assert (sure[0], s_sure[0]) == (lid176[0], pytest.approx(s1[0], rel=1e-6))


def test_languages_the_first_model_does_not_know_are_rechecked(shared_data):
    """lid.176 reads Dzongkha as Tibetan with confidence; Tibetan is on the shipped re-check
    list, so the second model, which knows Dzongkha, is asked and wins by its margin."""
    from pipeline.corpus.langid import known_languages, recheck_set

    assert "dzo" not in known_languages("lid.176") and "bod_Tibt" in recheck_set(LangIdConfig())
    lines = [l for l in (shared_data / "udhr" / "dzo_Tibt.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    docs = [" ".join(lines[i : i + 3]) for i in range(0, 30, 3)]
    raw, _ = predict(docs, "lid.176")
    assert raw.count("bod_Tibt") >= 8                       # lid.176 alone: Tibetan
    ours, _ = predict(docs)
    assert ours.count("dzo_Tibt") >= 8                      # the ensemble: Dzongkha
    unchecked, _ = predict(docs, LangIdConfig(recheck=[]))  # without the re-check list: Tibetan again
    assert unchecked.count("bod_Tibt") >= 8


def test_truncation_and_newlines_keep_the_answer_on_long_documents(shared_data):
    """Language ID reads the first max_chars characters; on long multi-line documents
    (40 real sentences, one per line) the answer is the same as on the whole text."""
    same, total = 0, 0
    for lang in LINGUA:
        lines = [l for l in (shared_data / "lingua-sentences" / f"{lang}.txt").read_text().splitlines() if l.strip()]
        docs = ["\n".join(lines[i : i + 40]) for i in range(0, 400, 40)]
        full, _ = predict(docs)
        cut, _ = predict(docs, max_chars=2000)
        assert sum(l == label(lang) for l in cut) >= 0.95 * len(docs), lang
        same += sum(a == b for a, b in zip(full, cut))
        total += len(docs)
    assert same / total >= 0.99


def test_script_must_fit_the_language():
    from pipeline.corpus.langid import script_fits

    assert script_fits("rus_Cyrl", "Cyrl") and not script_fits("rus_Cyrl", "Latn")
    assert script_fits("jpn_Jpan", "Jpan") and script_fits("jpn_Jpan", "Hani") and not script_fits("jpn_Jpan", "Latn")
    assert script_fits("gsw_Latn", "Latn")    # unconfigured language: any script
    assert script_fits("hin_Deva", "Zyyy")    # no letters: nothing to judge
    docs = make_docs(["d"], ["Vsyu noch nad gorami shel silnyy dozhd, i reka bystro podnyalas."], ["s"], lang=["rus_Cyrl"])
    kept, rej = identify(docs)
    assert kept.num_rows == 0 and rej["reason"].to_pylist() == ["script_mismatch"]
    assert rej["detail"][0].as_py().endswith("in Latn")


def test_lines_in_another_language_or_script_are_removed(shared_data):
    """English site lines (no boilerplate pattern names them) and a line in another script leave
    a Swahili document, whose own lines all stay."""
    from pipeline.corpus.langid import strip_foreign_lines

    sw = [l for l in (shared_data / "lingua-sentences" / "sw.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    site = ["Share this article with your friends on Facebook, Twitter and WhatsApp",
            "Sign up for our weekly newsletter and never miss a story again"]
    own = [" ".join(sw[i : i + 3]) for i in range(0, 12, 3)]
    doc = "\n".join([site[0], own[0], own[1], "Подпишитесь на нашу рассылку новостей сегодня", own[2], own[3], site[1]])
    docs, _ = identify(make_docs(["d"], [doc], ["s"]))
    assert docs["lang"].to_pylist() == ["swh_Latn"]
    out, removed = strip_foreign_lines(docs)
    assert removed == 3 and out["text"].to_pylist() == ["\n".join(own)]
    off, n = strip_foreign_lines(docs, LangIdConfig(foreign_lines=False))
    assert n == 0 and off["text"].to_pylist() == [doc]
