"""Does alignment transfer? Two pretraining arms on the same corpus, steps and batches, told
apart by their objectives alone, then the same fine-tuning and evaluation for both.

    .venv/bin/python bench/xling_bench.py [--config configs/xling-cpu.yaml] [--out bench/xling]

Arms (both read the same documents and the same translation pairs):
    mlm       masked LM on the documents and on each side of the pairs as monolingual
              sentences (pretrain.pair_lm_weight 1; no cross-lingual signal)
    aligned   masked LM on the documents, TLM and contrastive alignment on the pairs
              (the config's tlm_weight / contrastive_weight)
Per arm: held-out LM loss and sentence retrieval on held-out pairs; SIB-200 zero-shot (train
on English, test on every language), multilingual (train on all languages' training sets,
which are translations of one another: translate-train-all with oracle translations, the upper
bound a translation model could give) and, with `--mt-model DIR`, translate-train (train on
English plus English's training set machine-translated into every language the model writes,
through the pipeline's own translate-train stage: same backend, quality checks and rejects; the
same translations for both arms). Settings with more examples than zero-shot get fewer epochs:
epochs x 3 x (English examples / all examples), so about 3x zero-shot's steps.
Each fine-tuning setting is a Ray Train run of its own. Rerunning with the same run name
resumes: a finished pretraining arm is handed on, not trained again.
Also per arm: sentence retrieval between SIB-200's English test sentences and each language's
(the same sentences translated): whether the alignment learnt from the pairs reaches the task's
domain. Writes <out>/results.json, <out>/tables.md and a PNG per comparison. `--rescore`
evaluates an earlier run's saved models again with the current evaluation code (no training).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import charts  # noqa: E402
from pipeline.config import load_config  # noqa: E402

log = logging.getLogger("xling")

MAIN = "eng_Latn"  # the language the zero-shot classifier is trained on
ARMS = {
    "mlm": ["pretrain.tlm_weight=0", "pretrain.contrastive_weight=0", "pretrain.pair_lm_weight=1"],
    "aligned": [],
}


def _fewer_epochs(epochs: int, main_examples: int, examples: int) -> int:
    """Epochs for a setting with `examples` labelled examples, `main_examples` of them in the
    main language: about 3x the optimiser steps of zero-shot (multilingual: 12 -> 3 epochs)."""
    return max(1, min(epochs, math.ceil(epochs * 3 * main_examples / max(examples, 1))))


def translate_train(config: str, sets: list[str], mt_model: str, out_dir: str) -> dict:
    """The main language's training set machine-translated into every test language that the
    model writes (`augment_labelled`: the pipeline's translate-train stage)."""
    from pipeline.config import TranslationModel
    from pipeline.training.tasks.classification import read_labelled
    from pipeline.translation.codes import LanguageNotSupported, model_codes
    from pipeline.translation.labelled import augment_labelled
    from transformers import AutoTokenizer

    cfg = load_config(config, sets).model_copy(deep=True)
    train = read_labelled(cfg.finetune.train_path)
    main_lang = cfg.finetune.main_language or max(set(train["lang"].to_pylist()), key=train["lang"].to_pylist().count)
    langs = sorted(set(read_labelled(cfg.finetune.test_path)["lang"].to_pylist()) - {main_lang})
    codes = model_codes(AutoTokenizer.from_pretrained(mt_model, local_files_only=True), mt_model)
    models, missing = [], []
    for lang in langs:
        try:
            codes.target(lang)
            models.append(TranslationModel(source=main_lang, target=lang, model_dir=mt_model))
        except LanguageNotSupported:
            missing.append(lang)
    if missing:
        log.info("translate-train: %s does not write %s: those languages get no translations", mt_model,
                 ", ".join(missing))
    cfg.corpus.augment.models = models
    cfg.finetune.translate_train = True
    t = time.monotonic()
    report = augment_labelled(cfg, out_dir)
    report["seconds"] = round(time.monotonic() - t, 1)
    report["main_examples"] = len(train)
    report["not_written"] = missing
    mt_json = Path(mt_model) / "mt.json"  # bench/mt_train.py's held-out chrF, when the model came from there
    if mt_json.exists():
        report["mt_heldout"] = {k: {"chrf": v["chrf"], "bleu": v["bleu"]}
                                for k, v in json.loads(mt_json.read_text())["heldout"].items()}
    return report


def arm_config(config: str, sets: list[str], arm: str):
    """The arm's configuration: the file, the overrides, the arm's objectives; run name <name>-<arm>."""
    cfg = load_config(config, [*sets, *ARMS[arm]])
    return cfg.model_copy(update={"run_name": f"{cfg.run_name}-{arm}"})


def run_arm(arm: str, config: str, corpus_dir: str, tokenizer_dir: str, settings: list[str], sets: list[str],
            translated: dict | None = None) -> dict:
    import ray

    from pipeline.corpus.shard import read_manifest
    from pipeline.evaluation import evaluate
    from pipeline.training import finetune, pretrain

    cfg = arm_config(config, sets, arm)
    manifest = read_manifest(corpus_dir)
    out: dict = {"seconds": {}}
    t = time.monotonic()
    result = pretrain.pretrain(corpus_dir, manifest, tokenizer_dir, cfg.path("model-pretrained"), cfg)
    out["seconds"]["pretrain"] = round(time.monotonic() - t, 1)
    out["pretrain"] = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    t = time.monotonic()
    out.update(evaluate.evaluate_pretrained(cfg.path("model-pretrained"), manifest, corpus_dir, cfg))
    out["task_retrieval"] = task_retrieval(cfg.path("model-pretrained"), cfg.finetune.test_path, MAIN, cfg.model.max_length,
                                           cfg.pretrain.contrastive_pooling)
    out["seconds"]["evaluate_pretrained"] = round(time.monotonic() - t, 1)
    sib = Path(cfg.finetune.train_path).parent.parent  # .../sib200
    for setting in settings:
        extra = []
        if setting == "multilingual":  # every language's training and dev sets
            from pipeline.training.tasks.classification import read_labelled

            main = len(read_labelled(cfg.finetune.train_path))
            extra = [f"finetune.train_path={sib}/*/train.tsv", f"finetune.dev_path={sib}/*/dev.tsv",
                     f"finetune.epochs={_fewer_epochs(cfg.finetune.epochs, main, len(read_labelled(f'{sib}/*/train.tsv')))}",
                     f"finetune.patience={max(1, cfg.finetune.patience // 2)}"]
        elif setting == "translate_train":  # English + its machine translations; English dev set only
            main = translated["main_examples"]
            extra = [f"finetune.extra_train_paths={json.dumps([translated['path']])}",
                     f"finetune.epochs={_fewer_epochs(cfg.finetune.epochs, main, main + translated['kept'])}",
                     f"finetune.patience={max(1, cfg.finetune.patience // 2)}"]
        # a Ray Train run of its own per setting (one name would resume the other's checkpoint)
        fcfg = load_config(config, [*sets, *ARMS[arm], *extra])
        fcfg = fcfg.model_copy(update={"run_name": f"{cfg.run_name}-{setting}"})
        t = time.monotonic()
        model_dir = cfg.path(f"model-{setting}")
        finetune.finetune(cfg.path("model-pretrained"), model_dir, fcfg)
        _, out[setting] = evaluate.evaluate_finetuned(model_dir, fcfg)
        out["seconds"][setting] = round(time.monotonic() - t, 1)
    ray.shutdown()
    return out


def task_retrieval(model_dir: str, test_path: str, main: str, max_length: int, pooling: str = "mean") -> dict:
    """Does the alignment reach the task's own domain? SIB-200's test sets are translations of
    one another (the same `index_id` is the same sentence): sentence retrieval between the main
    language's test sentences and each other language's, by cosine and by ratio margin, as on
    the held-out pairs. Empty when the test files are not SIB-200 style."""
    import csv

    from pipeline.evaluation.retrieval import accuracy, embed, load_encoder
    from pipeline.language_codes import normalize
    from pipeline.storage import expand
    from pipeline.training.tasks.classification import SIB_COLUMNS

    by_lang: dict[str, dict[str, str]] = {}
    for path in expand([test_path]):
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        if not rows or [h.strip() for h in rows[0][:3]] != list(SIB_COLUMNS):
            return {}
        by_lang[normalize(Path(path).parent.name)] = {r[0]: r[2] for r in rows[1:] if len(r) >= 3}
    if main not in by_lang:
        return {}
    model, tok = load_encoder(model_dir)
    out = {}
    for lang, texts in sorted(by_lang.items()):
        ids = sorted(set(texts) & set(by_lang[main]))
        if lang == main or len(ids) < 10:
            continue
        za = embed(model, tok, [by_lang[main][i] for i in ids], max_length, False, pooling)
        zb = embed(model, tok, [texts[i] for i in ids], max_length, False, pooling)
        cos, margin = accuracy(za, zb), accuracy(za, zb, margin=True)
        out[lang] = {"pairs": len(ids), "accuracy": round(sum(cos) / 2, 4), "margin_accuracy": round(sum(margin) / 2, 4),
                     "chance": round(1 / len(ids), 4)}
    n = max(len(out), 1)
    return {"languages": out, "macro_accuracy": round(sum(m["accuracy"] for m in out.values()) / n, 4),
            "macro_margin_accuracy": round(sum(m["margin_accuracy"] for m in out.values()) / n, 4)}


def transfer_gap(test: dict, main: str = MAIN) -> dict[str, float]:
    langs = test["languages"]
    return {lang: round(langs[main]["accuracy"] - m["accuracy"], 4) for lang, m in langs.items() if lang != main}


def _retrieval_names(results: dict) -> list[str]:
    """The retrieval sections every arm has: `retrieval`, or `retrieval_<collection>` per collection."""
    from pipeline.evaluation.retrieval import sections_of

    names = [{n for n, _ in sections_of(r)} for r in results.values()]
    return sorted(set.intersection(*names)) if names else []


def _retrieval_table(title: str, first: str, count: str, sections: dict[str, dict], rows: str) -> list[str]:
    """One retrieval table, a row per `rows` key of the arms' sections (language pairs or
    languages): candidates, chance, and each arm's accuracy by cosine and by ratio margin; then
    the macro row."""
    arms = list(sections)
    out = [f"### {title}", "", f"| {first} | {count} | chance | " + " | ".join(f"{a} cosine | {a} margin" for a in arms)
           + " |", "|---|---:|---:|" + "---:|---:|" * len(arms)]
    for key in sorted(set().union(*(s[rows] for s in sections.values()))):
        cells = [s[rows].get(key, {}) for s in sections.values()]
        known = next(c for c in cells if c)
        out.append(f"| {key} | {known['pairs']} | {known['chance']} | "
                   + " | ".join(f"{c.get('accuracy', '')} | {c.get('margin_accuracy', '')}" for c in cells) + " |")
    out.append("| **macro** | | | " + " | ".join(
        f"**{s['macro_accuracy']}** | **{s.get('macro_margin_accuracy', '')}**" for s in sections.values()) + " |")
    return out + [""]


def tables(results: dict, settings: list[str]) -> str:
    arms = list(results)
    out = []
    for name in _retrieval_names(results):
        what = f"held-out {results[arms[0]][name].get('collection', '')} pairs".replace("  ", " ")
        out += _retrieval_table(f"Sentence retrieval on {what} (accuracy, mean of both directions; by cosine, and by "
                                "ratio margin, k=4)", "language pair", "held-out pairs",
                                {a: r[name] for a, r in results.items()}, "pairs")
    if all(r.get("task_retrieval", {}).get("languages") for r in results.values()):
        out += _retrieval_table("Sentence retrieval on SIB-200 test sentences, English vs each language (the task's "
                                "domain: does the alignment reach it?)", "language", "sentences",
                                {a: r["task_retrieval"] for a, r in results.items()}, "languages")
    for setting in settings:
        langs = sorted(results[arms[0]][setting]["languages"])
        out += [f"### SIB-200 {setting}: accuracy per language (transfer gap = English minus the language)", "",
                "| language | majority-label | " + " | ".join(f"{a} acc | {a} macro-F1 | {a} gap" for a in arms) + " |",
                "|---|---:|" + "---:|---:|---:|" * len(arms)]
        for lang in langs:
            cells = []
            for a in arms:
                m = results[a][setting]["languages"][lang]
                gap = transfer_gap(results[a][setting]).get(lang, "")
                cells += [m["accuracy"], m["macro_f1"], gap]
            major = results[arms[0]][setting]["languages"][lang].get("majority_accuracy", "")
            out.append(f"| {lang} | {major} | " + " | ".join(str(c) for c in cells) + " |")
        means = []
        for a in arms:
            gaps = list(transfer_gap(results[a][setting]).values())
            means.append(f"mean gap {sum(gaps) / max(len(gaps), 1):.4f}, macro acc "
                         f"{results[a][setting]['overall'].get('macro_accuracy', '')}")
        out += ["", "; ".join(f"{a}: {m}" for a, m in zip(arms, means)), ""]
    return "\n".join(out)


def translated_table(translated: dict) -> str:
    """Per language: machine-translated training examples kept and rejected (by reason), and
    the translation model's held-out chrF when known."""
    mt = translated.get("mt_heldout", {})
    out = ["### translate-train: machine-translated training examples per language", "",
           f"{translated['main_examples']} English examples; {translated['kept']} translations kept, "
           f"{translated['rejected']} rejected, in {translated['seconds']} s"
           + (f"; no translation into {', '.join(translated['not_written'])}" if translated["not_written"] else ""),
           "", "| language | kept | rejected (by reason) | model's held-out chrF |", "|---|---:|---|---:|"]
    for key, info in translated["languages"].items():
        lang = key.partition(":")[2]
        why = ", ".join(f"{r} {n}" for r, n in info["rejected"].items())
        out.append(f"| {lang} | {info['kept']} | {why} | {mt.get(lang, {}).get('chrf', '')} |")
    return "\n".join(out + [""])


def pictures(results: dict, settings: list[str], out: Path) -> list[str]:
    made = []
    for name in _retrieval_names(results):
        first = next(iter(results.values()))[name]
        what = first.get("collection", "")
        made.append(charts.language_bars(
            {arm: {k: m["accuracy"] for k, m in r[name]["pairs"].items()} for arm, r in results.items()},
            str(out / f"{name}.png"), f"Sentence retrieval on held-out {what} pairs, per language pair".replace("  ", " "),
            "accuracy", {k: m["chance"] for k, m in first["pairs"].items()}, "chance", (0, 1)))
    if all(r.get("task_retrieval", {}).get("languages") for r in results.values()):
        first = next(iter(results.values()))["task_retrieval"]["languages"]
        made.append(charts.language_bars(
            {arm: {l: m["accuracy"] for l, m in r["task_retrieval"]["languages"].items()} for arm, r in results.items()},
            str(out / "sib200-retrieval.png"), "Sentence retrieval on SIB-200 test sentences, English vs each language "
            "(cosine)", "accuracy", {l: m["chance"] for l, m in first.items()}, "chance", (0, 1)))
    for setting in settings:
        first = next(iter(results.values()))[setting]["languages"]
        made.append(charts.language_bars(
            {arm: {l: m["accuracy"] for l, m in r[setting]["languages"].items()} for arm, r in results.items()},
            str(out / f"sib200-{setting}.png"), f"SIB-200 {setting}: accuracy per language", "accuracy",
            {l: m["majority_accuracy"] for l, m in first.items() if "majority_accuracy" in m}, "majority label",
            (0, 1)))
    return made


def rescore(args: argparse.Namespace) -> int:
    """Evaluation of an earlier run's saved models again, with the current evaluation code."""
    from pipeline.corpus.shard import read_manifest
    from pipeline.evaluation.retrieval import retrieval_sections

    out = Path(args.out)
    saved = json.loads((out / "results.json").read_text())
    cfg = load_config(args.config, args.set)
    corpus_dir = cfg.path("corpus")
    manifest = read_manifest(corpus_dir)
    settings = [s for s in args.settings.split(",") if s and all(s in r for r in saved["arms"].values())]
    for arm, result in saved["arms"].items():
        acfg = arm_config(args.config, args.set, arm)
        model_dir = acfg.path("model-pretrained")
        for name in [k for k in result if k == "retrieval" or k.startswith("retrieval_")]:
            del result[name]
        result.update(retrieval_sections(model_dir, manifest, corpus_dir, acfg.model.max_length,
                                         acfg.model.objective == "causal_lm", acfg.pretrain.contrastive_pooling))
        result["task_retrieval"] = task_retrieval(model_dir, acfg.finetune.test_path, MAIN, acfg.model.max_length,
                                                  acfg.pretrain.contrastive_pooling)
    (out / "results.json").write_text(json.dumps(saved, indent=1))
    write_tables(saved["arms"], settings, saved.get("translate_train"), out)
    return 0


def write_tables(results: dict, settings: list[str], translated: dict | None, out: Path) -> None:
    """<out>/tables.md (also printed) and the charts."""
    text = tables(results, settings) + (translated_table(translated) if translated else "")
    (out / "tables.md").write_text(text)
    pictures(results, settings, out)
    print(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "xling-cpu.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "xling"))
    ap.add_argument("--arms", default="mlm,aligned")
    ap.add_argument("--settings", default="zero_shot,multilingual")
    ap.add_argument("--set", action="append", default=[], help="config overrides for both arms")
    ap.add_argument("--mt-model", default=None, help="a local English -> X translation model (MarianMT / NLLB / "
                    "M2M100 directory): adds the translate_train setting")
    ap.add_argument("--rescore", action="store_true", help="no training: evaluate the saved pretrained models of "
                    "an earlier run (same --config / --set) again, retrieval on the held-out pairs and on the task's "
                    "test sentences, into <out>/results.json, and rewrite the tables and charts")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.rescore:
        return rescore(args)
    from pipeline.corpus.prepare import prepare

    start = time.monotonic()
    cfg = load_config(args.config, args.set)
    corpus_dir = cfg.path("corpus")
    t = time.monotonic()
    report = prepare(cfg.corpus.ingest.inputs, corpus_dir, cfg.corpus, cfg.ray)
    seconds = {"prepare": round(time.monotonic() - t, 1)}
    t = time.monotonic()  # one tokenizer for both arms: the same pieces, the same data budget
    from pipeline.corpus.shard import read_manifest
    from pipeline.training.tokenizer import train_tokenizer

    train_tokenizer(read_manifest(corpus_dir), corpus_dir, cfg.path("tokenizer"), cfg.tokenizer, cfg.model.objective)
    seconds["tokenizer"] = round(time.monotonic() - t, 1)
    settings = [s for s in args.settings.split(",") if s]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    translated = None
    if args.mt_model:
        if "translate_train" not in settings:
            settings.append("translate_train")
        translated = translate_train(args.config, args.set, args.mt_model, cfg.path("translate-train"))
        seconds["translate_train"] = translated["seconds"]
    elif "translate_train" in settings:
        raise SystemExit("--settings translate_train needs --mt-model DIR")
    results = {}

    def save() -> None:
        (out / "results.json").write_text(json.dumps({"corpus": {k: report[k] for k in ("input", "kept", "rejected")},
                                                      "parallel": report.get("parallel", {}).get("kept"),
                                                      "translate_train": translated,
                                                      "seconds": seconds, "arms": results}, indent=1))

    for arm in args.arms.split(","):
        results[arm] = run_arm(arm, args.config, corpus_dir, cfg.path("tokenizer"), settings, args.set, translated)
        save()
    seconds["total"] = round(time.monotonic() - start, 1)
    save()
    write_tables(results, settings, translated, out)
    print(f"total {seconds['total']:.0f} s; per arm: " + "; ".join(f"{a}: {r['seconds']}" for a, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
