"""Named-entity recognition (token classification) on CoNLL files such as MasakhaNER: entity
precision, recall and F1 per language, by seqeval (exact span and type, as papers report)."""

from __future__ import annotations

import posixpath

import pyarrow as pa
import torch

from ...language_codes import matches, normalize
from ...storage import expand, get_fs, local_dir
from .base import FinetuneTask, logits


def _read_conll(uri: str) -> list[list]:
    """Sentences of a CoNLL file (`token TAG` per line, blank line between sentences); the
    language is the parent folder's name (masakhaner/swa/train.txt)."""
    fs, path = get_fs(uri)
    folder = posixpath.basename(posixpath.dirname(path))
    try:
        lang = normalize(folder)
    except ValueError as e:
        raise ValueError(f"{uri}: the folder name must be a language code: {e}") from e
    with fs.open(path, "rb") as f:
        lines = f.read().decode("utf-8").splitlines()
    rows, tokens, tags = [], [], []
    for lineno, line in enumerate(lines + [""], start=1):
        if not line.strip():
            if tokens:
                rows.append([lang, tokens, tags])
            tokens, tags = [], []
            continue
        parts = line.split()
        if len(parts) < 2 or not (parts[-1] == "O" or parts[-1][:2] in ("B-", "I-")):
            raise ValueError(f"{uri}:{lineno}: expected 'token TAG' with a BIO tag, got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[-1])
    return rows


def read_tagged(uri: str, languages: list[str] | None = None) -> pa.Table:
    """CoNLL file(s) (path, glob or URI) -> columns lang, tokens, tags."""
    rows = [r for f in expand([uri]) for r in _read_conll(f)]
    if languages:
        rows = [r for r in rows if matches(r[0], languages)]
    return pa.table({"lang": [r[0] for r in rows], "tokens": [r[1] for r in rows], "tags": [r[2] for r in rows]})


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Micro entity precision / recall / F1 over sentences (exact span and type), by seqeval in
    its conlleval mode (an I- tag that does not continue an entity of its type starts one);
    `entities`: the number of gold entities."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    return {"precision": round(float(precision_score(gold, pred, zero_division=0)), 4),
            "recall": round(float(recall_score(gold, pred, zero_division=0)), 4),
            "f1": round(float(f1_score(gold, pred, zero_division=0)), 4),
            "entities": sum(len(get_entities(g)) for g in gold)}


def encode_words(tokenizer, words: list[list[str]], max_length: int, tags: list[list[str]] | None = None,
                 label2id: dict | None = None):
    """Tokenise pre-split words; the first piece of each word carries its tag, the other pieces
    and special tokens -100. Returns (encoding, labels or None, word ids per row)."""
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt")
    word_ids = [enc.word_ids(i) for i in range(len(words))]
    labels = None
    if tags is not None:
        labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
        for i, ids in enumerate(word_ids):
            prev = None
            for j, w in enumerate(ids):
                if w is not None and w != prev:
                    labels[i, j] = label2id[tags[i][w]]
                prev = w
    return enc, labels, word_ids


def predict_tags(model, tokenizer, words: list[list[str]], id2label: dict, max_length: int, device,
                 batch_size: int = 32) -> list[list[str]]:
    """Tag per word (from its first piece); words cut off by truncation get 'O'."""
    out = []
    for b in range(0, len(words), batch_size):
        chunk = words[b : b + batch_size]
        enc, _, word_ids = encode_words(tokenizer, chunk, max_length)
        best = logits(model, enc, device).argmax(-1).cpu()
        for i, ids in enumerate(word_ids):
            tags = ["O"] * len(chunk[i])
            prev = None
            for j, w in enumerate(ids):
                if w is not None and w != prev:
                    tags[w] = id2label[int(best[i, j])]
                prev = w
            out.append(tags)
    return out


class TokenClassification(FinetuneTask):
    name = "token_classification"
    key = "ner"
    chart_metrics = {"entity F1": "f1", "entity precision": "precision", "entity recall": "recall"}
    title = "Named-entity recognition"
    pipeline_tag = "token-classification"
    dev_metric = "entity F1"
    gate_metric = "f1"
    peft_task_type = "TOKEN_CLS"

    def read(self, uri, languages=None):
        return read_tagged(uri, languages)

    def labels(self, train):
        return sorted({t for tags in train["tags"].to_pylist() for t in tags})

    def auto_model(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def example_losses(self, model, tokenizer, batch, label2id, max_length, device):
        words = [list(w) for w in batch["tokens"]]
        enc, labels, _ = encode_words(tokenizer, words, max_length, [list(t) for t in batch["tags"]], label2id)
        labels = labels.to(device)
        loss = torch.nn.functional.cross_entropy(logits(model, enc, device).float().transpose(1, 2), labels,
                                                 ignore_index=-100, reduction="none")
        return loss.sum(1) / (labels != -100).sum(1).clamp(min=1)

    def dev_score(self, model, tokenizer, dev, label2id, max_length, device):
        pred = predict_tags(model, tokenizer, dev["tokens"].to_pylist(), {v: k for k, v in label2id.items()},
                            max_length, device)
        return entity_f1(dev["tags"].to_pylist(), pred)["f1"]

    @torch.inference_mode()
    def evaluate(self, model_dir, test_path, max_length, languages=None):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(local_dir(model_dir), local_files_only=True)
        model = self.auto_model().from_pretrained(local_dir(model_dir), local_files_only=True).eval()
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        test = self.read(test_path, languages)
        words, gold, langs = test["tokens"].to_pylist(), test["tags"].to_pylist(), test["lang"].to_pylist()
        pred = predict_tags(model, tokenizer, words, id2label, max_length, torch.device("cpu"))
        per_lang = {}
        for lang in sorted(set(langs)):
            idx = [i for i, l in enumerate(langs) if l == lang]
            per_lang[lang] = {"n": len(idx), **entity_f1([gold[i] for i in idx], [pred[i] for i in idx])}
        return {"labels": [id2label[i] for i in sorted(id2label)], "languages": per_lang,
                "overall": {"n": len(words),
                            "macro_f1": round(sum(v["f1"] for v in per_lang.values()) / max(len(per_lang), 1), 4),
                            **{f"micro_{k}": v for k, v in entity_f1(gold, pred).items()}}}

    def language_line(self, lang, m):
        return (f"  {lang}: entity F1 {m['f1']:.3f}  precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
                f"({m['entities']} entities, n={m['n']} sentences)")

    def table(self, report):
        rows = {lang: [m["n"], m["entities"], m["precision"], m["recall"], m["f1"]]
                for lang, m in report.get("languages", {}).items()}
        o = report.get("overall")
        overall = [o["n"], o.get("micro_entities", ""), o.get("micro_precision", ""), o.get("micro_recall", ""),
                   o["macro_f1"]] if o else []
        return ["test sentences", "entities", "entity precision", "entity recall", "entity F1"], rows, overall

    def metrics(self, report):
        out = {f"entity_f1.{lang}": m["f1"] for lang, m in report.get("languages", {}).items()}
        out.update({f"overall.{k}": v for k, v in report.get("overall", {}).items()})
        return out

    def card_metrics(self, m):
        return [{"type": "f1", "value": m["f1"], "name": "entity F1"},
                {"type": "precision", "value": m["precision"], "name": "entity precision"},
                {"type": "recall", "value": m["recall"], "name": "entity recall"}]

    def summary(self, report):
        o = report.get("overall", {})
        return f"entity F1 macro over languages {o.get('macro_f1')}, micro {o.get('micro_f1')}"
