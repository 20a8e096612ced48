"""Training at production grade: tokenizer options, the Ray Data path (mixing, tokenising,
packing), causal-LM pretraining that survives a killed worker, fine-tuning strategies."""

import json
import sys

import pyarrow as pa
import pytest
import torch
from conftest import ROOT, SAMPLE

from pipeline.config import PipelineConfig, TokenizerConfig, load_yaml


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from pipeline.corpus.prepare import prepare

    root = tmp_path_factory.mktemp("train")
    from pipeline.config import ParallelInput

    cfg = load_yaml(ROOT / "configs" / "demo.yaml").corpus
    cfg.engine = "local"
    cfg.parallel.inputs = [ParallelInput(path=str(SAMPLE / "parallel"))]
    prepare([str(SAMPLE / "corpus" / "*")], str(root / "corpus"), cfg)
    return root, json.loads((root / "corpus" / "manifest.json").read_text())


@pytest.mark.parametrize("model,objective", [("unigram", "masked_lm"), ("bpe", "causal_lm")])
def test_tokenizer_byte_fallback_and_fertility(corpus, tmp_path, model, objective):
    """No [UNK] even for a script the corpus never had; special tokens fit the objective;
    fertility is reported per language."""
    from transformers import AutoTokenizer

    from pipeline.training.tokenizer import fertility, train_tokenizer

    root, manifest = corpus
    train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok"),
                    TokenizerConfig(model=model, vocab_size=1200), objective)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"), local_files_only=True)
    text = "ᚠᛇᚻ ᛒᛦᚦ Ω 😀 hello"            # runes and emoji: not in the corpus
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids).strip() == text
    if objective == "masked_lm":
        assert tok.mask_token and tok.cls_token and tok.sep_token
    else:
        assert tok.bos_token and tok.eos_token and tok("x")["input_ids"][0] == tok.bos_token_id
    fert = fertility(tok, {"eng_Latn": ["The river rose quickly after the rain."], "runes": [text]})
    assert fert["runes"]["tokens_per_char"] > 2 * fert["eng_Latn"]["tokens_per_char"]   # served badly, visibly
    if model == "unigram":
        assert fert["runes"]["byte_fallback_rate"] > fert["eng_Latn"]["byte_fallback_rate"]
    assert fert["eng_Latn"]["tokens_per_word"] > 0


@pytest.mark.parametrize("model,byte_fallback", [("unigram", True), ("unigram", False), ("bpe", True)])
def test_the_same_corpus_gives_the_same_tokenizer_byte_for_byte(corpus, tmp_path, model, byte_fallback):
    """`tokenizers` trains over hash sets and maps whose order is random per process and per
    map (Unigram's appended characters took their scores in that order, its scores carried
    ~1e-11 of noise): trained twice, the tokenizer must be the same file, or the same config
    gives another model on another node (the whole-DAG cluster test compares weights)."""
    from pipeline.training.tokenizer import train_tokenizer

    root, manifest = corpus
    cfg = TokenizerConfig(model=model, vocab_size=1000, byte_fallback=byte_fallback)
    for name in ("a", "b", "c"):
        train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / name), cfg)
    first = (tmp_path / "a" / "tokenizer.json").read_bytes()
    assert (tmp_path / "b" / "tokenizer.json").read_bytes() == first
    assert (tmp_path / "c" / "tokenizer.json").read_bytes() == first


def test_packing_makes_full_single_language_sequences(corpus, tmp_path):
    from pipeline.training.pretrain import tokenize_batch
    from pipeline.training.tokenizer import train_tokenizer

    root, manifest = corpus
    train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok"), TokenizerConfig(vocab_size=1200), "causal_lm")
    texts = ["Le lac gèle en hiver et la neige couvre les collines."] * 7 + ["The river rose quickly."] * 9
    batch = pa.table({"text": texts, "lang": ["fra_Latn"] * 7 + ["eng_Latn"] * 9})
    out = tokenize_batch(batch, str(tmp_path / "tok"), "causal_lm", 16)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    ids = out["input_ids"]
    assert ids.shape[1] == 16 and len(ids) == len(out["lang"]) > 2
    assert not (ids == tok.pad_token_id).any()                       # packed: no padding
    assert (ids == tok.eos_token_id).sum() >= len(ids) // 2          # documents joined by </s>
    fr = [tok.decode(r) for r, l in zip(ids, out["lang"]) if l == "fra_Latn"]
    assert fr and all("river" not in s for s in fr)                  # one language per sequence
    mlm = tokenize_batch(batch, str(tmp_path / "tok"), "masked_lm", 16)
    assert mlm["input_ids"].shape == (16, 16)                        # one padded row per document


def test_causal_pretraining_survives_a_killed_worker(corpus, tmp_path):
    """Continued pretraining of a local Llama checkpoint (`model.pretrained_dir`, its own
    tokenizer kept) on 2 workers, with the alignment objectives on the sample's
    translation pairs (TLM and contrastive, negatives gathered across the workers); the last
    worker SIGKILLs its own process at step 5. Ray Train replaces it, training resumes from the
    step-4 checkpoint (document and pair streams at their positions) and ends at exactly step
    8, with per-language and per-language-pair losses, tokens/s and the learning rate."""
    import ray
    from tiny_models import build_tiny_pretrained
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.evaluation.evaluate import evaluate_lm
    from pipeline.training.pretrain import pretrain
    from pipeline.training.tokenizer import train_tokenizer

    root, manifest = corpus
    sys.path.insert(0, str(SAMPLE))
    from texts import DOCS

    src = str(build_tiny_pretrained(tmp_path / "llama", "llama", [d for t in DOCS.values() for ds in t.values() for d in ds]))
    cfg = PipelineConfig.model_validate({
        "run_name": "kill", "output_dir": str(tmp_path / "runs"),
        "model": {"objective": "causal_lm", "pretrained_dir": src, "max_length": 32},
        "pretrain": {"max_steps": 8, "batch_size": 8, "checkpoint_every": 2, "log_every": 2, "warmup_steps": 2,
                     "grad_accum_steps": 2, "inject_failure_at_step": 5, "tlm_weight": 0.5, "contrastive_weight": 0.5,
                     "pair_batch_size": 4},
        "ray": {"num_workers": 2, "max_failures": 1}})
    train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok"), cfg.tokenizer, "causal_lm")  # kept
    try:
        result = pretrain(str(root / "corpus"), manifest, str(tmp_path / "tok"), str(tmp_path / "runs" / "kill" / "model"), cfg)
    finally:
        ray.shutdown()
    assert (tmp_path / "runs" / "kill" / ".injected-failure").exists()       # the kill happened
    assert result["step"] == 8
    assert result["tokens_per_s"] > 0 and 0 < result["lr"] < cfg.pretrain.learning_rate
    assert any(k.startswith("loss/") for k in result)
    pairs = set(manifest["parallel"]["pairs"])
    assert result["tlm_loss"] > 0 and result["contrastive_loss"] > 0 and 0 <= result["contrastive_acc"] <= 1
    assert {k.split("/", 1)[1] for k in result if k.startswith(("tlm_loss/", "contrastive_loss/"))} <= pairs
    assert any(k.startswith("contrastive_loss/") for k in result)
    ckpts = sorted(p for p in (tmp_path / "runs" / "kill" / "ray" / "kill-pretrain").glob("checkpoint_*") if p.is_dir())
    steps = [json.loads((c / "trainer_meta.json").read_text())["step"] for c in ckpts]
    assert sorted(steps)[-2:] == [6, 8] and 2 not in steps                  # old checkpoints pruned
    report = evaluate_lm(result["model_dir"], manifest, str(root / "corpus"), cfg.model)
    langs = report["languages"]
    assert all("bits_per_byte" in m for m in langs.values())
    assert sum(m["loss"] < m["loss_init"] for m in langs.values()) >= 0.75 * len(langs)
    # the checkpoint's architecture, vocabulary and tokenizer, with moved weights
    assert AutoTokenizer.from_pretrained(result["model_dir"]).get_vocab() == AutoTokenizer.from_pretrained(src).get_vocab()
    before, after = AutoModelForCausalLM.from_pretrained(src), AutoModelForCausalLM.from_pretrained(result["model_dir"])
    assert after.config.model_type == "llama" and after.config.vocab_size == before.config.vocab_size
    assert not torch.equal(after.get_input_embeddings().weight, before.get_input_embeddings().weight)


def test_finetune_strategies(corpus, tmp_path):
    """LoRA (peft) with English as main language (weight 1, others 0.2), early stopping on a
    dev set, evaluation languages chosen apart from training ones; then a linear probe whose
    encoder weights do not move."""
    import ray
    import torch
    from transformers import AutoModelForSequenceClassification, BertForMaskedLM

    from pipeline.training.finetune import finetune
    from pipeline.training.model import build_mlm
    from pipeline.training.tasks import get
    from pipeline.training.tokenizer import train_tokenizer

    evaluate_classifier = get("sequence_classification").evaluate

    root, manifest = corpus
    tok = train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok"), TokenizerConfig(vocab_size=1200))
    base = PipelineConfig()
    torch.manual_seed(0)
    build_mlm(base.model, tok).save_pretrained(tmp_path / "pre")
    tok.save_pretrained(tmp_path / "pre")
    labelled = SAMPLE / "labelled"
    cfg = PipelineConfig.model_validate({
        "run_name": "ft", "output_dir": str(tmp_path / "runs"),
        "finetune": {"train_path": str(labelled / "train.tsv"), "dev_path": str(labelled / "test.tsv"),
                     "test_path": str(labelled / "test.tsv"), "train_languages": ["en", "fr", "de"],
                     "eval_languages": ["en", "sw", "th"], "main_language": "en", "other_language_weight": 0.2,
                     "strategy": "lora", "epochs": 6, "patience": 2, "batch_size": 8, "learning_rate": 0.005}})
    try:
        out = finetune(str(tmp_path / "pre"), str(tmp_path / "lora"), cfg)
        assert out["train_languages"] == ["deu_Latn", "eng_Latn", "fra_Latn"] and out["strategy"] == "lora"
        assert "dev_score" in out and out["epoch"] <= 6
        model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "lora"))  # merged, plain HF
        assert not any("lora" in n for n, _ in model.named_parameters())
        report = evaluate_classifier(str(tmp_path / "lora"), cfg.finetune.test_path, 64,
                                     languages=cfg.finetune.eval_languages)
        assert sorted(report["languages"]) == ["eng_Latn", "swh_Latn", "tha_Thai"]

        probe = cfg.model_copy(deep=True)
        probe.run_name = "probe"
        probe.finetune.strategy = "linear_probe"
        probe.finetune.dev_path = None
        probe.finetune.epochs = 2
        finetune(str(tmp_path / "pre"), str(tmp_path / "probe"), probe)
        before = BertForMaskedLM.from_pretrained(str(tmp_path / "pre")).bert.state_dict()
        after = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "probe")).bert.state_dict()
        enc = [k for k in before if k.startswith("encoder.")]
        assert enc and all(torch.equal(before[k], after[k]) for k in enc)

        # The stale-classifier scenario (issue 31): the run's pretrained model is made again from other
        # data (a user deleted ray/<run>-pretrain after a lineage error and reran). The finished fine-tuning
        # checkpoint of "probe" must not be handed on, nor its old export registered under the new lineage.
        from pipeline.register import LineageError as RegisterLineageError
        from pipeline.register import register
        from pipeline.storage import model_sha256
        from pipeline.training.raytrain import LineageError

        made_from = json.loads((tmp_path / "probe" / "trainer_meta.json").read_text())["lineage"]
        assert made_from["pretrained_sha256"] == model_sha256(str(tmp_path / "pre"))
        # a rerun (a retried flow) on the same pretrained model hands the finished checkpoint on: same model
        exported = model_sha256(str(tmp_path / "probe"))
        finetune(str(tmp_path / "pre"), str(tmp_path / "probe"), probe)
        assert model_sha256(str(tmp_path / "probe")) == exported
        assert made_from["task"] == "sequence_classification" and made_from["train_sha256"]
        torch.manual_seed(1)
        build_mlm(base.model, tok).save_pretrained(tmp_path / "pre")  # pretrained again: other weights
        with pytest.raises(LineageError, match=r"probe.*pretrained_sha256.*new run_name"):
            finetune(str(tmp_path / "pre"), str(tmp_path / "probe"), probe)
        assert AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "probe"))  # left as it was
        with pytest.raises(RegisterLineageError, match="fine-tuned from pretrained model"):
            register(str(tmp_path / "probe"), {}, manifest, "0" * 64, probe, str(tmp_path / "pre"))
    finally:
        ray.shutdown()


def test_finetune_reads_sib200_layout(shared_data):
    from pipeline.training.tasks.classification import read_labelled

    test = read_labelled(str(shared_data / "sib200" / "*" / "test.tsv"), ["eng", "tha", "swh"])
    langs = test["lang"].to_pylist()
    assert sorted(set(langs)) == ["eng_Latn", "swh_Latn", "tha_Thai"]
    assert len(langs) == 3 * 204 and len(set(test["label"].to_pylist())) == 7


def test_entity_f1_follows_conlleval():
    from pipeline.training.tasks.ner import entity_f1

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    assert entity_f1(gold, pred) == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "entities": 3}
    # an I- tag that does not continue an entity of its type starts one (conlleval)
    assert entity_f1([["I-PER", "I-PER", "B-PER"]], [["B-PER", "I-PER", "B-PER"]])["f1"] == 1.0
    assert entity_f1([["B-LOC", "I-ORG", "I-ORG"]], [["B-LOC", "B-ORG", "I-ORG"]])["f1"] == 1.0
    assert entity_f1([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "entities": 0}


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert", "llama"])
def test_lora_targets_the_attention_of_each_architecture(arch):
    """LoRA on tiny XLM-R, mBERT-style BERT and Llama classifiers built offline: peft picks the
    attention projections of the architecture; one step trains adapters and head only, and the
    merged export is a plain model with the same outputs."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, LlamaConfig, XLMRobertaConfig

    from pipeline.config import FinetuneConfig
    from pipeline.training.finetune import apply_strategy, exportable

    small = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, num_labels=3, pad_token_id=0)
    config = {"xlm-roberta": XLMRobertaConfig(max_position_embeddings=66, **small),
              "bert": BertConfig(max_position_embeddings=64, **small),
              "llama": LlamaConfig(max_position_embeddings=64, num_key_value_heads=2, **small)}[arch]
    torch.manual_seed(0)
    model = apply_strategy(AutoModelForSequenceClassification.from_config(config),
                           FinetuneConfig(strategy="lora", train_path="unused.tsv"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    expected = ("q_proj", "v_proj") if arch == "llama" else ("query", "value")
    assert any(expected[0] in n and "lora_A" in n for n in trainable)
    assert any(expected[1] in n and "lora_B" in n for n in trainable)
    assert all("lora_" in n or "classifier" in n or "score" in n for n in trainable), trainable
    ids = torch.randint(1, 300, (4, 12))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = torch.nn.functional.cross_entropy(model(input_ids=ids).logits, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if not p.requires_grad)
    model.eval()
    merged = exportable(model).eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)


def test_full_finetune_can_keep_the_pretrained_token_embeddings():
    """finetune.freeze_embeddings: one step of a full fine-tune moves the encoder and the head,
    never a token embedding (the other languages' vectors stay where the pretraining put them)."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    from pipeline.config import FinetuneConfig
    from pipeline.training.finetune import apply_strategy

    torch.manual_seed(0)
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3, max_position_embeddings=64, pad_token_id=0)
    for freeze in (True, False):
        model = apply_strategy(AutoModelForSequenceClassification.from_config(config),
                               FinetuneConfig(train_path="unused.tsv", freeze_embeddings=freeze))
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        logits = model(input_ids=torch.randint(1, 300, (4, 12))).logits
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
        opt.step()
        moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert ("bert.embeddings.word_embeddings.weight" in moved) is not freeze
        assert "classifier.weight" in moved and any("encoder.layer.0" in n for n in moved)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_finetune_dropout_overrides_the_pretrained_models(tmp_path, arch):
    """finetune.dropout sets every dropout rate of a model pretrained without dropout (names
    differ by architecture); unset, the model keeps its own."""
    from transformers import AutoModelForSequenceClassification, BertConfig, LlamaConfig

    from pipeline.training.finetune import dropout_overrides

    small = dict(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64, pad_token_id=0, num_labels=3)
    config = (BertConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **small) if arch == "bert"
              else LlamaConfig(attention_dropout=0.0, **small))
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    assert dropout_overrides(str(tmp_path), None) == {}
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3,
                                                               **dropout_overrides(str(tmp_path), 0.25))
    rates = {k: v for k, v in model.config.to_dict().items() if "dropout" in k}
    assert rates and all(v == 0.25 for v in rates.values())
    if arch == "bert":  # the modules themselves, not only the config
        assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.25}


def test_lora_on_an_unknown_architecture_names_the_setting():
    import torch

    from pipeline.config import FinetuneConfig
    from pipeline.training.finetune import apply_strategy

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": "odd", "to_dict": lambda self: {"model_type": "odd"}})()
            self.proj = torch.nn.Linear(4, 4)
            self.classifier = torch.nn.Linear(4, 2)

    with pytest.raises(ValueError, match="lora_target_modules"):
        apply_strategy(Odd(), FinetuneConfig(strategy="lora", train_path="unused.tsv"))


def test_token_classification_on_masakhaner(shared_data, tmp_path):
    """Named-entity tagging on real MasakhaNER sentences (Swahili and Hausa, a few hundred each):
    a tagger fine-tuned with Ray Train finds entities (F1 > 0) in both, evaluated per language."""
    import ray
    import torch
    from transformers import AutoTokenizer

    from pipeline.training.finetune import finetune
    from pipeline.training.model import build_mlm
    from pipeline.training.tasks import get
    from pipeline.training.tasks.ner import read_tagged
    from pipeline.training.tokenizer import train_tokenizer

    evaluate_tagger = get("token_classification").evaluate

    data = tmp_path / "ner"
    for lang in ("swa", "hau"):
        for split, n in (("train", 400), ("test", 100)):
            text = (shared_data / "masakhaner" / lang / f"{split}.txt").read_text(encoding="utf-8")
            (data / lang).mkdir(parents=True, exist_ok=True)
            (data / lang / f"{split}.txt").write_text("\n\n".join(text.split("\n\n")[:n]) + "\n", encoding="utf-8")
    train = read_tagged(str(data / "*" / "train.txt"))
    assert sorted(set(train["lang"].to_pylist())) == ["hau_Latn", "swh_Latn"]
    corpus = tmp_path / "corpus"
    # a tokenizer and an untrained encoder from the training sentences themselves
    sents = [" ".join(t) for t in train["tokens"].to_pylist()]
    corpus.mkdir()
    import pyarrow.parquet as pq

    from pipeline.storage import sha256_file

    pq.write_table(pa.table({"text": sents}), corpus / "x.parquet")
    manifest = {"languages": {"x": {"train_rows": len(sents), "weight": 1.0}},
                "shards": [{"lang": "x", "split": "train", "path": "x.parquet",
                            "bytes": (corpus / "x.parquet").stat().st_size,
                            "sha256": sha256_file(str(corpus / "x.parquet"))}]}
    tok = train_tokenizer(manifest, str(corpus), str(tmp_path / "tok"), TokenizerConfig(vocab_size=2000))
    cfg = PipelineConfig.model_validate({
        "run_name": "ner", "output_dir": str(tmp_path / "runs"),
        "model": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "max_length": 96},
        "finetune": {"task": "token_classification", "train_path": str(data / "*" / "train.txt"),
                     "test_path": str(data / "*" / "test.txt"), "epochs": 8, "batch_size": 16,
                     "learning_rate": 0.003}})
    torch.manual_seed(0)
    build_mlm(cfg.model, tok).save_pretrained(tmp_path / "pre")
    AutoTokenizer.from_pretrained(str(tmp_path / "tok")).save_pretrained(tmp_path / "pre")
    try:
        finetune(str(tmp_path / "pre"), str(tmp_path / "tagger"), cfg)
    finally:
        ray.shutdown()
    report = evaluate_tagger(str(tmp_path / "tagger"), cfg.finetune.test_path, cfg.model.max_length)
    assert sorted(report["languages"]) == ["hau_Latn", "swh_Latn"]
    assert all(m["f1"] > 0.05 and m["entities"] > 50 for m in report["languages"].values()), report["languages"]


def test_training_stream_is_seeded(corpus, tmp_path):
    """The same seed gives the same language-mixed, shuffled, tokenised stream; another seed
    a different order."""
    import ray

    from pipeline.training.pretrain import training_stream
    from pipeline.training.raytrain import init_ray
    from pipeline.training.tokenizer import train_tokenizer

    root, manifest = corpus
    train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok"), TokenizerConfig(vocab_size=1200), "causal_lm")
    init_ray(PipelineConfig().ray)
    try:
        def first(seed):
            ds = training_stream(manifest, str(root / "corpus"), 400, 0.3, seed, str(tmp_path / "tok"), "causal_lm", 32)
            rows = ds.take(40)
            return [tuple(r["input_ids"]) for r in rows], [r["lang"] for r in rows]
        a, b, c = first(1), first(1), first(2)
    finally:
        ray.shutdown()
    assert a == b and a[0] != c[0]
    assert len(set(a[1])) > 3                   # languages are mixed


def test_rerun_with_the_same_run_name_resumes(corpus, tmp_path):
    """A finished run of 4 steps, rerun under the same name with max_steps 6, continues from
    its step-4 checkpoint (steps 5-6 only: the metrics history shows no restart at step 1);
    the checkpoint records the corpus and tokenizer it was trained on, and the same run on
    other data is refused instead of handing on a model trained on the old.
    Trained with FSDP (2 workers, gloo) and bf16 autocast: each rank writes its own shard of the
    weights and optimizer state (torch.distributed.checkpoint, merged by Ray Train into one
    checkpoint), only the final checkpoint also holds consolidated safetensors, and the rerun
    resumes on ONE worker: the shards are resharded to the new world size."""
    from pathlib import Path

    import ray

    from pipeline.storage import model_sha256, sha256_dir, sha256_file
    from pipeline.training.pretrain import pretrain, pretrain_lineage
    from pipeline.training.raytrain import LineageError
    from pipeline.training.tokenizer import train_tokenizer

    root, manifest = corpus
    train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok"), TokenizerConfig(vocab_size=1000), "causal_lm")
    raw = {"run_name": "again", "output_dir": str(tmp_path / "runs"),
           "model": {"objective": "causal_lm", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                     "intermediate_size": 64, "max_length": 32},
           "pretrain": {"max_steps": 4, "batch_size": 4, "checkpoint_every": 2, "log_every": 2, "precision": "bf16"},
           "ray": {"num_workers": 2, "max_failures": 0, "strategy": "fsdp"}}
    out = str(tmp_path / "runs" / "again" / "model")
    try:
        first = pretrain(str(root / "corpus"), manifest, str(tmp_path / "tok"), out, PipelineConfig.model_validate(raw))
        ckpts = sorted(p for p in (tmp_path / "runs" / "again" / "ray" / "again-pretrain").glob("checkpoint_*")
                       if p.is_dir())
        files = [{f.name for f in c.iterdir()} for c in ckpts]
        assert len(files) == 2 and all({".metadata", "__0_0.distcp", "__1_0.distcp"} <= f for f in files)
        assert "model.safetensors" not in files[0] and "model.safetensors" in files[1]   # only the final one
        raw["pretrain"]["max_steps"] = 6
        raw["ray"]["num_workers"] = 1  # resumed on another number of workers
        # the tokenizer stage of a rerun keeps the tokenizer made from the same corpus and settings
        sha = sha256_dir(str(tmp_path / "tok"))
        train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok"), TokenizerConfig(vocab_size=1000),
                        "causal_lm")
        assert sha256_dir(str(tmp_path / "tok")) == sha
        second = pretrain(str(root / "corpus"), manifest, str(tmp_path / "tok"), out, PipelineConfig.model_validate(raw))
        # the finished run again (a retried flow): nothing trained, the same model handed on, so fine-tuning's
        # lineage (the pretrained model's identity) holds
        exported = model_sha256(out)
        third = pretrain(str(root / "corpus"), manifest, str(tmp_path / "tok"), out, PipelineConfig.model_validate(raw))
        assert third["step"] == 6 and model_sha256(out) == exported
        # the same run on another tokenizer (other data): refused before any training, with the remedy
        train_tokenizer(manifest, str(root / "corpus"), str(tmp_path / "tok2"), TokenizerConfig(vocab_size=900),
                        "causal_lm")
        with pytest.raises(LineageError, match=r"tokenizer_sha256.*new run_name"):
            pretrain(str(root / "corpus"), manifest, str(tmp_path / "tok2"), out, PipelineConfig.model_validate(raw))
    finally:
        ray.shutdown()
    assert first["step"] == 4 and second["step"] == 6
    last = max(p for p in (tmp_path / "runs" / "again" / "ray" / "again-pretrain").glob("checkpoint_*") if p.is_dir())
    assert {f.name for f in last.iterdir()} >= {".metadata", "__0_0.distcp", "model.safetensors"}
    assert not (last / "__1_0.distcp").exists()                 # written by the one worker of the rerun
    assert not any(f.name.endswith(".distcp") for f in Path(out).iterdir())   # the export: no shards
    lineage = json.loads(Path(out, "trainer_meta.json").read_text())["lineage"]  # in the exported model too
    assert lineage == pretrain_lineage(str(root / "corpus"), str(tmp_path / "tok"), PipelineConfig.model_validate(raw))
    assert lineage["manifest_sha256"] == sha256_file(str(root / "corpus" / "manifest.json"))
    history = [json.loads(l)["step"] for l in (tmp_path / "runs" / "again" / "eval" / "pretrain-metrics.jsonl").open()]
    assert history == [2, 4, 6]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)          # a plain, unsharded HF model
    assert sum(p.numel() for p in model.parameters()) > 0 and not torch_is_dtensor(model)


def torch_is_dtensor(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def test_canonical_unigram_ignores_the_trainers_noise_at_the_lowest_score():
    """The trainer's characters at the lowest score carry ~1e-11 of summation noise: in one run
    some land exactly on it, in another just above. Both runs must give the same vocabulary
    (the noise once made the tokenizer, and so pretraining's lineage, change between runs)."""
    from tokenizers import Tokenizer, models

    from pipeline.training.tokenizer import _canonical_unigram

    floor, texts = -9.0187, ["aaaa bbb cc d e f"]
    base = [("[UNK]", 0.0), ("ab", -2.0)]
    appended = [("g", floor + 0.0001), ("h", floor + 0.0002)]

    def canonical(noise: list[float]):
        kept = [(ch, floor + n) for ch, n in zip("abcdef", noise)]
        tok = Tokenizer(models.Unigram(base + kept + appended, unk_id=0, byte_fallback=False))
        return [tuple(v) for v in json.loads(_canonical_unigram(tok, texts, ["[UNK]"], "[UNK]", False).to_str())[
            "model"]["vocab"]]

    one = canonical([0.0, 0.0, 0.0, 4e-11, 4e-11, 0.0])
    assert one == canonical([4e-11, 0.0, 1e-14, 0.0, 0.0, 4e-11])
    order = [p for p, _ in one]
    assert order.index("a") < order.index("b") < order.index("c") < order.index("d")  # by frequency in the texts
