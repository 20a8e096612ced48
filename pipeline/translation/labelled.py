"""Fine-tuning data by translation, for sequence classification (one label per example):

- **translate-train**: the labelled training examples of each model's source language (the
  main language) translated into its target language, labels kept;
- **round-trip paraphrase**: those examples translated there and back (X -> pivot -> X with
  `reverse_model_dir`), labels kept: new wordings of the main language's examples.

Same backends, sentence splitting and quality control as back-translation (a failure is a reject
with its reason); a paraphrase that comes back identical to its example, or repeats another
training example, is rejected too. Output: `translated-train.tsv` (columns lang, label, text,
then origin and kind) that `finetune.extra_train_paths` reads, `translated-train-rejects.parquet`
and `translated-train.json` (per language: kept and rejected by reason)."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import pyarrow as pa

from ..config import PipelineConfig
from ..corpus import augment as aug
from ..corpus.langid import detect_scripts
from ..redact import redact_uri
from ..storage import atomic_open, exists, join, read_json, write_json, write_parquet

log = logging.getLogger(__name__)
OUTPUT = "translated-train.tsv"


def _clean_field(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def _made_from(train: pa.Table, cfg: PipelineConfig) -> str:
    """sha256 of what translate-train output is made of: the labelled rows, the translation
    models and checks (corpus.augment), and which of translate-train / paraphrase is on."""
    import hashlib
    import json

    rows = hashlib.sha256(json.dumps(train.select(["lang", "label", "text"]).to_pydict(),
                                     ensure_ascii=False).encode()).hexdigest()
    return hashlib.sha256(json.dumps([rows, cfg.corpus.augment.model_dump(mode="json"), cfg.finetune.translate_train,
                                      cfg.finetune.paraphrase], sort_keys=True).encode()).hexdigest()


def augment_labelled(cfg: PipelineConfig, out_dir: str) -> dict:
    """Write translate-train and paraphrase examples of `finetune.train_path` to `out_dir`;
    return the report (with `path`, the TSV to add to the training set)."""
    from ..training.tasks.classification import read_labelled

    fc, a = cfg.finetune, cfg.corpus.augment
    if fc.task != "sequence_classification":
        raise ValueError(f"finetune.task {fc.task}: translate-train and paraphrase keep one label per example, "
                         "so they serve sequence classification only (token labels would need word alignment)")
    if not a.models:
        raise ValueError("finetune.translate_train / paraphrase: corpus.augment.models lists no translation model")
    train = read_labelled(fc.train_path)
    made_from = _made_from(train, cfg)
    done = join(out_dir, "translated-train.json")
    if exists(done) and exists(join(out_dir, OUTPUT)) and read_json(done).get("made_from") == made_from:
        log.info("translate-train: %s already made from these examples and models; kept", join(out_dir, OUTPUT))
        return read_json(done)  # a retried flow gets the same rows, so fine-tuning keeps its lineage
    texts_all, labels_all, langs_all = (train[c].to_pylist() for c in ("text", "label", "lang"))
    seen = {_clean_field(t).casefold() for t in texts_all}
    translators = aug.Translators(cfg.corpus)
    kept: list[dict] = []
    rejected: list[dict] = []
    report: dict[str, dict] = defaultdict(lambda: {"kept": 0, "rejected": Counter()})
    for tm in a.models:
        idx = [i for i, lang in enumerate(langs_all) if lang == tm.source]
        if not idx:
            log.info("translate-train %s->%s: no %s examples in %s", tm.source, tm.target, tm.source,
                     redact_uri(fc.train_path))
            continue
        texts = [texts_all[i] for i in idx]
        scripts = detect_scripts(texts)
        backend = translators.get(tm.model_dir)
        outputs, errors, _, _ = aug._translate_docs(backend, texts, scripts, tm.source, tm.target)
        verdicts = aug.check_translations(texts, scripts, outputs, errors, tm, cfg.corpus, translators)
        good = [k for k, v in enumerate(verdicts) if v is None]

        def emit(kind: str, lang: str, k: int, text: str | None, verdict) -> None:
            origin = f"{redact_uri(fc.train_path)}#{idx[k]}"  # rows name their file without credentials
            if verdict is None:
                kept.append({"lang": lang, "label": labels_all[idx[k]], "text": _clean_field(text), "origin": origin,
                             "kind": kind})
                report[f"{kind}:{lang}"]["kept"] += 1
            else:
                rejected.append({"id": origin, "kind": kind, "lang": lang, "reason": verdict[0],
                                 "detail": verdict[1], "text": text, "source_text": texts[k]})
                report[f"{kind}:{lang}"]["rejected"][verdict[0]] += 1

        if fc.translate_train:
            for k, (out, v) in enumerate(zip(outputs, verdicts)):
                emit("translate-train", tm.target, k, out, v)
        if fc.paraphrase:
            if not tm.reverse_model_dir:
                raise ValueError(f"finetune.paraphrase: model {tm.source}->{tm.target} has no reverse_model_dir "
                                 "for the way back")
            back, back_errors, _, _ = aug._translate_docs(translators.get(tm.reverse_model_dir),
                                                         [outputs[k] for k in good],
                                                         [tm.target.partition("_")[2]] * len(good), tm.target, tm.source)
            back_verdicts = aug.check_translations([outputs[k] for k in good], [tm.target.partition("_")[2]] * len(good),
                                                   back, back_errors, tm, cfg.corpus, translators,
                                                   direction=(tm.target, tm.source))
            for k, text, v in zip(good, back, back_verdicts):
                if v is None and text and _clean_field(text).casefold() == _clean_field(texts[k]).casefold():
                    v = ("copy_of_source", "the round trip gave the example back unchanged")
                elif v is None and text and _clean_field(text).casefold() in seen:
                    v = ("duplicate_example", "repeats a training example")
                if v is None:
                    seen.add(_clean_field(text).casefold())
                emit("paraphrase", tm.source, k, text, v)
            for k in (k for k, v in enumerate(verdicts) if v is not None):  # no way back without a way there
                emit("paraphrase", tm.source, k, None, ("no_pivot", f"the translation failed: {verdicts[k][0]}"))
    path = join(out_dir, OUTPUT)
    with atomic_open(path, "wb") as f:
        f.write(("lang\tlabel\ttext\torigin\tkind\n" + "".join(
            f"{r['lang']}\t{r['label']}\t{r['text']}\t{r['origin']}\t{r['kind']}\n" for r in kept)).encode("utf-8"))
    write_parquet(join(out_dir, "translated-train-rejects.parquet"), pa.Table.from_pylist(
        rejected, schema=pa.schema([(c, pa.string()) for c in
                                    ("id", "kind", "lang", "reason", "detail", "text", "source_text")])))
    out = {"path": path, "made_from": made_from, "kept": len(kept), "rejected": len(rejected),
           "languages": {k: {"kept": v["kept"], "rejected": dict(sorted(v["rejected"].items()))}
                         for k, v in sorted(report.items())}}
    write_json(join(out_dir, "translated-train.json"), out)
    log.info("translate-train: %d examples kept, %d rejected -> %s", len(kept), len(rejected), path)
    return out
