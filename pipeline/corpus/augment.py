"""Back-translation augmentation for low-resource languages.

For each configured model (source -> low-resource target), kept documents in the source
language are translated with `transformers` seq2seq `generate` (MarianMT, M2M100, NLLB loaded
from a local directory) into synthetic target-language documents, marked `augmented=True`
with `origin_id` pointing at the source document. Synthetic outputs are filtered (empty,
copy of the input, length ratio, language ID of the output) and the failures are rejects of
stage `augment`, never silently dropped.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
import pyarrow.compute as pc

from ..config import AugmentConfig, TranslationModel
from ..schema import DOC_SCHEMA, REJECT_SCHEMA, concat, empty_docs, empty_rejects, make_docs, rejects_from_docs, split
from .langid import detect_scripts, predict

log = logging.getLogger(__name__)
STAGE = "augment"


def load_translator(model_dir: str):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, local_files_only=True)
    model.eval()
    return tokenizer, model


def translate(texts: list[str], tokenizer, model, tm: TranslationModel, cfg: AugmentConfig) -> list[str]:
    """Translate in length-sorted batches (less padding), returning outputs in input order."""
    import torch

    torch.manual_seed(cfg.seed)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs: list[str] = [""] * len(texts)
    gen = {"max_new_tokens": cfg.max_new_tokens, "num_beams": cfg.num_beams}
    if cfg.sample_top_k and cfg.num_beams == 1:
        gen.update(do_sample=True, top_k=cfg.sample_top_k)
    if tm.target_token:
        gen["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(tm.target_token)
    start, done = time.monotonic(), 0
    for b in range(0, len(order), cfg.batch_size):
        idx = order[b : b + cfg.batch_size]
        enc = tokenizer([tm.prefix + texts[i] for i in idx], return_tensors="pt", padding=True,
                        truncation=True, max_length=512)
        with torch.inference_mode():
            out = model.generate(**enc, **gen)
        for i, text in zip(idx, tokenizer.batch_decode(out, skip_special_tokens=True)):
            outputs[i] = text.strip()
        done += len(idx)
        rate = done / max(time.monotonic() - start, 1e-9)
        log.info("augment %s->%s: %d/%d docs, %.1f docs/s, ETA %.0fs", tm.source, tm.target, done,
                 len(texts), rate, (len(texts) - done) / rate)
    return outputs


def _length(text: str) -> int:
    return max(len(text.split()), len(text) // 4, 1)


def augment(docs: pa.Table, cfg: AugmentConfig, langid_models=None) -> tuple[pa.Table, pa.Table]:
    """Return (new synthetic documents kept, synthetic documents rejected)."""
    if not cfg.models:
        log.warning("augment: skipped, no translation model configured (corpus.augment.models is empty)")
        return empty_docs(), empty_rejects()
    kept_all, rejected_all = [], []
    for tm in cfg.models:
        src = docs.filter(pc.and_(pc.equal(docs["lang"], tm.source), pc.invert(docs["augmented"])))
        src = src.slice(0, cfg.max_new_per_language)
        if src.num_rows == 0:
            log.warning("augment %s->%s: no %s documents to translate", tm.source, tm.target, tm.source)
            continue
        tokenizer, model = load_translator(tm.model_dir)
        inputs = src["text"].to_pylist()
        outputs = translate(inputs, tokenizer, model, tm, cfg)
        origin = src["id"].to_pylist()
        new = make_docs([f"bt-{tm.target}-{o}" for o in origin], outputs,
                        [f"backtranslation:{tm.source}->{tm.target}"] * len(outputs),
                        lang=[tm.target] * len(outputs), augmented=True, origin_ids=origin)
        out_langs, scores = predict(outputs, langid_models)
        new = new.set_column(new.schema.get_field_index("lang_score"), "lang_score", pa.array(scores, pa.float32()))
        new = new.set_column(new.schema.get_field_index("script"), "script",
                             pa.array(detect_scripts(outputs), pa.string()))
        reasons, details = [], []
        for inp, out, ol, sc in zip(inputs, outputs, out_langs, scores):
            ratio = max(_length(inp), _length(out)) / min(_length(inp), _length(out))
            if not out:
                reasons.append("empty_output"); details.append("")
            elif out.casefold() == inp.casefold():
                reasons.append("copy_of_input"); details.append("")
            elif ratio > cfg.max_length_ratio:
                reasons.append("length_ratio"); details.append(f"{ratio:.2f} > {cfg.max_length_ratio}")
            elif cfg.check_language and ol != tm.target:
                reasons.append("wrong_language"); details.append(f"{ol}:{sc:.3f}, expected {tm.target}")
            else:
                reasons.append(None); details.append("")
        kept, dropped = split(new, [r is None for r in reasons])
        kept_all.append(kept)
        rejected_all.append(rejects_from_docs(dropped, STAGE, [r for r in reasons if r],
                                              [d for d, r in zip(details, reasons) if r]))
        log.info("augment %s->%s: %d generated, %d kept, %d rejected", tm.source, tm.target,
                 new.num_rows, kept.num_rows, dropped.num_rows)
    return concat(kept_all, DOC_SCHEMA), concat(rejected_all, REJECT_SCHEMA)
