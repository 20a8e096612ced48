"""Per-language evaluation: the fine-tuned model's test report (by its task: `training/tasks/`)
and held-out language-model loss of the pretrained model; the report as markdown.

Every number is reported per language first; the overall figures are macro averages over
languages (each language counts once), next to the pooled (micro) figures.
"""

from __future__ import annotations

import logging
import math

import torch

from ..config import ModelConfig
from ..corpus.shard import read_texts
from ..storage import atomic_open, exists, join, local_dir, read_json, write_json
from ..training import tasks
from ..training.model import build_model, encode, load_model, mask_tokens, sequence_losses
from . import retrieval

log = logging.getLogger(__name__)


def evaluate_finetuned(model_dir: str, cfg) -> tuple[str, dict]:
    """The fine-tuned model's test report for its task (`finetune.task`): (the task's report
    key, e.g. "classification" or "ner"; the report with its metrics per language)."""
    fcfg = cfg.finetune
    task = tasks.get(fcfg.task)
    return task.key, task.evaluate(model_dir, fcfg.test_path, cfg.model.max_length, languages=fcfg.eval_languages)


def task_reports(report: dict) -> list[tuple[tasks.FinetuneTask, dict]]:
    """The fine-tuning tasks that have a section in an evaluation report, with it."""
    return [(t, report[t.key]) for t in tasks.TASKS.values() if t.key in report]


def language_lines(report: dict) -> list[str]:
    """Console lines of every task section of an evaluation report, one per language."""
    return [t.language_line(lang, m) for t, r in task_reports(report) for lang, m in r.get("languages", {}).items()]


@torch.inference_mode()
def _lm_loss(model, tokenizer, texts: list[str], max_length: int, causal: bool, seed: int,
             batch_size: int = 32) -> tuple[float, int]:
    """Summed loss and number of targets over texts: next-token loss (causal) or masked-token
    loss with the same masks for every model compared (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for b in range(0, len(texts), batch_size):
        enc = encode(tokenizer, texts[b : b + batch_size], max_length)
        if causal:
            inputs, labels = enc["input_ids"], enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        else:
            inputs, labels = mask_tokens(enc["input_ids"], tokenizer, 0.15, gen)
        logits = model(input_ids=inputs, attention_mask=enc["attention_mask"]).logits
        loss, count = sequence_losses(logits, labels, causal)
        total += float(loss.sum())
        n += int(count.sum())
    return total, n


def evaluate_lm(model_dir: str, manifest: dict, corpus_dir: str, model_cfg: ModelConfig, seed: int = 0) -> dict:
    """Held-out loss per language (masked or next-token, by the model's objective), for the
    pretrained model and for the same architecture at initialisation (same seed), so a reader
    sees what training bought. Causal models also get bits per UTF-8 byte, which compares
    across languages and tokenizers."""
    from transformers import AutoTokenizer

    causal = model_cfg.objective == "causal_lm"
    tokenizer = AutoTokenizer.from_pretrained(local_dir(model_dir), local_files_only=True)
    trained = load_model(model_dir, model_cfg.objective).eval()
    torch.manual_seed(seed)
    init = (load_model(model_cfg.pretrained_dir, model_cfg.objective) if model_cfg.pretrained_dir
            else build_model(model_cfg.model_copy(update={"pretrained_dir": None}), tokenizer)).eval()
    out = {}
    for lang in sorted(manifest["languages"]):
        texts = read_texts(manifest, corpus_dir, lang)
        if not texts:
            continue
        loss, n = _lm_loss(trained, tokenizer, texts, model_cfg.max_length, causal, seed)
        loss0, _ = _lm_loss(init, tokenizer, texts, model_cfg.max_length, causal, seed)
        row = {"docs": len(texts), "targets": n, "loss": round(loss / n, 4), "loss_init": round(loss0 / n, 4),
               "perplexity": round(math.exp(loss / n), 2)}
        if causal:  # only the text the model saw (truncation) counts: bytes of the decoded targets
            seen = tokenizer(texts, truncation=True, max_length=model_cfg.max_length, add_special_tokens=True)
            n_bytes = sum(len(tokenizer.decode(ids, skip_special_tokens=True).encode()) for ids in seen["input_ids"])
            row["bits_per_byte"] = round(loss / math.log(2) / max(n_bytes, 1), 4)
        out[lang] = row
    return {"objective": model_cfg.objective, "languages": out}


def evaluate_pretrained(model_dir: str, manifest: dict, corpus_dir: str, cfg) -> dict:
    """The pretrained model's sections of the report: held-out language modelling per language
    (`lm`) and, where the corpus has translation pairs, sentence retrieval per language pair
    on the held-out pairs (`retrieval`, or `retrieval_<collection>` for each of several
    collections)."""
    sections = {"lm": evaluate_lm(model_dir, manifest, corpus_dir, cfg.model, cfg.pretrain.seed)}
    sections.update(retrieval.retrieval_sections(model_dir, manifest, corpus_dir, cfg.model.max_length,
                                                 cfg.model.objective == "causal_lm",
                                                 cfg.pretrain.contrastive_pooling))
    return sections


def charts(report: dict, eval_dir: str) -> dict[str, str]:
    """A PNG per table of the report, per language: {section: uri}."""
    from .. import charts as ch

    out = {}
    for task, section in task_reports(report):
        series, baseline = task.chart(section)
        if any(series.values()):
            out[task.key] = ch.language_bars(series, join(eval_dir, f"{task.key}.png"), f"{task.title}: test set, per language",
                                             "score", baseline, "majority-label accuracy", (0, 1))
    lm = report.get("lm", {}).get("languages", {})
    if lm:
        out["lm"] = ch.language_bars({"trained": {l: m["loss"] for l, m in lm.items()},
                                      "at initialisation": {l: m["loss_init"] for l, m in lm.items()}},
                                     join(eval_dir, "lm.png"), "Held-out language-model loss per language (lower is better)",
                                     "loss (nats per target token)")
    for name, section in retrieval.sections_of(report):
        pairs = section["pairs"]
        series = {"cosine (mean of both directions)": {k: m["accuracy"] for k, m in pairs.items()}}
        if "macro_margin_accuracy" in section:  # (reports written before the margin figures have none)
            series[f"ratio margin, k={section.get('margin_k')}"] = {k: m["margin_accuracy"] for k, m in pairs.items()}
        out[name] = ch.language_bars(
            series,
            join(eval_dir, f"{name}.png"),
            f"Sentence retrieval on held-out pairs{retrieval.collection_suffix(name, section)} "
            f"(macro {section['macro_accuracy']:.3f}"
            + (f"; {section['macro_margin_accuracy']:.3f} by ratio margin)" if "macro_margin_accuracy" in section else ")"),
            "accuracy", {k: m["chance"] for k, m in pairs.items()}, "chance", (0, 1))
    return out


def _cells(values) -> str:
    return " | ".join("" if v is None else str(v) for v in values)


def markdown(report: dict) -> str:
    """Per-language tables: one per fine-tuning task in the report (its own columns: accuracy
    and macro-F1, or entity precision / recall / F1), then held-out language-model loss."""
    parts = []
    for task, section in task_reports(report):
        columns, rows, overall = task.table(section)
        lines = [f"### {task.title}", "", f"| language | {' | '.join(columns)} |",
                 "|---|" + "---:|" * len(columns)]
        lines += [f"| {lang} | {_cells(cells)} |" for lang, cells in sorted(rows.items())]
        if overall:
            lines.append(f"| **overall** (macro over languages) | {_cells(overall)} |")
        if "chance_accuracy" in section:
            lines += ["", f"Chance accuracy: {section['chance_accuracy']}; pooled (micro) accuracy: "
                          f"{section['overall']['micro_accuracy']}."]
        parts.append("\n".join(lines))
    lm = report.get("lm", {}).get("languages", {})
    if lm:
        lines = ["### Held-out language modelling", "", "| language | held-out docs | LM loss | LM loss at init |"
                 + (" bits/byte |" if any("bits_per_byte" in m for m in lm.values()) else ""),
                 "|---|---:|---:|---:|" + ("---:|" if any("bits_per_byte" in m for m in lm.values()) else "")]
        for lang, m in sorted(lm.items()):
            extra = f" {m['bits_per_byte']} |" if "bits_per_byte" in m else ""
            lines.append(f"| {lang} | {_cells([m.get('docs'), m.get('loss'), m.get('loss_init')])} |{extra}")
        parts.append("\n".join(lines))
    for name, rsec in retrieval.sections_of(report):
        margin = "macro_margin_accuracy" in rsec
        lines = [f"### Sentence retrieval on held-out translation pairs{retrieval.collection_suffix(name, rsec)}", "",
                 f"Nearest sentence by cosine similarity ({rsec['pooling']} pooling, layer {rsec['layer']}), "
                 f"among the held-out pairs of each language pair; macro accuracy **{rsec['macro_accuracy']}**"
                 + (f"; by ratio margin (Artetxe & Schwenk 2019, k={rsec['margin_k']}: cosine over the mean "
                    f"cosine of both sides' nearest neighbours, which discounts hubs) "
                    f"**{rsec['macro_margin_accuracy']}**" if margin else "") + ".", "",
                 "| language pair | held-out pairs | a -> b | b -> a | accuracy | " + ("margin | " if margin else "")
                 + "chance |", "|---|---:|---:|---:|---:|" + ("---:|" if margin else "") + "---:|"]
        for key, m in sorted(rsec["pairs"].items()):
            a, b = key.split("-", 1)
            cells = [m["pairs"], m[f"{a}->{b}"], m[f"{b}->{a}"], m["accuracy"], *([m.get("margin_accuracy")] if margin else []),
                     m["chance"]]
            lines.append(f"| {key} | {_cells(cells)} |")
        parts.append("\n".join(lines))
    pictures = report.get("charts", {})
    if pictures:
        parts.append("\n".join(f"![{name}]({name}.png)" for name in sorted(pictures)))
    return "\n\n".join(parts) + "\n"


def write_report(eval_dir: str, sections: dict, merge: bool = True) -> dict:
    """Write `eval/report.json` ({"lm": ..., "retrieval": ..., <task key>: ...}), `eval/report.md`
    and a chart per table (`eval/<section>.png`), the same
    files whether the CLI (one stage at a time: `merge` into what an earlier stage wrote) or
    the Prefect flow (everything at once: `merge=False`) evaluates. Returns the whole report."""
    uri = join(eval_dir, "report.json")
    report = dict(read_json(uri)) if merge and exists(uri) else {}
    report.update(sections)
    report["charts"] = charts(report, eval_dir)  # a PNG per table, named <section>.png beside report.md
    write_json(uri, report)
    with atomic_open(join(eval_dir, "report.md"), "wb") as f:
        f.write(markdown(report).encode())
    return report
