"""Per-language evaluation: classifier accuracy and macro-F1; held-out language-model loss.

Every number is reported per language first; the overall figures are macro averages over
languages (each language counts once), next to the pooled micro accuracy.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import torch

from .config import ModelConfig
from .finetune import entity_f1, predict_tags, read_labelled, read_tagged
from .model import build_model, encode, load_model, mask_tokens, sequence_losses
from .shard import shard_paths
from .storage import read_parquet

log = logging.getLogger(__name__)


def macro_f1(gold: list[str], pred: list[str], labels: list[str]) -> float:
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s) if f1s else 0.0


@torch.inference_mode()
def evaluate_classifier(model_dir: str, test_path: str, max_length: int, batch_size: int = 64,
                        languages: list[str] | None = None) -> dict:
    """Accuracy and macro-F1 per language of the test file(s) (`languages`: only these)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    labels = [id2label[i] for i in sorted(id2label)]
    test = read_labelled(test_path, languages)
    texts, gold, langs = (test[c].to_pylist() for c in ("text", "label", "lang"))
    pred: list[str] = []
    for b in range(0, len(texts), batch_size):
        enc = encode(tokenizer, texts[b : b + batch_size], max_length)
        logits = model(**enc).logits
        pred.extend(id2label[int(i)] for i in logits.argmax(-1))
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(langs):
        by_lang[lang].append(i)
    per_lang = {}
    for lang, idx in sorted(by_lang.items()):
        g, p = [gold[i] for i in idx], [pred[i] for i in idx]
        per_lang[lang] = {"n": len(idx), "accuracy": round(sum(a == b for a, b in zip(g, p)) / len(idx), 4),
                          "macro_f1": round(macro_f1(g, p, labels), 4),
                          # always answering the language's most frequent label would score this
                          "majority_accuracy": round(max(g.count(x) for x in set(g)) / len(idx), 4)}
    n_langs = max(len(per_lang), 1)
    return {
        "labels": labels,
        "chance_accuracy": round(1 / max(len(labels), 1), 4),
        "languages": per_lang,
        "overall": {
            "n": len(texts),
            "micro_accuracy": round(sum(a == b for a, b in zip(gold, pred)) / max(len(texts), 1), 4),
            "macro_accuracy": round(sum(v["accuracy"] for v in per_lang.values()) / n_langs, 4),
            "macro_f1": round(sum(v["macro_f1"] for v in per_lang.values()) / n_langs, 4),
        },
    }


@torch.inference_mode()
def evaluate_tagger(model_dir: str, test_path: str, max_length: int, languages: list[str] | None = None) -> dict:
    """Entity precision, recall and F1 (exact span and type) per language of CoNLL test file(s)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, local_files_only=True).eval()
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    test = read_tagged(test_path, languages)
    words, gold, langs = test["tokens"].to_pylist(), test["tags"].to_pylist(), test["lang"].to_pylist()
    pred = predict_tags(model, tokenizer, words, id2label, max_length, torch.device("cpu"))
    per_lang = {}
    for lang in sorted(set(langs)):
        idx = [i for i, l in enumerate(langs) if l == lang]
        per_lang[lang] = {"n": len(idx), **entity_f1([gold[i] for i in idx], [pred[i] for i in idx])}
    return {"labels": [id2label[i] for i in sorted(id2label)], "languages": per_lang,
            "overall": {"n": len(words), "macro_f1": round(sum(v["f1"] for v in per_lang.values()) / max(len(per_lang), 1), 4),
                        **{f"micro_{k}": v for k, v in entity_f1(gold, pred).items()}}}


def evaluate_finetuned(model_dir: str, cfg) -> tuple[str, dict]:
    """The fine-tuned model's test report for its task: ("ner", entity F1 per language) or
    ("classification", accuracy and macro-F1 per language)."""
    fcfg = cfg.finetune
    if fcfg.task == "token_classification":
        return "ner", evaluate_tagger(model_dir, fcfg.test_path, cfg.model.max_length, languages=fcfg.eval_languages)
    return "classification", evaluate_classifier(model_dir, fcfg.test_path, cfg.model.max_length,
                                                 languages=fcfg.eval_languages)


def language_line(lang: str, m: dict) -> str:
    """One per-language line of a fine-tuning report, for the console."""
    if "f1" in m:
        return f"  {lang}: entity F1 {m['f1']:.3f}  precision {m['precision']:.3f}  recall {m['recall']:.3f}  " \
               f"({m['entities']} entities, n={m['n']} sentences)"
    majority = f" (majority-label {m['majority_accuracy']:.3f})" if "majority_accuracy" in m else ""
    return f"  {lang}: accuracy {m['accuracy']:.3f}{majority}  macro-F1 {m['macro_f1']:.3f}  (n={m['n']})"


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
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    trained = load_model(model_dir, model_cfg.objective).eval()
    torch.manual_seed(seed)
    init = (load_model(model_cfg.pretrained_dir, model_cfg.objective) if model_cfg.pretrained_dir
            else build_model(model_cfg.model_copy(update={"pretrained_dir": None}), tokenizer)).eval()
    out = {}
    for lang in sorted(manifest["languages"]):
        texts = [t for uri in shard_paths(manifest, corpus_dir, "heldout", [lang])
                 for t in read_parquet(uri, ["text"])["text"].to_pylist()]
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


def markdown(report: dict) -> str:
    """One row per language: classification and held-out language-model figures."""
    cls = report.get("classification", {}).get("languages", {})
    lm = report.get("lm", {}).get("languages", {})
    lines = ["| language | test n | accuracy | macro-F1 | held-out docs | LM loss | LM loss at init |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for lang in sorted(set(cls) | set(lm)):
        c, m = cls.get(lang, {}), lm.get(lang, {})
        lines.append(f"| {lang} | {c.get('n', '')} | {c.get('accuracy', '')} | {c.get('macro_f1', '')} | "
                     f"{m.get('docs', '')} | {m.get('loss', '')} | {m.get('loss_init', '')} |")
    o = report.get("classification", {}).get("overall")
    if o:
        lines.append(f"| **overall** (macro over languages) | {o['n']} | {o['macro_accuracy']} | {o['macro_f1']} | | | |")
        lines.append("")
        lines.append(f"Chance accuracy: {report['classification']['chance_accuracy']}; "
                     f"pooled (micro) accuracy: {o['micro_accuracy']}.")
    return "\n".join(lines) + "\n"
