"""Sequence classification (SIB-200 topics or any `lang / label / text` TSV): accuracy and
macro-F1 per language, with the majority-label rate beside them."""

from __future__ import annotations

import csv
import io
import posixpath
from collections import defaultdict

import pyarrow as pa
import torch

from ...language_codes import matches, normalize
from ...storage import expand, get_fs, local_dir
from ..model import encode
from .base import FinetuneTask, logits

COLUMNS = ("lang", "label", "text")
SIB_COLUMNS = ("index_id", "category", "text")


def _read_one(uri: str) -> list[list[str]]:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        reader = csv.reader(io.StringIO(f.read().decode("utf-8")), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.strip() for h in (next(reader, None) or [])[:3]]
        if header == list(COLUMNS):
            folder_lang = None
        elif header == list(SIB_COLUMNS):
            folder_lang = posixpath.basename(posixpath.dirname(path))
        else:
            raise ValueError(f"{uri}: header must be the tab-separated columns {COLUMNS} or {SIB_COLUMNS}, got {header!r}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) < 3 or not all(v.strip() for v in row[:3]):
                raise ValueError(f"{uri}:{lineno}: expected 3 non-empty fields {header}, got {row!r}")
            code = folder_lang or row[0].strip()
            try:  # any ISO 639 form ('fr', 'fra', 'fra_Latn') -> the pipeline's canonical label
                lang = normalize(code)
            except ValueError as e:
                raise ValueError(f"{uri}:{lineno}: {'folder name' if folder_lang else 'field lang'}: {e}") from e
            rows.append([lang, row[1].strip(), row[2]])
    return rows


def read_labelled(uri: str, languages: list[str] | None = None) -> pa.Table:
    """Labelled TSV(s): columns `lang, label, text`, or SIB-200 files (`index_id, category,
    text`) whose language is their folder's name (`sib200/fra_Latn/test.tsv`); a path, glob
    or URI. `languages`: keep only these (normalised codes; empty or None: all)."""
    rows = [r for f in expand([uri]) for r in _read_one(f)]
    if languages:
        rows = [r for r in rows if matches(r[0], languages)]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})


def macro_f1(gold: list[str], pred: list[str], labels: list[str]) -> float:
    """Mean F1 over `labels` (a label never seen nor predicted counts 0), by scikit-learn."""
    from sklearn.metrics import f1_score

    if not labels:
        return 0.0
    return float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0))


class SequenceClassification(FinetuneTask):
    name = "sequence_classification"
    key = "classification"
    chart_metrics = {"accuracy": "accuracy", "macro-F1": "macro_f1"}
    baseline_metric = "majority_accuracy"
    title = "Topic classification"
    pipeline_tag = "text-classification"
    dev_metric = "accuracy"
    gate_metric = "macro_f1"  # not accuracy: predicting the majority topic everywhere scores well on it
    peft_task_type = "SEQ_CLS"

    def read(self, uri, languages=None):
        return read_labelled(uri, languages)

    def labels(self, train):
        return sorted(set(train["label"].to_pylist()))

    def auto_model(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def example_losses(self, model, tokenizer, batch, label2id, max_length, device):
        enc = encode(tokenizer, batch["text"], max_length)
        labels = torch.tensor([label2id[x] for x in batch["label"]], device=device)
        return torch.nn.functional.cross_entropy(logits(model, enc, device).float(), labels, reduction="none")

    def predict(self, model, tokenizer, texts, max_length, device, batch_size: int = 64) -> list[int]:
        out: list[int] = []
        for b in range(0, len(texts), batch_size):
            enc = encode(tokenizer, texts[b : b + batch_size], max_length)
            out.extend(int(i) for i in logits(model, enc, device).argmax(-1).cpu())
        return out

    def dev_score(self, model, tokenizer, dev, label2id, max_length, device):
        gold = [label2id.get(x, -1) for x in dev["label"].to_pylist()]
        pred = self.predict(model, tokenizer, dev["text"].to_pylist(), max_length, device)
        return sum(p == g for p, g in zip(pred, gold)) / max(len(gold), 1)

    @torch.inference_mode()
    def evaluate(self, model_dir, test_path, max_length, languages=None):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(local_dir(model_dir), local_files_only=True)
        model = self.auto_model().from_pretrained(local_dir(model_dir), local_files_only=True).eval()
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        labels = [id2label[i] for i in sorted(id2label)]
        test = self.read(test_path, languages)
        texts, gold, langs = (test[c].to_pylist() for c in ("text", "label", "lang"))
        pred = [id2label[i] for i in self.predict(model, tokenizer, texts, max_length, torch.device("cpu"))]
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

    def language_line(self, lang, m):
        majority = f" (majority-label {m['majority_accuracy']:.3f})" if "majority_accuracy" in m else ""
        return f"  {lang}: accuracy {m['accuracy']:.3f}{majority}  macro-F1 {m['macro_f1']:.3f}  (n={m['n']})"

    def table(self, report):
        rows = {lang: [m["n"], m["accuracy"], m["macro_f1"]] for lang, m in report.get("languages", {}).items()}
        o = report.get("overall")
        overall = [o["n"], o["macro_accuracy"], o["macro_f1"]] if o else []
        return ["test n", "accuracy", "macro-F1"], rows, overall

    def metrics(self, report):
        out = {}
        for lang, m in report.get("languages", {}).items():
            out[f"accuracy.{lang}"] = m["accuracy"]
            out[f"macro_f1.{lang}"] = m["macro_f1"]
        out.update({f"overall.{k}": v for k, v in report.get("overall", {}).items()})
        return out

    def card_metrics(self, m):
        return [{"type": "accuracy", "value": m["accuracy"]},
                {"type": "f1", "value": m["macro_f1"], "name": "macro-F1"}]

    def summary(self, report):
        o = report.get("overall", {})
        return (f"macro accuracy over languages {o.get('macro_accuracy')}, macro-F1 {o.get('macro_f1')} "
                f"(chance {report.get('chance_accuracy')})")
