"""Zero-shot SIB-200 transfer from one pretrained encoder under several fine-tuning recipes,
each over a few seeds, in one process (no Ray: 701 English examples, seconds per epoch).

Which part of the zero-shot result is the fine-tuning, and which is the encoder? The pipeline's
fine-tune (Ray Train, [CLS] pooler, warmup-cosine, early stopping on 99 dev examples) is one
draw; this script trains the same head on the same English data with the pooling and freezing
choices that could carry the alignment (which lives in the mean-pooled vector) to the
classifier, over seeds, and reports per language: English accuracy, the other languages'
accuracy, and how many of them beat the majority label.

    .venv/bin/python bench/xling_finetune_variants.py --model runs/xling-s9-aligned/model-pretrained \\
        --pool mean --freeze none --seeds 0,1,2 [--retrieval]

--pool cls|mean: the BERT pooler on [CLS], or the mean of the last layer's token vectors (what
the contrastive objective aligns). --freeze none|emb|all: full fine-tune, token embeddings kept
as pretrained, or the whole encoder frozen (a linear probe on the pooled vector).
--retrieval also prints sentence retrieval between SIB-200's English test sentences and each
language's (bench/xling_bench.py's `task_retrieval`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline.training.model import encode  # noqa: E402
from pipeline.training.tasks.classification import read_labelled  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a pretrained (masked-LM) model directory")
    ap.add_argument("--sib", default=str(ROOT.parent / "shared" / "data" / "sib200"))
    ap.add_argument("--main", default="eng_Latn")
    ap.add_argument("--pool", choices=["cls", "mean"], default="cls")
    ap.add_argument("--freeze", choices=["none", "emb", "all"], default="none")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--retrieval", action="store_true")
    a = ap.parse_args()
    if not Path(a.sib).is_dir():
        raise SystemExit(f"{a.sib}: no SIB-200 data (../shared/data/sib200, see its README)")
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(a.threads)
    train, dev, test = (read_labelled(f"{a.sib}/{p}") for p in (f"{a.main}/train.tsv", f"{a.main}/dev.tsv", "*/test.tsv"))
    labels = sorted(set(train["label"].to_pylist()))
    label2id = {l: i for i, l in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(a.model, local_files_only=True)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = AutoModel.from_pretrained(a.model, local_files_only=True, hidden_dropout_prob=a.dropout,
                                                 attention_probs_dropout_prob=a.dropout)
            self.drop = torch.nn.Dropout(a.dropout)
            self.head = torch.nn.Linear(self.enc.config.hidden_size, len(labels))

        def forward(self, enc):
            out = self.enc(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            if a.pool == "cls":
                x = out.pooler_output
            else:
                m = enc["attention_mask"].unsqueeze(-1).float()
                x = (out.last_hidden_state * m).sum(1) / m.sum(1)
            return self.head(self.drop(x))

    def predict(model, texts):
        model.eval()
        out = []
        with torch.inference_mode():
            for b in range(0, len(texts), 128):
                out += model(encode(tok, texts[b : b + 128], a.max_length)).argmax(-1).tolist()
        model.train()
        return out

    x, y = train["text"].to_pylist(), [label2id[l] for l in train["label"].to_pylist()]
    dx, dy = dev["text"].to_pylist(), [label2id[l] for l in dev["label"].to_pylist()]
    gold, langs = [label2id[l] for l in test["label"].to_pylist()], test["lang"].to_pylist()
    summary = defaultdict(list)
    for seed in map(int, a.seeds.split(",")):
        torch.manual_seed(seed)
        random.seed(seed)
        model = Classifier()
        if a.freeze in ("emb", "all"):
            model.enc.get_input_embeddings().weight.requires_grad = False
        if a.freeze == "all":
            for p in model.enc.parameters():
                p.requires_grad = False
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.01)
        best, since, state, t0 = -1.0, 0, None, time.time()
        for epoch in range(a.epochs):
            order = list(range(len(x)))
            random.shuffle(order)
            for b in range(0, len(order), a.batch_size):
                idx = order[b : b + a.batch_size]
                loss = torch.nn.functional.cross_entropy(model(encode(tok, [x[i] for i in idx], a.max_length)),
                                                         torch.tensor([y[i] for i in idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            score = sum(p == g for p, g in zip(predict(model, dx), dy)) / len(dy)
            if score > best:
                best, since, state = score, 0, {k: v.clone() for k, v in model.state_dict().items()}
            else:
                since += 1
                if since >= a.patience:
                    break
        model.load_state_dict(state)
        hits = defaultdict(list)
        for p, g, lang in zip(predict(model, test["text"].to_pylist()), gold, langs):
            hits[lang].append(p == g)
        acc = {lang: sum(v) / len(v) for lang, v in sorted(hits.items())}
        majority = {lang: max(sum(1 for g, l in zip(gold, langs) if l == lang and g == k) for k in range(len(labels)))
                    / len(hits[lang]) for lang in hits}
        others = [l for l in acc if l != a.main]
        above = sum(acc[l] > majority[l] for l in others)
        summary["main"].append(acc[a.main])
        summary["others"].append(sum(acc[l] for l in others) / len(others))
        summary["above_majority"].append(above)
        print(f"seed {seed}: epochs {epoch + 1}, dev {best:.3f}, {a.main} {acc[a.main]:.3f}, others' macro "
              f"{summary['others'][-1]:.3f}, above the majority label in {above} of {len(others)}  "
              + " ".join(f"{l}={v:.3f}" for l, v in acc.items()) + f"  ({time.time() - t0:.0f} s)", flush=True)
    result = {"args": vars(a), **{k: round(sum(v) / len(v), 3) for k, v in summary.items()}}
    if a.retrieval:
        from xling_bench import task_retrieval

        r = task_retrieval(a.model, f"{a.sib}/*/test.tsv", a.main, a.max_length)
        result["sib200_retrieval"] = {"cosine": r["macro_accuracy"], "margin": r["macro_margin_accuracy"]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
