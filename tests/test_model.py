import json

import pytest
import torch
from conftest import SAMPLE

from pipeline.config import ModelConfig, TokenizerConfig, load_yaml
from pipeline.corpus.prepare import prepare
from pipeline.evaluation.evaluate import evaluate_lm
from pipeline.training.model import build_mlm, encode, mask_tokens, warmup_cosine
from pipeline.training.tasks.classification import macro_f1
from pipeline.training.tokenizer import fertility, train_tokenizer


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory):
    from conftest import ROOT

    root = tmp_path_factory.mktemp("tok")
    cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    prepare([str(SAMPLE / "corpus" / "*")], str(root / "corpus"), cfg)
    manifest = json.loads((root / "corpus" / "manifest.json").read_text())
    tok = train_tokenizer(manifest, str(root / "corpus"), str(root / "tokenizer"), TokenizerConfig(vocab_size=1500))
    return root, manifest, tok


def test_tokenizer_round_trip_and_serves_every_language(corpus_and_tokenizer):
    from transformers import AutoTokenizer

    root, manifest, _ = corpus_and_tokenizer
    tok = AutoTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    ids = tok("主队在下半场打进两球")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    texts = {"th": ["ฝนตกหนักบนภูเขาตลอดทั้งคืน"], "ru": ["Весной лес полон птиц"], "en": ["The river rose quickly"]}
    fert = fertility(tok, texts)
    assert set(fert) == {"th", "ru", "en"}
    for lang, f in fert.items():
        assert f["unk_rate"] < 0.05, lang
        assert 0 < f["tokens_per_char"] <= 1.0


def test_tokenizer_sample_is_bounded_seeded_and_does_not_depend_on_read_order():
    """The tokenizer's streaming sample: at most its bytes (plus one text) and count whatever
    the stream's size; the same texts in any read order; a repeated text counts once; roughly
    uniform (each half of the stream gives about half the sample)."""
    import random

    from pipeline.training.tokenizer import Sample

    texts = [f"sentence number {i} " + "x" * (i % 50) for i in range(20_000)]

    def draw(order, count=500, max_bytes=10_000, seed=0):
        s = Sample(count, max_bytes, seed)
        for t in order:
            s.add(t)
        return s

    a = draw(texts)
    shuffled = texts[:]
    random.Random(1).shuffle(shuffled)
    assert a.texts() == draw(shuffled + texts[:3000]).texts()      # read order and repeats do not matter
    assert a.bytes - max(len(t) for t in a.texts()) < 10_000 <= a.bytes
    assert len(a.texts()) < 500 and len(set(a.texts())) == len(a.texts())
    first_half = sum(int(t.split()[2]) < 10_000 for t in a.texts()) / len(a.texts())
    assert 0.35 < first_half < 0.65
    assert len(draw(texts, count=50, max_bytes=10**9).texts()) == 50    # the count bound
    assert draw(texts, seed=1).texts() != a.texts()


def test_tokenizer_sample_stays_within_its_byte_budget_and_keeps_every_language(corpus_and_tokenizer):
    from pipeline.training.tokenizer import sample_texts

    root, manifest, _ = corpus_and_tokenizer
    langs = {k for k, v in manifest["languages"].items() if v.get("train_rows", 0) > 0}
    full = sample_texts(manifest, str(root / "corpus"), 200_000)
    small = sample_texts(manifest, str(root / "corpus"), 200_000, max_bytes=4_000)
    assert set(full) == set(small) == langs
    biggest = max(len(t.encode()) for texts in full.values() for t in texts)
    assert sum(len(t.encode()) for texts in small.values() for t in texts) < 4_000 + len(langs) * biggest
    assert sum(len(t.encode()) for texts in full.values() for t in texts) > 3 * 4_000
    assert all(small[lang] for lang in langs)


def test_mask_tokens_never_masks_specials_and_masks_every_sequence(corpus_and_tokenizer):
    _, _, tok = corpus_and_tokenizer
    enc = encode(tok, ["a", "The lake freezes in winter and snow covers the hills"], 32)
    gen = torch.Generator().manual_seed(0)
    inputs, labels = mask_tokens(enc["input_ids"], tok, 0.15, gen)
    special = torch.isin(enc["input_ids"], torch.tensor(tok.all_special_ids))
    assert (labels[special] == -100).all()
    assert ((labels != -100).sum(dim=1) >= 1).all()
    chosen = labels != -100
    assert (labels[chosen] == enc["input_ids"][chosen]).all()
    assert (inputs[~chosen] == enc["input_ids"][~chosen]).all()


def test_warmup_cosine_schedule():
    """transformers' cosine schedule with linear warmup, decaying to 10% of the peak."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, 4, 20)
    lrs = []
    for _ in range(21):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(0.5) and lrs[4] == pytest.approx(1.0)
    assert lrs[20] == pytest.approx(0.1) and lrs[12] < lrs[5]


def test_macro_f1():
    assert macro_f1(["a", "a", "b", "b"], ["a", "a", "b", "b"], ["a", "b"]) == 1.0
    # a: tp1 fp1 fn1 -> 0.5 ; b: tp1 fp1 fn1 -> 0.5
    assert macro_f1(["a", "a", "b", "b"], ["a", "b", "a", "b"], ["a", "b"]) == pytest.approx(0.5)
    assert macro_f1(["a", "a"], ["b", "b"], ["a", "b"]) == 0.0


def test_mlm_eval_falls_after_a_few_steps_of_training(corpus_and_tokenizer, tmp_path):
    """Plain-torch check of the model + masking + held-out eval path (no Ray): a few dozen
    steps on the sample corpus lower the held-out masked-LM loss."""
    import pyarrow.parquet as pq

    from pipeline.corpus.shard import shard_paths

    root, manifest, tok = corpus_and_tokenizer
    mcfg = ModelConfig(hidden_size=32, intermediate_size=64, max_length=48, dropout=0.0)
    torch.manual_seed(0)
    model = build_mlm(mcfg, tok)
    texts = pq.read_table(shard_paths(manifest, str(root / "corpus"), "train"))["text"].to_pylist()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(60):
        batch = [texts[(step * 16 + i) % len(texts)] for i in range(16)]
        enc = encode(tok, batch, mcfg.max_length)
        inputs, labels = mask_tokens(enc["input_ids"], tok, 0.15, gen)
        loss = model(input_ids=inputs, attention_mask=enc["attention_mask"], labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    report = evaluate_lm(str(tmp_path / "m"), manifest, str(root / "corpus"), mcfg)
    langs = report["languages"]
    assert len(langs) == 12
    # held-out sets of the sample are a few documents per language: judge the pooled loss,
    # and require most languages to improve individually
    n = sum(m["targets"] for m in langs.values())
    trained = sum(m["loss"] * m["targets"] for m in langs.values()) / n
    init = sum(m["loss_init"] * m["targets"] for m in langs.values()) / n
    assert trained < init - 0.5, (trained, init)
    improved = [l for l, m in langs.items() if m["loss"] < m["loss_init"]]
    assert len(improved) >= 8, langs
