"""Linear probe for zero-shot transfer: a logistic regression on the frozen mean-pooled
sentence vectors (the ones the contrastive objective aligns) of SIB-200's English training
set, tested on every language's test set; per arm of bench/xling_bench.py. Tells whether a
weak zero-shot result comes from the fine-tuning (HF's [CLS] head) or from the vectors.

    .venv/bin/python bench/xling_probe.py [--run xling-s4] [--arms mlm,aligned] [--sib ../shared/data/sib200]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from pipeline.evaluation.retrieval import embed, load_encoder
    from pipeline.training.tasks.classification import read_labelled

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="xling-s4")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs"))
    ap.add_argument("--arms", default="mlm,aligned")
    ap.add_argument("--sib", default=str(ROOT.parent / "shared" / "data" / "sib200"))
    ap.add_argument("--max-length", type=int, default=48)
    args = ap.parse_args()
    out = {}
    for arm in args.arms.split(","):
        model, tok = load_encoder(f"{args.runs_dir}/{args.run}-{arm}/model-pretrained")
        train = read_labelled(f"{args.sib}/eng_Latn/train.tsv")
        vectors = embed(model, tok, train["text"].to_pylist(), args.max_length, False, "mean").numpy()
        clf = LogisticRegression(max_iter=2000, C=10.0).fit(vectors, train["label"].to_pylist())
        out[arm] = {}
        for path in sorted(glob.glob(f"{args.sib}/*/test.tsv")):
            test = read_labelled(path)
            gold = np.array(test["label"].to_pylist())
            pred = clf.predict(embed(model, tok, test["text"].to_pylist(), args.max_length, False, "mean").numpy())
            major = max((gold == g).mean() for g in set(gold))
            out[arm][Path(path).parent.name] = {"accuracy": round(float((pred == gold).mean()), 3),
                                               "majority_accuracy": round(float(major), 3)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
