"""Per-language evaluation: classifier accuracy and macro-F1; masked-LM loss on held-out text.

Every number is reported per language first; the overall figures are macro averages over
languages (each language counts once), next to the pooled micro accuracy.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import torch

from .config import ModelConfig
from .finetune import read_labelled
from .model import build_mlm, encode, mask_tokens
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
def evaluate_classifier(model_dir: str, test_path: str, max_length: int, batch_size: int = 64) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    labels = [id2label[i] for i in sorted(id2label)]
    test = read_labelled(test_path)
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
                          "macro_f1": round(macro_f1(g, p, labels), 4)}
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
def _mlm_loss(model, tokenizer, texts: list[str], max_length: int, seed: int, batch_size: int = 32) -> tuple[float, int]:
    gen = torch.Generator().manual_seed(seed)  # the same masks for every model compared
    total, n = 0.0, 0
    for b in range(0, len(texts), batch_size):
        enc = encode(tokenizer, texts[b : b + batch_size], max_length)
        inputs, labels = mask_tokens(enc["input_ids"], tokenizer, 0.15, gen)
        logits = model(input_ids=inputs, attention_mask=enc["attention_mask"]).logits
        mask = labels != -100
        total += torch.nn.functional.cross_entropy(logits[mask], labels[mask], reduction="sum").item()
        n += int(mask.sum())
    return total, n


def evaluate_mlm(model_dir: str, manifest: dict, corpus_dir: str, model_cfg: ModelConfig, seed: int = 0) -> dict:
    """Held-out masked-LM loss per language, for the pretrained model and for the same
    architecture at initialisation (same seed), so a reader sees what training bought."""
    from transformers import AutoTokenizer, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    trained = BertForMaskedLM.from_pretrained(model_dir, local_files_only=True).eval()
    torch.manual_seed(seed)
    init = build_mlm(model_cfg, tokenizer).eval()
    out = {}
    for lang in sorted(manifest["languages"]):
        texts = [t for uri in shard_paths(manifest, corpus_dir, "heldout", [lang])
                 for t in read_parquet(uri, ["text"])["text"].to_pylist()]
        if not texts:
            continue
        loss, n = _mlm_loss(trained, tokenizer, texts, model_cfg.max_length, seed)
        loss0, _ = _mlm_loss(init, tokenizer, texts, model_cfg.max_length, seed)
        out[lang] = {"docs": len(texts), "masked_tokens": n, "mlm_loss": round(loss / n, 4),
                     "mlm_loss_init": round(loss0 / n, 4), "perplexity": round(math.exp(loss / n), 2)}
    return {"languages": out}


def markdown(report: dict) -> str:
    """One row per language: classification and held-out masked-LM figures."""
    cls = report.get("classification", {}).get("languages", {})
    mlm = report.get("mlm", {}).get("languages", {})
    lines = ["| language | test n | accuracy | macro-F1 | held-out docs | MLM loss | MLM loss at init |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for lang in sorted(set(cls) | set(mlm)):
        c, m = cls.get(lang, {}), mlm.get(lang, {})
        lines.append(f"| {lang} | {c.get('n', '')} | {c.get('accuracy', '')} | {c.get('macro_f1', '')} | "
                     f"{m.get('docs', '')} | {m.get('mlm_loss', '')} | {m.get('mlm_loss_init', '')} |")
    o = report.get("classification", {}).get("overall")
    if o:
        lines.append(f"| **overall** (macro over languages) | {o['n']} | {o['macro_accuracy']} | {o['macro_f1']} | | | |")
        lines.append("")
        lines.append(f"Chance accuracy: {report['classification']['chance_accuracy']}; "
                     f"pooled (micro) accuracy: {o['micro_accuracy']}.")
    return "\n".join(lines) + "\n"
