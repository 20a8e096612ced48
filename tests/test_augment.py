"""Back-translation in the corpus phase, with a tiny MarianMT that has learnt the sample's
English -> Swahili sentence pairs by heart (so what comes out can be checked, not only
counted): selection by budget, sentence-level translation reassembled in order, quality
control and dedup against real text, synthetic pairs, resume after SIGKILL, Ray actors."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SAMPLE
from tiny_models import train_tiny_marian

from pipeline.config import CorpusConfig, TranslationModel
from pipeline.corpus import augment as aug
from pipeline.corpus.prepare import prepare

sys.path.insert(0, str(SAMPLE))
from texts import DOCS  # noqa: E402

EN = [t for v in DOCS["en"].values() for t in v]
SW = [t for v in DOCS["sw"].values() for t in v]
TRIPLES = [(k, (k + 5) % 15, (k + 11) % 15) for k in range(12)]


@pytest.fixture(scope="module")
def bt_model(tmp_path_factory):
    return str(train_tiny_marian(tmp_path_factory.mktemp("bt-marian"), list(zip(EN, SW))))


@pytest.fixture
def corpus(tmp_path):
    """English documents of three memorised sentences each, one English sentence alone whose
    translation is a real Swahili document, and three real Swahili documents."""
    folder = tmp_path / "in"
    folder.mkdir()
    en = [{"id": f"en-{k}", "text": " ".join(EN[i] for i in t)} for k, t in enumerate(TRIPLES)]
    en.append({"id": "en-solo", "text": EN[15]})
    sw = [{"id": "sw-solo", "text": SW[15]}] + [{"id": f"sw-{i}", "text": SW[i]} for i in (12, 13)]
    for name, rows in (("en.jsonl", en), ("sw.jsonl", sw)):
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(folder / "*")


def config(model_dir: str, **augment) -> CorpusConfig:
    from pipeline.config import load_yaml

    cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus.model_copy(deep=True)
    cfg.engine = "local"
    cfg.augment = cfg.augment.model_validate({
        "models": [{"source": "en", "target": "sw", "model_dir": model_dir}], "backend": "hf",
        "max_synthetic_share": 1.0, "docs_per_unit": 4, "max_new_tokens": 128, **augment})
    return cfg


def shards(out: Path, lang: str, split: str | None = None) -> pa.Table:
    manifest = json.loads((out / "manifest.json").read_text())
    files = [str(out / s["path"]) for s in manifest["shards"] if s["lang"] == lang and split in (None, s["split"])]
    return pq.read_table(files) if files else None


def test_no_model_configured_says_so_in_one_line_and_the_rest_runs(corpus, tmp_path, caplog):
    from pipeline.config import load_yaml

    cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    with caplog.at_level(logging.INFO, logger="pipeline.corpus.augment"):
        report = prepare([corpus], str(tmp_path / "out"), cfg)
    lines = [r.message for r in caplog.records if r.name == "pipeline.corpus.augment"]
    assert lines == ["augment: skipped, no translation model configured (corpus.augment.models is empty)"]
    assert report["kept"] > 0 and report["augmented"]["generated"] == 0 and "plan" not in report["augmented"]


def test_back_translation_sentence_by_sentence_reassembled_filtered_and_deduplicated(bt_model, corpus, tmp_path):
    out = tmp_path / "out"
    report = prepare([corpus], str(out), config(bt_model, tag="<BT>"))
    assert report["input"] == report["kept"] + report["unidentified"] + report["rejected"]
    a = report["augmented"]
    plan = a["plan"]["eng_Latn->swh_Latn"]
    synthetic = shards(out, "swh_Latn").filter(pa.compute.field("augmented"))
    heldout_en = set(shards(out, "eng_Latn", "heldout")["id"].to_pylist())
    origins = synthetic["origin_id"].to_pylist()
    # sources: training documents only (a held-out document's translation would leak the test set)
    assert heldout_en and not heldout_en & set(origins)
    assert plan["documents"] == 13 - len(heldout_en) and plan["sentences"] == 3 * (12 - len(heldout_en & {
        f"en-{k}" for k in range(12)})) + (0 if "en-solo" in heldout_en else 1)
    # each document translated sentence by sentence and put back together in order
    assert synthetic.num_rows >= 8
    for doc_id, text, origin, source in zip(synthetic["id"].to_pylist(), synthetic["text"].to_pylist(), origins,
                                            synthetic["source"].to_pylist()):
        k = int(origin.removeprefix("en-"))
        assert doc_id == f"bt-swh_Latn-{origin}" and text == " ".join(SW[i] for i in TRIPLES[k])
        assert source.startswith("backtranslation:eng_Latn->swh_Latn:") and source.endswith(":hf")
    # the translation of en-solo is a real Swahili document: rejected as its duplicate
    dedup = pq.read_table(out / "rejects" / "dedup.parquet").to_pylist()
    if "en-solo" not in heldout_en:
        assert {"id": "bt-swh_Latn-en-solo", "reason": "exact_duplicate", "duplicate_of": "sw-solo"}.items() <= \
            next(r for r in dedup if r["id"] == "bt-swh_Latn-en-solo").items()
        assert a["languages"]["swh_Latn"]["rejected_by_reason"]["exact_duplicate"] == 1
    assert a["languages"]["swh_Latn"]["kept"] == synthetic.num_rows
    # synthetic text is never held out, and its sentence pairs are synthetic translation pairs
    held = shards(out, "swh_Latn", "heldout")
    assert held is None or not any(held["augmented"].to_pylist())
    manifest = json.loads((out / "manifest.json").read_text())
    pairs = pq.read_table([str(out / f["path"]) for f in manifest["parallel"]["files"]]).to_pylist()
    expected = {(EN[i], SW[i]) for o in origins for i in TRIPLES[int(o.removeprefix("en-"))]}
    assert all(p["synthetic"] for p in pairs) and len(pairs) == len(expected)  # pairs are deduplicated too
    assert {(p["src_text"], p["tgt_text"]) for p in pairs} == expected

    # tagged back-translation: the manifest's tag is one special token of the trained tokenizer,
    # and the first token of every synthetic document in the pretraining stream, of no natural one
    from pipeline.config import TokenizerConfig
    from pipeline.training.pretrain import tokenize_batch
    from pipeline.training.tokenizer import train_tokenizer

    assert manifest["synthetic_tag"] == "<BT>"
    tok = train_tokenizer(manifest, str(out), str(tmp_path / "tok"), TokenizerConfig(vocab_size=400), "masked_lm")
    tag_id = tok.convert_tokens_to_ids("<BT>")
    assert tok("<BT> Habari")["input_ids"][1] == tag_id
    sw = shards(out, "swh_Latn")
    assert any(sw["augmented"].to_pylist()) and not all(sw["augmented"].to_pylist())
    seqs = tokenize_batch(sw, str(tmp_path / "tok"), "masked_lm", 48, synthetic_tag="<BT>")["input_ids"]
    assert [int(row[1]) == tag_id for row in seqs] == sw["augmented"].to_pylist()


def test_ctranslate2_backend_translates_like_transformers(bt_model, corpus, tmp_path):
    """CTranslate2 (float32: the comparison is of the backends, not of int8 rounding, which
    bench/translate_bench.py measures) agrees with transformers on the memorised sentences
    (an over-fitted tiny model has small margins: a few first-token flips are allowed), and runs
    the corpus stage end to end."""
    from pipeline.translation.backends import load

    hf, _ = load("hf", bt_model).translate(EN, "eng_Latn", "swh_Latn")
    ct2, errors = load("ct2", bt_model, compute_type="float32").translate(EN, "eng_Latn", "swh_Latn")
    assert not errors and sum(a == b for a, b in zip(hf, ct2)) >= 12 and sum(a == s for a, s in zip(hf, SW)) == 16
    report = prepare([corpus], str(tmp_path / "ct2"), config(bt_model, backend="ct2", compute_type="float32"))
    synthetic = shards(tmp_path / "ct2", "swh_Latn").filter(pa.compute.field("augmented"))
    assert report["augmented"]["kept"] == synthetic.num_rows >= 6
    assert all(s.endswith(":ct2") for s in synthetic["source"].to_pylist())


def test_budget_floor_share_cap_and_diversity():
    cfg = CorpusConfig.model_validate({"augment": {"models": [{"source": "en", "target": "sw", "model_dir": "m"}],
                                                   "max_new_per_language": 50},
                                       "shard": {"heldout_fraction": 0.0}})
    docs = pa.table({"id": [f"{s}-{i}" for s in "ab" for i in range(30)], "text": ["word " * 40] * 60,
                     "lang": ["eng_Latn"] * 60, "script": ["Latn"] * 60, "lang_score": [0.9] * 60,
                     "source": [s for s in ("a.txt", "b.txt") for _ in range(30)]})
    sources = aug.Sources(cfg, None)
    sources.add(docs)
    ranked = sources.ranked("eng_Latn")
    assert [r["source"] for r in ranked[:6]] == ["a.txt", "b.txt"] * 3  # every input source contributes
    from pipeline.corpus.shard import estimate_tokens

    per_doc = estimate_tokens(pa.table({"text": ["word " * 40], "script": ["Latn"]}))

    def chosen(**kw):
        c = cfg.model_copy(deep=True)
        for k, v in kw.items():
            if k == "floor":
                c.shard.token_floor = {"swh_Latn": v}
            else:
                setattr(c.augment, k, v)
        return aug.plan(sources, {"swh_Latn": 100}, c)[0]

    assert chosen(floor=0)["plan"]["documents"] == -(-100 // per_doc)  # no floor: up to the share cap (0.5: 100)
    assert chosen(floor=100)["plan"]["documents"] == 0  # already at its floor
    assert chosen(floor=300)["plan"]["documents"] == -(-100 // per_doc)  # 200 wanted, capped at 100 by the share
    assert chosen(floor=1100, max_synthetic_share=1.0)["plan"]["documents"] == -(-1000 // per_doc)
    assert chosen(max_synthetic_share=1.0, max_new_per_language=7)["plan"]["documents"] == 7
    many = aug.Sources(cfg, None)  # memory: about 2 x cap candidates per language, however many files
    for f in range(40):
        many.add(docs.set_column(5, "source", pa.array([f"file-{f}.txt"] * 60)).slice(f, 20))
    assert sum(len(h) for h in many.heaps.values()) <= 2 * 50 + 40 and len(many.ranked("eng_Latn")) >= 50
    again = aug.Sources(cfg, None)
    again.add(docs)
    assert [r["id"] for r in again.ranked("eng_Latn")] == [r["id"] for r in ranked]  # seeded: the same choice


RUN = """
import json, logging, sys
sys.path.insert(0, {root!r})
from pipeline.config import CorpusConfig
from pipeline.corpus.prepare import prepare
cfg = CorpusConfig.model_validate(json.loads(sys.argv[1]))
prepare([sys.argv[2]], sys.argv[3], cfg)
"""


def test_killed_mid_translation_resumes_to_the_same_corpus(bt_model, corpus, tmp_path):
    cfg = config(bt_model, docs_per_unit=1, threads=1)
    cfg.unit_cache = str(tmp_path / "cache")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", RUN.format(root=str(ROOT)), cfg.model_dump_json(), corpus, str(out)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((tmp_path / "cache").glob("bt-*/done.json"))) >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = len(list((tmp_path / "cache").glob("bt-*/done.json")))
    assert not (out / "manifest.json").exists()
    resumed = prepare([corpus], str(out), cfg)
    assert resumed["augmented"]["plan"]["_units"]["reused"] == done_before >= 2
    fresh = prepare([corpus], str(tmp_path / "fresh"), config(bt_model, docs_per_unit=1))
    assert resumed["augmented"]["kept"] == fresh["augmented"]["kept"]
    a, b = shards(out, "swh_Latn"), shards(tmp_path / "fresh", "swh_Latn")
    assert a.drop_columns(["source"]).equals(b.drop_columns(["source"]))
    assert len(set(a["id"].to_pylist())) == a.num_rows  # no duplicates


def test_ray_actor_pool_gives_the_local_result(bt_model, corpus, tmp_path):
    import ray

    from pipeline.config import RayConfig

    ray.shutdown()
    try:
        cfg = config(bt_model, actors=2, docs_per_unit=3)
        cfg.engine = "ray"
        on_ray = prepare([corpus], str(tmp_path / "ray"), cfg, RayConfig(local_num_cpus=4))
    finally:
        ray.shutdown()
    local = prepare([corpus], str(tmp_path / "local"), config(bt_model, docs_per_unit=3))
    assert on_ray["augmented"] == {**local["augmented"], "plan": on_ray["augmented"]["plan"]}
    assert shards(tmp_path / "ray", "swh_Latn").equals(shards(tmp_path / "local", "swh_Latn"))
    hosts = {json.loads(p.read_text())["pid"] for p in (tmp_path / "ray" / "_units").glob("bt-*/done.json")}
    assert os.getpid() not in hosts  # translated in the actors, not the driver


def test_long_documents_with_a_short_model_are_cut_not_crashed(tmp_path):
    """A model with 32 positions and ten-sentence documents (the IndexError of issue 12):
    sentences are translated one by one, long ones cut to the input budget."""
    from tiny_models import build_tiny_marian

    from pipeline.config import AugmentConfig

    model = str(build_tiny_marian(tmp_path / "short", EN * 3, SW * 3, max_positions=32))
    cfg = CorpusConfig(augment=AugmentConfig(models=[TranslationModel(source="en", target="sw", model_dir=model)],
                                             backend="hf", max_new_tokens=16, check_language=False))
    translators = aug.Translators(cfg)
    backend = translators.get(model)
    assert backend.max_input_tokens == 32
    doc = " ".join(EN[:10]) + " " + ", ".join(EN[10:16]).replace(".", "")  # the last sentence is very long
    outputs, errors, pieces, flat = aug._translate_docs(backend, [doc], ["Latn"], "eng_Latn", "swh_Latn")
    assert not errors[0] and outputs[0] and len(pieces[0]) > 11
    assert max(backend.lengths([p.text for p in pieces[0]], "eng_Latn", "swh_Latn")) <= 32
    assert len(flat) == len(pieces[0]) and all(flat)


def test_translate_train_keeps_labels_and_paraphrases_are_checked(bt_model, tmp_path):
    """finetune.translate_train / paraphrase: the main language's labelled examples translated
    (labels kept; the memorised model gives the real Swahili sentence), and round trips through a
    reverse model (random weights here: every paraphrase must be rejected, each with a reason);
    the TSV it writes is what fine-tuning reads."""
    from tiny_models import build_tiny_marian

    from pipeline.config import PipelineConfig
    from pipeline.training.tasks.classification import read_labelled
    from pipeline.translation.labelled import augment_labelled

    topics = [topic for topic, texts in DOCS["en"].items() for _ in texts]
    train = tmp_path / "train.tsv"
    train.write_text("lang\tlabel\ttext\n" + "".join(f"en\t{t}\t{x}\n" for t, x in zip(topics, EN))
                     + "fr\tsports\tLe match était très serré.\n", encoding="utf-8")
    reverse = str(build_tiny_marian(tmp_path / "reverse", SW * 3, EN * 3))
    cfg = PipelineConfig.model_validate({
        "run_name": "tt", "output_dir": str(tmp_path / "runs"),
        "corpus": {"augment": {"backend": "hf", "models": [{"source": "en", "target": "sw", "model_dir": bt_model,
                                                            "reverse_model_dir": reverse}]}},
        "finetune": {"train_path": str(train), "translate_train": True, "paraphrase": True}})
    report = augment_labelled(cfg, cfg.path("labelled"))
    made = read_labelled(report["path"])
    sw_rows = [r for r in made.to_pylist() if r["lang"] == "swh_Latn"]
    tt = report["languages"]["translate-train:swh_Latn"]
    assert len(sw_rows) == tt["kept"] >= 12 and tt["kept"] + sum(tt["rejected"].values()) == 16
    for r in sw_rows:  # label kept, text the memorised translation of its example
        i = SW.index(r["text"])
        assert r["label"] == topics[i]
    para = report["languages"]["paraphrase:eng_Latn"]
    assert para["kept"] == 0 and sum(para["rejected"].values()) == 16
    assert set(para["rejected"]) <= {"wrong_language", "length_ratio", "repetition_loop", "empty_output",
                                     "copy_of_source", "no_pivot"}
    rejects = pq.read_table(Path(cfg.path("labelled")) / "translated-train-rejects.parquet")
    assert rejects.num_rows == report["rejected"] == 16 + sum(tt["rejected"].values())
    # a retried flow gets the same rows back (fine-tuning's lineage holds them), not a new translation;
    # other examples are translated again
    tsv = Path(report["path"])
    stamp = tsv.stat().st_mtime_ns
    assert augment_labelled(cfg, cfg.path("labelled")) == report and tsv.stat().st_mtime_ns == stamp
    with train.open("a", encoding="utf-8") as f:
        f.write("en\tsports\tThe final was played in the rain.\n")
    assert augment_labelled(cfg, cfg.path("labelled"))["made_from"] != report["made_from"]
    with pytest.raises(ValueError, match="sequence classification only"):
        augment_labelled(cfg.model_copy(update={"finetune": cfg.finetune.model_copy(
            update={"task": "token_classification"})}), str(tmp_path / "x"))
