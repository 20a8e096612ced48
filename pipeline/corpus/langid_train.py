"""Train a fastText language-ID model for the languages you need, and evaluate it.

    train(LidTrainConfig(inputs=[...]), out_dir)  ->  out_dir/model.ftz (or .bin)
                                                      out_dir/report.{json,md}, confusion.png

Inputs (any mix):
- a folder of `<label>.txt` files, one text a line (`fra_Latn.txt`, `fr.txt`); files named
  `<anything>.<label>` count too (Tatoeba's `tatoeba.aze-eng.aze`);
- a TSV file `label<TAB>text`, one example a line (a first line `label<TAB>text` is a header);
- a Parquet file with columns `label` and `text`.
Labels may be in any ISO 639 form; each line's label becomes the pipeline's canonical
`<ISO 639-3>_<script>` label (`language_codes.normalize`, with the line's detected script, so a
Serbian file of Cyrillic and Latin lines gives `srp_Cyrl` and `srp_Latn`).

Method (fastText supervised LID as in lid.176 / GlotLID): lines are lower-cased on one line
as `langid` reads them at prediction time; each label keeps at most `max_per_label` distinct
lines; whole lines (UDHR paragraphs, Tatoeba sentences) are held out by a hash of the line, so
no piece of a held-out paragraph is trained on; long training lines are also cut into
sentence-sized chunks so that short documents look like something the model has seen; small
labels are repeated up to `min_per_label` examples so the big languages do not swallow them;
character n-grams (`minn`..`maxn`) carry the signal; the model is quantised (`.ftz`).
Training runs on one thread by default, which makes it reproducible bit for bit.

The report holds precision, recall and F1 per language on the held-out lines (and on
documents of `doc_lines` held-out lines), the most-confused pairs, and a confusion chart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .. import language_codes
from ..config import LidTrainConfig, public_dump
from ..redact import redact, redact_uri, refuse_redacted
from ..storage import atomic_open, get_fs, join, put_local, write_json

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z]{4})?$")
_SENTENCE_END = re.compile(r"(?<=[.!?।॥։።؟。！？])\s+")


class LidDataError(ValueError):
    """Labelled input that cannot be used; names the file and line."""


_VARIANT = re.compile(r"-[A-Za-z0-9]{1,3}$")


def _file_label(name: str) -> str | None:
    """The label a file name carries: `fra_Latn.txt`, `fr.txt`, `tatoeba.aze-eng.aze`, and with
    a region or variant after a hyphen, `zho_Hant-TW.txt` (NTREX), `quc_Latn-NT.tsv` (Bible)."""
    stem = name[:-4] if name.endswith((".txt", ".tsv")) else name
    for cand in (stem, stem.rsplit(".", 1)[-1]):
        cand = _VARIANT.sub("", cand) if "_" in cand else cand
        if _LABEL.match(cand):
            try:
                language_codes.normalize_code(cand)
                return cand
            except ValueError:
                return None
    return None


def read_labelled(inputs: list[str]) -> tuple[list[str], list[str]]:
    """(raw labels, texts) from folders of `<label>.txt`, TSV and Parquet files."""
    raw, texts, _ = read_labelled_sources(inputs)
    return raw, texts


def read_labelled_sources(inputs: list[str]) -> tuple[list[str], list[str], list[int]]:
    """(raw labels, texts, the index of the input each text came from). A folder holds
    `<label>.txt` files (one text a line) and `<label>.tsv` files (`id<TAB>text` a line, the
    Bible's verses); a file input is a `label<TAB>text` TSV or a Parquet file."""
    raw: list[str] = []
    texts: list[str] = []
    sources: list[int] = []
    for source, uri in enumerate(inputs):
        start = len(texts)
        fs, path = get_fs(uri)
        shown = redact_uri(uri)  # errors name the input without its credentials
        if fs.isdir(path):
            files = sorted(p for p in fs.find(path) if _file_label(p.rsplit("/", 1)[-1]))
            if not files:
                raise LidDataError(f"{shown}: no `<label>.txt` files in this folder")
            for p in files:
                label = _file_label(p.rsplit("/", 1)[-1])
                lines = [l.strip() for l in fs.cat_file(p).decode("utf-8-sig").splitlines()]
                if p.endswith(".tsv"):  # `id<TAB>text`: the text after the last tab
                    lines = [l.rsplit("\t", 1)[-1].strip() for l in lines]
                lines = [l for l in lines if l]
                raw += [label] * len(lines)
                texts += lines
        elif path.endswith(".parquet"):
            with fs.open(path, "rb") as f:
                t = pq.read_table(f)
            missing = {"label", "text"} - set(t.column_names)
            if missing:
                raise LidDataError(f"{shown}: Parquet needs columns 'label' and 'text' (missing {sorted(missing)})")
            for i, (lab, txt) in enumerate(zip(t["label"].to_pylist(), t["text"].to_pylist()), 1):
                if not lab or not isinstance(txt, str):
                    raise LidDataError(f"{shown}: row {i}: empty label or text")
                if txt.strip():
                    raw.append(lab)
                    texts.append(txt.strip())
        else:
            data = fs.cat_file(path).decode("utf-8-sig")
            for i, line in enumerate(data.splitlines(), 1):
                if not line.strip() or (i == 1 and line.lower().startswith("label\t")):
                    continue
                lab, sep, txt = line.partition("\t")
                if not sep or "\t" in txt or not _LABEL.match(lab.strip()):
                    raise LidDataError(f"{shown}:{i}: expected `label<TAB>text` with a language label, got {line[:60]!r}")
                raw.append(lab.strip())
                texts.append(txt.strip())
        sources += [source] * (len(texts) - start)
    return raw, texts, sources


def canonical_labels(raw: list[str], texts: list[str]) -> list[str]:
    """Each example's canonical label, using the script detected in its own text."""
    from .langid import detect_scripts

    scripts = detect_scripts(texts)
    return [language_codes.normalize(r, s, t) for r, s, t in zip(raw, scripts, texts)]


def _line(text: str) -> str:
    """A text as `langid` shows it to fastText: one line, lower-cased."""
    return " ".join(text.split()).lower()


def _bucket(label: str, text: str) -> float:
    h = hashlib.blake2b(f"{label}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def _chunks(text: str, size: int) -> list[str]:
    """Sentence-sized pieces of a long text (sentence ends first, then word-aligned cuts)."""
    out: list[str] = []
    for sent in _SENTENCE_END.split(text):
        while len(sent) > size:
            cut = sent.rfind(" ", size // 2, size)
            cut = cut if cut > 0 else size
            out.append(sent[:cut].strip())
            sent = sent[cut:].strip()
        if sent:
            out.append(sent)
    return out


def _interleave(lines: list[str], source_of: dict[str, int], salt: str) -> list[str]:
    """Lines in an order that takes one line of each source in turn (each source's lines in
    their own hash order), so that a cap keeps every genre of a label, not the largest."""
    by_source: dict[int, list[str]] = defaultdict(list)
    for l in lines:
        by_source[source_of.get(l, 0)].append(l)
    queues = [sorted(ls, key=lambda l: _bucket(salt, l)) for _, ls in sorted(by_source.items())]
    out: list[str] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def split_examples(labs: list[str], texts: list[str], cfg: LidTrainConfig, sources: list[int] | None = None):
    """Per label: distinct lines, hashed into train / held-out (whole lines), capped; with
    `sources` (the input of each text), the cap takes the inputs (genres) of a label in turn."""
    by_label: dict[str, dict[str, int]] = defaultdict(dict)
    for i, (lab, text) in enumerate(zip(labs, texts)):
        by_label[lab].setdefault(_line(text), sources[i] if sources else 0)
    train: dict[str, list[str]] = {}
    heldout: dict[str, list[str]] = {}
    skipped: dict[str, int] = {}
    for lab, source_of in sorted(by_label.items()):
        lines = [l for l in source_of if l]
        if len(lines) < cfg.min_lines or language_codes.is_unidentified(lab):  # `und_*` texts teach no language
            skipped[lab] = len(lines)
            continue
        held = [l for l in lines if _bucket(lab, l) < cfg.heldout_fraction]
        rest = [l for l in lines if _bucket(lab, l) >= cfg.heldout_fraction]
        if not rest:
            skipped[lab] = len(lines)
            continue
        # the cap keeps a sample (by a second hash), never a slice of the split's hash order
        cap_held = max(1, round(cfg.max_per_label * cfg.heldout_fraction / (1 - cfg.heldout_fraction)))
        rest = _interleave(rest, source_of, "train:" + lab)[: cfg.max_per_label]
        held = _interleave(held, source_of, "held:" + lab)[:cap_held]
        train[lab], heldout[lab] = rest, held
    return train, heldout, skipped


def training_lines(train: dict[str, list[str]], cfg: LidTrainConfig, seed: int) -> list[str]:
    """fastText training file lines: `__label__X text`, long lines also as chunks, small
    labels repeated up to `min_per_label` examples, all shuffled with the seed."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for lab, lines in train.items():
        examples = list(lines)
        for l in lines:
            if len(l) > cfg.chunk_chars:
                examples += _chunks(l, cfg.chunk_chars)
        if len(examples) < cfg.min_per_label:
            reps = -(-cfg.min_per_label // len(examples))
            examples = (examples * reps)[: cfg.min_per_label]
        out += [f"__label__{lab} {e}" for e in examples]
    rng.shuffle(out)
    return out


def _fit(lines: list[str], cfg: LidTrainConfig, out_path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        train_file = f.name
    try:
        epoch = max(cfg.epoch, -(-cfg.min_updates // max(len(lines), 1)))
        model = fasttext.train_supervised(
            input=train_file, dim=cfg.dim, minn=cfg.minn, maxn=cfg.maxn, epoch=epoch, lr=cfg.lr,
            wordNgrams=1, loss=cfg.loss, bucket=cfg.bucket, thread=cfg.threads, seed=cfg.seed, verbose=0)
        if cfg.quantize:
            model.quantize(input=train_file, qnorm=True, retrain=False, cutoff=cfg.cutoff, thread=cfg.threads,
                           dsub=2)
        model.save_model(out_path)
    finally:
        os.unlink(train_file)
    return model


def _predict(model, lines: list[str]) -> list[str]:
    got, _ = model.f.multilinePredict(lines, 1, 0.0, "replace")
    return [g[0].removeprefix("__label__") if g else language_codes.UNKNOWN for g in got]


def scores(gold: list[str], pred: list[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support per gold label (sklearn's definitions)."""
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred):
        if g == p:
            tp[g] += 1
        else:
            fn[g] += 1
            fp[p] += 1
    out = {}
    for lab in sorted(set(gold)):
        prec = tp[lab] / (tp[lab] + fp[lab]) if tp[lab] + fp[lab] else 0.0
        rec = tp[lab] / (tp[lab] + fn[lab]) if tp[lab] + fn[lab] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[lab] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
                    "support": tp[lab] + fn[lab]}
    return out


def confused_pairs(gold: list[str], pred: list[str], top: int = 25) -> list[dict]:
    pairs = Counter((g, p) for g, p in zip(gold, pred) if g != p)
    support = Counter(gold)
    return [{"gold": g, "predicted": p, "count": n, "share": round(n / support[g], 4)}
            for (g, p), n in pairs.most_common(top)]


def evaluate(model, heldout: dict[str, list[str]], doc_lines: int) -> dict:
    """Per-language scores on held-out lines and on documents of `doc_lines` held-out lines."""
    gold = [lab for lab, lines in heldout.items() for _ in lines]
    lines = [l for lines in heldout.values() for l in lines]
    pred = _predict(model, lines)
    docs_gold, docs = [], []
    for lab, ls in heldout.items():
        for i in range(0, len(ls) - doc_lines + 1, doc_lines):
            docs_gold.append(lab)
            docs.append(" ".join(ls[i : i + doc_lines]))
    docs_pred = _predict(model, docs)
    per_line, per_doc = scores(gold, pred), scores(docs_gold, docs_pred)
    for lab, m in per_line.items():
        if lab in per_doc:
            m["doc_f1"] = per_doc[lab]["f1"]
            m["doc_recall"] = per_doc[lab]["recall"]
    macro = lambda d, k: round(float(np.mean([m[k] for m in d.values()])), 4) if d else 0.0
    return {
        "heldout_lines": len(lines), "heldout_docs": len(docs),
        "macro_f1": macro(per_line, "f1"), "macro_recall": macro(per_line, "recall"),
        "doc_macro_f1": macro(per_doc, "f1"), "doc_macro_recall": macro(per_doc, "recall"),
        "languages": per_line, "confused": confused_pairs(gold, pred),
        "doc_confused": confused_pairs(docs_gold, docs_pred),
        "_gold": gold, "_pred": pred,
    }


def confusion_chart(gold: list[str], pred: list[str], uri: str, top: int = 30) -> str:
    """A heat map of the `top` most-confused languages (row: true, column: predicted,
    share of the row), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = Counter()
    for g, p in zip(gold, pred):
        if g != p:
            errors[g] += 1
            errors[p] += 1
    langs = sorted(l for l, _ in errors.most_common(top)) or sorted(set(gold))[:top]
    index = {l: i for i, l in enumerate(langs)}
    m = np.zeros((len(langs), len(langs)))
    support = Counter(gold)
    for g, p in zip(gold, pred):
        if g in index and p in index:
            m[index[g], index[p]] += 1
    m = m / np.array([[max(support[l], 1)] for l in langs])
    fig, ax = plt.subplots(figsize=(1.2 + 0.3 * len(langs), 1.0 + 0.3 * len(langs)), dpi=110)
    im = ax.imshow(m, cmap="magma_r", vmin=0, vmax=1)
    ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=7)
    ax.set_yticks(range(len(langs)), langs, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true language")
    ax.set_title(f"Language ID on held-out lines: the {len(langs)} most-confused languages")
    fig.colorbar(im, ax=ax, fraction=0.03, label="share of the true language's lines")
    fig.tight_layout()
    from ..charts import save_png

    return save_png(fig, uri)


def markdown(report: dict) -> str:
    lines = [f"# Language-ID model `{report['model']}`", "",
             f"{report['labels']} labels, {report['train_examples']} training examples, "
             f"{report['heldout_lines']} held-out lines ({report['heldout_docs']} documents of "
             f"{report['doc_lines']} lines). Macro F1 {report['macro_f1']} (lines), "
             f"{report['doc_macro_f1']} (documents).", "",
             "| language | precision | recall | F1 | F1 (documents) | held-out lines |",
             "|---|---:|---:|---:|---:|---:|"]
    for lab, m in report["languages"].items():
        lines.append(f"| {lab} | {m['precision']} | {m['recall']} | {m['f1']} | {m.get('doc_f1', '')} | {m['support']} |")
    lines += ["", "Most-confused pairs (held-out lines):", "", "| true | predicted | lines | share |", "|---|---|---:|---:|"]
    lines += [f"| {c['gold']} | {c['predicted']} | {c['count']} | {c['share']} |" for c in report["confused"]]
    if report["skipped"]:
        lines += ["", "Skipped (fewer than min_lines distinct lines): "
                  + ", ".join(f"{k} ({v})" for k, v in report["skipped"].items())]
    return "\n".join(lines) + "\n"


def recheck_labels(reference: str, train_set: dict[str, list[str]], confident: float,
                   doc_lines: int = 3, max_docs: int = 50, min_share: float = 0.5) -> dict[str, list[str]]:
    """The labels a reference model (lid.176) gives with confidence >= `confident` to most
    (`min_share`) documents of a language it does not know (Dzongkha read as Tibetan, Tigrinya
    as Amharic, Dari as Persian): {its label: [the languages it hides]}. Its confident answers
    of these labels are re-checked by the ensemble's other models (`LangIdConfig.recheck`).
    Measured on 3-line documents of training lines only."""
    from .langid import known_languages, predict

    known = known_languages(reference)
    out: dict[str, list[str]] = defaultdict(list)
    for lab, lines in sorted(train_set.items()):
        if language_codes.language(lab) in known:
            continue
        docs = [" ".join(lines[i : i + doc_lines]) for i in range(0, len(lines) - doc_lines + 1, doc_lines)][:max_docs]
        if not docs:
            continue
        got, scores = predict(docs, reference)
        for attractor, n in Counter(g for g, sc in zip(got, scores) if sc >= confident).items():
            if n >= min_share * len(docs):
                out[attractor].append(lab)
    return dict(sorted(out.items()))


def check_inputs(cfg: LidTrainConfig) -> None:
    """Before any work: no input is a redacted copy (read back from a flow run's stored
    parameters), and every input and the reference model lie under the worker's roots
    (BABELFORGE_ALLOWED_ROOTS, pipeline/allowed_roots.py; a folder by every file in it): the
    `train-langid` deployment runs whatever inputs a Prefect UI user gives it."""
    from ..allowed_roots import SHIPPED_LID_MODELS, check_locations

    for i, uri in enumerate(cfg.inputs):
        refuse_redacted(uri, f"inputs[{i}]")
    locations = [(f"inputs[{i}]", uri) for i, uri in enumerate(cfg.inputs)]
    if cfg.reference_model and cfg.reference_model not in SHIPPED_LID_MODELS:
        locations.append(("reference_model", cfg.reference_model))
    check_locations(locations)


def train(cfg: LidTrainConfig, out_dir: str) -> dict:
    """Train, evaluate and write the model and its report under `out_dir`; return the report
    (credentials of the URIs it names redacted, as in report.json)."""
    t0 = time.monotonic()
    check_inputs(cfg)
    raw, texts, sources = read_labelled_sources(cfg.inputs)
    if not texts:
        raise LidDataError(f"no labelled text in {[redact_uri(u) for u in cfg.inputs]}")
    labs = canonical_labels(raw, texts)
    train_set, heldout, skipped = split_examples(labs, texts, cfg, sources)
    lines = training_lines(train_set, cfg, cfg.seed)
    log.info("langid train: %d labels, %d training examples (%d skipped labels)", len(train_set), len(lines),
             len(skipped))
    fs, root = get_fs(out_dir)
    fs.makedirs(root, exist_ok=True)
    name = "model.ftz" if cfg.quantize else "model.bin"
    tmp = Path(tempfile.mkdtemp(prefix="babelforge-lid-"))
    local = tmp / name
    try:
        model = _fit(lines, cfg, str(local))
        model_bytes = put_local(str(local), join(out_dir, name))["bytes"]  # temporary name, then renamed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ev = evaluate(model, heldout, cfg.doc_lines)
    gold, pred = ev.pop("_gold"), ev.pop("_pred")
    confusion_chart(gold, pred, join(out_dir, "confusion.png"))
    report = {"model": join(out_dir, name), "labels": len(train_set), "train_examples": len(lines),
              "doc_lines": cfg.doc_lines, "bytes": model_bytes, "seconds": round(time.monotonic() - t0, 1),
              "config": public_dump(cfg), **ev, "skipped": skipped}  # inputs without their credentials
    if cfg.reference_model:
        report["recheck"] = {"reference": cfg.reference_model, "confident": cfg.reference_confident,
                             "labels": recheck_labels(cfg.reference_model, train_set, cfg.reference_confident)}
    report = redact(report)  # and any other URI in it (the model's, under out_dir)
    write_json(join(out_dir, "report.json"), report)
    with atomic_open(join(out_dir, "report.md"), "w") as f:
        f.write(markdown(report))
    log.info("langid train: %s (%.1f MB), macro F1 %.3f on held-out lines, %.3f on documents, %.0f s",
             report["model"], report["bytes"] / 1e6, report["macro_f1"], report["doc_macro_f1"], report["seconds"])
    return report
