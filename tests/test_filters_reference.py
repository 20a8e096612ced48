"""Data-derived filters that know how much reference text they stand on (issue 26, item 5).

The letter-pair tables and the per-language thresholds are derived from UDHR / Tatoeba / lingua
(`babelforge profiles derive`). Here they meet genres they were not built from, NTREX news and
the Bible, in every script those have: no clean document may be rejected as gibberish, and where
the reference text is thin (recorded with the table / in _reference.yaml) the check must fall
back or abstain rather than reject. Documents: 10 consecutive sentences or verses, one a line.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from conftest import SHARED_DATA

from pipeline.corpus import filters, letter_pairs
from pipeline.corpus.profiles import profile

DOC_LINES = 10


def _read(path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".tsv":  # bible: verse id <TAB> text
        lines = [l.split("\t", 1)[1] for l in lines if "\t" in l]
    return [l.strip() for l in lines if l.strip()]


def _docs(lines: list[str]) -> list[str]:
    return ["\n".join(lines[i : i + DOC_LINES]) for i in range(0, len(lines) - DOC_LINES + 1, DOC_LINES)]


@pytest.fixture(scope="module")
def genre_docs() -> dict[str, list[tuple[str, str, str]]]:
    """{'ntrex/<file>' | 'bible/<file>': [(document, canonical label, detected script)]}."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real multilingual data not present at {SHARED_DATA} (a fresh clone has no ../shared)")
    from pipeline.corpus.langid import detect_scripts
    from pipeline.language_codes import normalize

    out = {}
    for folder, pattern in (("ntrex", "*_*.txt"), ("bible", "*_*.tsv")):
        for path in sorted((SHARED_DATA / folder).glob(pattern)):
            docs = _docs(_read(path))
            scripts = detect_scripts(docs)
            main = Counter(scripts).most_common(1)[0][0]
            label = normalize(path.stem.split("-")[0], main)
            out[f"{folder}/{path.stem}"] = [(d, label, s) for d, s in zip(docs, scripts)]
    return out


_ZAWGYI = re.compile(r"(?:^|[^\u1000-\u109f])\u1031")  # vowel sign E typed before its consonant


def _zawgyi(text: str) -> bool:
    """Burmese in the legacy Zawgyi encoding (not Unicode): the vowel sign E (U+1031) comes
    before its consonant, at the start of a syllable, which Unicode text never does."""
    return text.count("\u1031") >= 10 and len(_ZAWGYI.findall(text)) > 0.05 * text.count("\u1031")


def _gibberish(text: str, label: str, script: str, **kw) -> tuple[float | None, float | None]:
    """(letter-pair score, bar) of the gibberish check as `filters.check_quality` applies it."""
    q = profile(label, script).quality
    s = letter_pairs.score(text, script, q.letter_pair_min_pairs,
                           min_letter_share=kw.get("min_letter_share", q.letter_pair_min_letter_share))
    return s, filters.letter_pair_bar(script, q)[0]


def test_clean_news_and_bible_are_never_gibberish(genre_docs):
    """Every document of every file, in every script with a table (24 of the 26: no Tifinagh
    news or Bible here, and NTREX's Burmese is in the legacy Zawgyi encoding, not Unicode: its
    letters come in another order, which the check rightly finds unlike Burmese, so those
    documents are set apart by their encoding, not by language), is judged; none scores below
    its script's bar."""
    low, judged, zawgyi = [], Counter(), Counter()
    for name, docs in genre_docs.items():
        for text, label, script in docs:
            if _zawgyi(text):
                zawgyi[(name, script)] += 1
                continue
            s, bar = _gibberish(text, label, script)
            if s is not None:
                judged[script] += 1
                if bar is not None and s < bar:
                    low.append((name, round(s, 2)))
    assert not low, low
    tables = letter_pairs.load()
    present = {s for docs in genre_docs.values() for _, _, s in docs if s in tables}
    assert {name for name, _ in zawgyi} == {"ntrex/mya_Mymr"} and sum(zawgyi.values()) > 150, zawgyi
    assert set(judged) == present - {"Mymr"} and len(judged) >= 24, (sorted(judged), sorted(present))
    assert sum(judged.values()) > 20_000


def test_clean_news_and_bible_are_kept_in_nearly_every_language(genre_docs):
    """All the filters (quality, repetition, lines) with the language's label: >= 95% of the
    documents kept in >= 95% of the files, ntrex and bible each."""
    for folder in ("ntrex", "bible"):
        low = {}
        files = {k: v for k, v in genre_docs.items() if k.startswith(folder + "/")}
        for name, docs in files.items():
            kept = sum(filters.check(text, label, script) is None for text, label, script in docs)
            if kept < 0.95 * len(docs):
                low[name] = round(kept / len(docs), 3)
        assert len(low) <= 0.05 * len(files), (folder, low)


def test_thin_tables_fall_back_to_the_random_letter_bar(genre_docs):
    """Which tables are thin follows from the amount of text recorded with them, and a thin
    table is what lets another language of its script through: an Ethiopic table from the
    Amharic UDHR alone (~5,000 letter pairs) puts nearly all Tigrinya news below the default
    bar, and the thin table's bar keeps >= 95% of it."""
    q = profile("und_Latn", "Latn").quality
    tables = letter_pairs.load()
    thin = {s for s, t in tables.items() if t.reference_pairs < q.letter_pair_min_reference_pairs}
    assert {"Ethi", "Syrc", "Cher", "Tfng"} <= thin and not {"Latn", "Cyrl", "Arab", "Deva"} & thin, thin
    for s in thin:
        assert filters.letter_pair_bar(s, q) == (q.min_letter_pair_pmi_thin, True)
    assert filters.letter_pair_bar("Latn", q) == (q.min_letter_pair_pmi, False)

    amharic = letter_pairs.build({"Ethi": (SHARED_DATA / "udhr" / "amh_Ethi.txt").read_text().splitlines()})
    assert amharic["Ethi"].reference_pairs < q.letter_pair_min_reference_pairs
    bar, is_thin = filters.letter_pair_bar("Ethi", q, amharic)
    assert is_thin and bar == q.min_letter_pair_pmi_thin
    scores = [letter_pairs.score(d, "Ethi", tables=amharic) for d, _, _ in genre_docs["ntrex/tir_Ethi"]]
    scores = [s for s in scores if s is not None]
    assert sum(s < q.min_letter_pair_pmi for s in scores) > 0.9 * len(scores)  # the default bar would reject
    assert sum(s >= bar for s in scores) >= 0.95 * len(scores)                # the fallback keeps


def test_letters_the_reference_barely_has_are_not_judged(genre_docs):
    """Letters that made under `letter_pair_min_letter_share` of a script's reference letters (the
    Tongan okina U+02BB: 110 of 9 million Latin letters) or belong to another script (Latin
    homoglyphs in NTREX's Serbian Cyrillic) are not scored: judged by their thin statistics,
    Tongan news is rejected; not judged, it passes."""
    tables = letter_pairs.load()
    cyrl = {chr(c) for c in tables["Cyrl"].alphabet}
    assert not {"a", "e", "o"} & cyrl and {"а", "е", "о"} <= cyrl
    ton = genre_docs["ntrex/ton_Latn"]
    with_thin = [_gibberish(d, lab, s, min_letter_share=0.0) for d, lab, s in ton]
    assert sum(s is not None and s < bar for s, bar in with_thin) >= 10
    assert not [s for s, bar in (_gibberish(d, lab, s) for d, lab, s in ton) if s is not None and s < bar]


def test_line_punctuation_abstains_where_the_reference_is_thin(genre_docs):
    """The line-punctuation threshold rests on a language's reference documents
    (`reference_docs`, from _reference.yaml); with fewer than `lines.min_reference_docs` (Ewe and
    Oromo: 18 UDHR documents) the check does not apply, with more (English) it does."""
    stripped = {}
    for name in ("ntrex/ewe_Latn", "ntrex/orm_Latn", "ntrex/eng_Latn"):
        text, label, script = genre_docs[name][0]
        stripped[label] = ("\n".join(re.sub(r"\W+$", "", l) for l in text.split("\n")), script)
    for label, (text, script) in stripped.items():
        p = profile(label, script)
        hit = filters.check_lines(text, text.split(), text.split("\n"), p)
        if label == "eng_Latn":
            assert p.reference_docs >= p.lines.min_reference_docs and hit[0] == "lines_without_punctuation"
        else:
            assert 0 < p.reference_docs < p.lines.min_reference_docs and hit is None, (label, hit)


@pytest.mark.parametrize("script", ["Ethi", "Syrc", "Cher", "Tfng", "Laoo", "Sinh", "Knda", "Thaa", "Tibt"])
def test_random_letters_of_a_thin_script_are_still_gibberish(script):
    """Random words (2-9 letters drawn uniformly from the script's table) are rejected as gibberish
    under the thin bar too (scores -1.1 to -2.8, clean text of other languages and genres >= -0.5).
    Not caught: random letters drawn with the letters' own frequencies in a thin script (Syriac
    3 of 20, Tifinagh 8 of 20), which a table of one language's UDHR cannot tell from a language
    it has not seen; language ID's unidentified bucket is what remains for those."""
    table = letter_pairs.load().get(script)
    if table is None:
        pytest.skip(f"no shipped table for {script}")
    assert table.reference_pairs < profile(f"und_{script}", script).quality.letter_pair_min_reference_pairs
    alphabet = [chr(c) for c in table.alphabet]
    rng = random.Random(7)
    caught = 0
    for _ in range(20):
        text = " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9))) for _ in range(40))
        hit = filters.check(text, f"und_{script}", script)
        caught += bool(hit and hit[1] == "gibberish")
    assert caught >= 19, caught
