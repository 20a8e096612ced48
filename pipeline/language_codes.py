"""One language-code scheme for every model and data set: ISO 639-3 + ISO 15924 script.

Every language label the pipeline writes (`lang`, `lang_top`, shard folders, manifest keys,
report rows, model-card languages) is `<ISO 639-3>_<script>`, e.g. `fra_Latn`, `zho_Hant`,
`srp_Cyrl`: the FLORES-200 / NLLB convention, which is also how GlotLID, SIB-200 and NLLB
name languages. A model that says `fr` (lid.176), `__label__fra_Latn` (GlotLID) or `fre` is
mapped to it here, so swapping the language-ID model changes no code downstream.

Rules, in order (see `normalize`):
1. strip fastText's `__label__`; split an optional script (`zh-Hant`, `srp_Latn`);
2. bare labels go through `WIKI_ALIASES` first: lid.176 speaks Wikipedia codes, where `als`
   means Alemannic (ISO `gsw`), not Tosk Albanian as in ISO 639-3;
3. the language becomes its ISO 639-3 code (`langcodes`: 639-1, 639-2/B, 639-3 all work);
4. a macrolanguage becomes the individual language FLORES-200 uses for it (`MACRO`): `ara` ->
   `arb` (Modern Standard Arabic), `swa` -> `swh`, `fas` -> `pes`, `msa` -> `zsm`... Chinese
   stays `zho`, as in FLORES, and `cmn` (GlotLID's Mandarin) maps to it;
5. the script: the model's if it names one; else, for Chinese, Simplified or Traditional by the
   characters of the text (`han_variant`); else the document's detected script when the
   language is written in it (its profile's `scripts`, or `MULTI_SCRIPT` for well-known
   languages with several scripts); else the language's usual script (its profile's first
   script, or CLDR's likely script via `langcodes`). A runner-up language of a Devanagari
   document is thus `ell_Grek`, never `ell_Deva`.

Config entries (`languages: [fr, sw]`, per-language thresholds) may be written in any of these
forms; an entry without a script matches the language in every script (`matches`, `lookup`).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

from .schema import UNKNOWN_LANG as UNKNOWN

# lid.176 labels are Wikipedia language codes; where one means something else in ISO 639-3,
# or is no longer valid, map it (applied to labels without a script only).
WIKI_ALIASES = {
    "als": "gsw",  # Alemannic (ISO als = Tosk Albanian)
    "sh": "hbs",   # Serbo-Croatian
    "eml": "egl",  # Emiliano-Romagnolo (retired code) -> Emilian
    "bh": "bho",   # Bihari (a collective code) -> Bhojpuri, its main language on Wikipedia
    "tl": "tgl",   # Tagalog (CLDR rewrites tl to fil)
}

# Macrolanguage (or alias) -> the individual language FLORES-200 / NLLB name it by.
MACRO = {
    "ara": "arb", "swa": "swh", "fas": "pes", "msa": "zsm", "lav": "lvs", "uzb": "uzn",
    "mon": "khk", "nep": "npi", "ori": "ory", "pus": "pbt", "sqi": "als", "aze": "azj",
    "orm": "gaz", "que": "quy", "yid": "ydd", "kur": "kmr", "nor": "nob",
    "kau": "knc", "mlg": "plt", "kom": "kpv", "fil": "tgl", "cmn": "zho", "gug": "grn", "ekk": "est",
}
# (Guarani is `grn` in FLORES-200, so `gug` maps to it and never the other way: normalising twice
# gives the same code.)

# The languages of FLORES-200 (the NLLB codes, ISO 639-3): a code in this list is kept as it is,
# even where CLDR folds it into another (Dari `prs` is not Persian `pes`, Guarani is `grn`).
FLORES_LANGUAGES = frozenset("""
ace acm acq aeb afr ajp aka als amh apc arb ars ary arz asm ast awa ayr azb azj bak bam ban bel
bem ben bho bjn bod bos bug bul cat ceb ces cjk ckb crh cym dan deu dik dyu dzo ell eng epo est
eus ewe fao fij fin fon fra fur fuv gaz gla gle glg grn guj hat hau heb hin hne hrv hun hye ibo
ilo ind isl ita jav jpn kab kac kam kan kas kat kaz kbp kea khk khm kik kin kir kmb kmr knc kon
kor lao lij lim lin lit lmo ltg ltz lua lug luo lus lvs mag mai mal mar min mkd mlt mni mos mri
mya nld nno nob npi nso nus nya oci ory pag pan pap pbt pes plt pol por prs quy ron run rus sag
san sat scn shn sin slk slv smo sna snd som sot spa srd srp ssw sun swe swh szl tam taq tat tel
tgk tgl tha tir tpi tsn tso tuk tum tur twi tzm uig ukr umb urd uzn vec vie war wol xho ydd yor
yue zho zsm zul""".split())

# Default scripts where CLDR's likely script is not the one FLORES uses.
DEFAULT_SCRIPT = {"kor": "Hang", "hbs": "Latn", "azb": "Arab", "bho": "Deva", "egl": "Latn", "acm": "Arab",
                  "acq": "Arab", "ajp": "Arab", "pbt": "Arab", "crh": "Latn", "tzm": "Tfng"}

# Languages commonly written in more than one script (first = usual); a profile's `scripts:`
# takes precedence.
MULTI_SCRIPT = {
    "srp": ["Cyrl", "Latn"], "hbs": ["Latn", "Cyrl"], "bos": ["Latn", "Cyrl"], "uzn": ["Latn", "Cyrl"],
    "azj": ["Latn", "Cyrl"], "kaz": ["Cyrl", "Latn"], "tat": ["Cyrl", "Latn"], "tuk": ["Latn", "Cyrl"],
    "kir": ["Cyrl", "Arab"], "khk": ["Cyrl", "Mong"], "pan": ["Guru", "Arab"], "snd": ["Arab", "Deva"],
    "kas": ["Arab", "Deva"], "urd": ["Arab"], "hin": ["Deva"], "ber": ["Tfng", "Latn", "Arab"],
    "kab": ["Latn", "Tfng"], "tzm": ["Tfng", "Latn"], "zgh": ["Tfng"], "uig": ["Arab", "Cyrl", "Latn"],
    "kmr": ["Latn", "Arab", "Cyrl"], "ckb": ["Arab"], "mon": ["Cyrl", "Mong"], "jpn": ["Jpan"],
    "kor": ["Hang", "Kore"], "sat": ["Olck", "Deva", "Beng"], "mni": ["Beng", "Mtei"],
    "ful": ["Latn", "Adlm"], "fuv": ["Latn", "Adlm"], "aze": ["Latn", "Cyrl", "Arab"],
    "ace": ["Latn", "Arab"], "bjn": ["Latn", "Arab"], "knc": ["Latn", "Arab"], "taq": ["Latn", "Tfng"],
    "min": ["Latn", "Arab"], "crh": ["Latn", "Cyrl"],
}

# Close languages told apart by their script (policy, see README "Close languages"): a text
# identified as the first language but written in the second script is the twin language.
SCRIPT_TWINS = {("hin", "Arab"): "urd", ("urd", "Deva"): "hin", ("bos", "Cyrl"): "srp", ("hrv", "Cyrl"): "srp",
                ("pnb", "Guru"): "pan", ("pan", "Arab"): "pnb"}

CHINESE = {"zho", "yue", "wuu", "hak", "nan", "gan", "hsn", "cjy", "cdo", "lzh"}

_LABEL = re.compile(r"^(?:__label__)?([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?$")

# Characters that differ between Simplified and Traditional Chinese, among the most frequent
# in running text: (traditional, simplified) pairs.
_HAN_PAIRS = ("們们 這这 個个 來来 說说 時时 會会 為为 國国 學学 對对 過过 還还 後后 開开 經经 "
              "關关 裡里 點点 麼么 實实 與与 現现 發发 動动 當当 業业 從从 門门 問问 長长 間间 "
              "頭头 見见 機机 電电 話话 車车 東东 書书 沒没 種种 樣样 讓让 給给 應应 員员 進进 "
              "將将 邊边 無无 麗丽 歲岁 認认 誰谁 聽听 寫写 讀读 語语 錢钱 買买 賣卖 愛爱 氣气 "
              "體体 處处 區区 師师 報报 難难 題题 從从 們们 張张 號号 層层 歡欢 樂乐 鐘钟 飛飞")
_TRAD = re.compile("[" + "".join(p[0] for p in _HAN_PAIRS.split()) + "]")
_SIMP = re.compile("[" + "".join(p[1] for p in _HAN_PAIRS.split()) + "]")


def han_variant(text: str, max_chars: int = 2000) -> str:
    """'Hant' when a Han text uses more Traditional-only than Simplified-only characters of
    the frequent pairs in `_HAN_PAIRS`, else 'Hans'."""
    head = text[:max_chars]
    return "Hant" if len(_TRAD.findall(head)) > len(_SIMP.findall(head)) else "Hans"


def language(label: str) -> str:
    """The ISO 639-3 part of a canonical label."""
    return label.partition("_")[0]


@lru_cache(maxsize=4096)
def language_code(code: str) -> str:
    """ISO 639-3 code (FLORES-200 individual language for a macrolanguage) of a language code
    in any ISO 639 form; raises ValueError for a code that is not a language."""
    import langcodes

    if code.lower() in FLORES_LANGUAGES:
        return code.lower()
    try:
        alpha3 = langcodes.Language.get(code.lower()).to_alpha3()
    except (LookupError, ValueError) as e:  # langcodes raises LookupError for unknown codes
        raise ValueError(f"not an ISO 639 language code: {code!r}") from e
    return MACRO.get(alpha3, alpha3)


@lru_cache(maxsize=1)
def _macrolanguages() -> dict[str, str]:
    """{individual language: its macrolanguage} (ISO 639-3), from the IANA subtag registry
    that langcodes ships (`Macrolanguage:` fields)."""
    import langcodes

    path = os.path.join(os.path.dirname(langcodes.__file__), "data", "language-subtag-registry.txt")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for record in f.read().split("%%"):
            fields = dict(line.split(": ", 1) for line in record.strip().splitlines() if ": " in line)
            if fields.get("Type") == "language" and "Macrolanguage" in fields:
                out[_alpha3(fields["Subtag"])] = _alpha3(fields["Macrolanguage"])
    return out


def _alpha3(code: str) -> str:
    import langcodes

    if code == "sh":  # deprecated Serbo-Croatian: langcodes reads it as Serbian
        return "hbs"
    return langcodes.Language.get(code).to_alpha3() if len(code) == 2 else code


def macrolanguage(lang3: str) -> str | None:
    """The macrolanguage an individual language belongs to (`arz` -> `ara`, `ind` -> `msa`,
    `ltg` -> `lav`), None for a language in none; a FLORES-200 code that the registry calls a
    macrolanguage (`zho`, `est`, `grn`) is its own language here."""
    return _macrolanguages().get(lang3)


def is_macrolanguage(lang3: str) -> bool:
    return lang3 not in FLORES_LANGUAGES and lang3 in set(_macrolanguages().values())


@lru_cache(maxsize=4096)
def language_keep_macro(label: str) -> str:
    """The ISO 639-3 code of a model label, a macrolanguage kept as one (`ar` -> `ara`, not
    `arb`); otherwise as `language_code`. Raises ValueError for a label that is no language."""
    m = _LABEL.match(label.strip())
    if not m:
        raise ValueError(f"not a language label: {label!r}")
    code = m.group(1).lower()
    if m.group(2) is None:
        code = WIKI_ALIASES.get(code, code)
    if code not in FLORES_LANGUAGES:
        try:
            alpha3 = _alpha3(code) if len(code) == 2 else code
        except (LookupError, ValueError):
            alpha3 = code
        if is_macrolanguage(alpha3):
            return alpha3
    return language_code(code)


def normalize_keep_macro(label: str, detected_script: str = "Zyyy", text: str | None = None) -> str | None:
    """`normalize`, but a macrolanguage answer stays a macrolanguage (`ara_Arab`, `msa_Latn`,
    `hbs_Latn`): which member language it is, is for the other models to say (`lid_combine`).
    None where the text decides (Chinese in Han characters) and no text is given."""
    try:
        lang = language_keep_macro(label)
    except ValueError:
        return f"{UNKNOWN}_{detected_script or 'Zyyy'}"
    if not is_macrolanguage(lang):
        return normalize_without_text(label, detected_script or "Zyyy") if text is None \
            else normalize(label, detected_script, text)
    script = _parse(label)[1] or _with_script(MACRO.get(lang, lang), detected_script or "Zyyy").split("_")[1]
    return f"{lang}_{script}"


@lru_cache(maxsize=4096)
def default_script(lang3: str) -> str:
    """The usual script of a language: its profile's first script, else CLDR's likely script."""
    if lang3 in DEFAULT_SCRIPT:
        return DEFAULT_SCRIPT[lang3]
    from .corpus.profiles import declared_scripts

    declared = declared_scripts(lang3)
    if declared:
        return "Hans" if declared[0] == "Hani" and lang3 in CHINESE else declared[0]
    import langcodes

    script = langcodes.Language.get(lang3).maximize().script or "Zyyy"
    return {"Kore": "Hang", "Hani": "Hans"}.get(script, script)


@lru_cache(maxsize=8192)
def _parse(label: str) -> tuple[str, str | None]:
    m = _LABEL.match(label.strip())
    if not m:
        raise ValueError(f"not a language label: {label!r} (expected e.g. 'fr', 'fra', 'fra_Latn')")
    code, script = m.group(1).lower(), m.group(2)
    if script and script.title() == "Kore":  # Korean's Hangul + Han: written Hang, as FLORES does
        script = "Hang"
    if script is None:
        code = WIKI_ALIASES.get(code, code)
    return language_code(code), script.title() if script else None


def normalize_code(entry: str) -> str:
    """A config entry in canonical form, keeping its script only if it names one: 'fr' ->
    'fra', 'zh-Hant' -> 'zho_Hant', 'sw' -> 'swh'. Raises ValueError naming a bad entry."""
    if entry == "*":
        return entry
    lang, script = _parse(entry)
    return f"{lang}_{script}" if script else lang


@lru_cache(maxsize=65536)
def _with_script(lang: str, detected: str) -> str:
    if (lang, detected) in SCRIPT_TWINS:
        return f"{SCRIPT_TWINS[lang, detected]}_{detected}"
    default = default_script(lang)
    if detected in ("Zyyy", "", default):
        return f"{lang}_{default}"
    if detected == "Hani" and default == "Jpan":  # kanji-only Japanese is still Japanese
        return f"{lang}_Jpan"
    from .corpus.profiles import declared_scripts

    declared = declared_scripts(lang) or MULTI_SCRIPT.get(lang, [])
    return f"{lang}_{detected}" if detected in declared else f"{lang}_{default}"


@lru_cache(maxsize=65536)
def normalize_without_text(label: str, detected: str) -> str | None:
    """normalize() when the text does not matter (None: it does, Chinese in Han script)."""
    try:
        lang, script = _parse(label)
    except ValueError:
        return f"{UNKNOWN}_{detected}"
    if lang in CHINESE and (script or detected) == "Hani":
        return None
    return f"{lang}_{script}" if script else _with_script(lang, detected)


def normalize(label: str, detected_script: str = "Zyyy", text: str | None = None) -> str:
    """Canonical `<ISO 639-3>_<script>` label of a model label for a document whose detected
    script is `detected_script` (and whose text decides Simplified vs Traditional Chinese).
    A label that is no language code becomes 'und_<script>', never an error: the model, not
    the data, is at fault."""
    detected = detected_script or "Zyyy"
    out = normalize_without_text(label, detected)
    if out is None:  # Chinese in Han characters (GlotLID's cmn_Hani, lid.176's zh): which variant
        lang = _parse(label)[0]
        return f"{lang}_{han_variant(text) if text else default_script(lang)}"
    return out


def is_unidentified(label: str | None) -> bool:
    """Whether a label is `und_<Script>` (language not identified with confidence) or empty."""
    return not label or language(label) == UNKNOWN


def matches(label: str, entries) -> bool:
    """Whether a canonical label is one of the (normalised) config entries: 'fra_Latn' matches
    'fra_Latn' and 'fra'."""
    return label in entries or language(label) in entries


def lookup(mapping: dict, label: str, default=None):
    """A per-language config value: exact label, then its language, then '*', then default."""
    for key in (label, language(label), "*"):
        if key in mapping:
            return mapping[key]
    return default


def normalize_keys(mapping: dict) -> dict:
    """A per-language config mapping with normalised keys; raises ValueError on a bad key or on
    two keys that name the same language."""
    out: dict = {}
    for key, value in mapping.items():
        code = normalize_code(str(key))
        if code in out:
            raise ValueError(f"{key!r} names the same language as another key ({code})")
        out[code] = value
    return out
