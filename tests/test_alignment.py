"""Cross-lingual alignment objectives (TLM, contrastive) on tiny models built offline: the pair
layout, losses that fall, gradients that reach both sides of a pair, and the contrastive loss
under DDP equal to the one-worker loss on the same global batch."""

import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import SAMPLE

from pipeline.config import CorpusConfig, ParallelInput, PretrainConfig, TokenizerConfig
from pipeline.training import alignment
from pipeline.training.model import SelectiveLM, lm_targets, selected_losses, sequence_losses
from pipeline.training.pretrain import _micro_step, tokenize_batch


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from pipeline.corpus.prepare import prepare
    from pipeline.training.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("align")
    cfg = CorpusConfig()
    cfg.parallel.inputs = [ParallelInput(path=str(SAMPLE / "parallel"))]
    cfg.parallel.heldout_fraction = 0.5  # a few held-out pairs per language pair for retrieval
    prepare([str(SAMPLE / "corpus" / "*")], str(root / "corpus"), cfg)
    manifest = json.loads((root / "corpus" / "manifest.json").read_text())
    for objective in ("masked_lm", "causal_lm"):
        train_tokenizer(manifest, str(root / "corpus"), str(root / objective), TokenizerConfig(vocab_size=1500),
                        objective)
    return root, manifest


def _pairs(root, manifest) -> pa.Table:
    from pipeline.corpus.parallel import read_pairs

    return pa.concat_tables([read_pairs(manifest, str(root / "corpus"), s) for s in ("train", "heldout")])


def test_sample_pairs_are_sharded_per_language_pair(corpus):
    _, manifest = corpus
    pairs = manifest["parallel"]["pairs"]
    assert set(pairs) == {"deu_Latn-eng_Latn", "eng_Latn-fra_Latn", "eng_Latn-spa_Latn"}
    assert all(p["rows"] == 12 for p in pairs.values())


def test_tlm_rows_reset_positions_per_side(corpus):
    from transformers import AutoTokenizer

    root, manifest = corpus
    tok_dir = str(root / "masked_lm")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    batch = pa.table({"src_lang": ["eng_Latn"], "tgt_lang": ["fra_Latn"], "src_text": ["The river is high."],
                      "tgt_text": ["La rivière est haute."]})
    out = alignment.tokenize_pairs(batch, tok_dir, "masked_lm", 40)
    src = tok("The river is high.", add_special_tokens=False)["input_ids"]
    tgt = tok("La rivière est haute.", add_special_tokens=False)["input_ids"]
    n = len(src) + len(tgt) + 3
    row = out["tlm_ids"][0]
    assert list(row[:n]) == [tok.cls_token_id, *src, tok.sep_token_id, *tgt, tok.sep_token_id]
    assert (row[n:] == tok.pad_token_id).all()
    assert list(out["tlm_pos"][0][:n]) == list(range(len(src) + 2)) + list(range(len(tgt) + 1))
    assert list(out["tlm_seg"][0][:n]) == [0] * (len(src) + 2) + [1] * (len(tgt) + 1)
    assert list(out["a_ids"][0][: len(src) + 2]) == [tok.cls_token_id, *src, tok.sep_token_id]
    assert list(out["b_ids"][0][: len(tgt) + 2]) == [tok.cls_token_id, *tgt, tok.sep_token_id]
    assert out["pair"][0] == "eng_Latn-fra_Latn"
    # a pair longer than the row is cut, never overflowing, both sides kept
    long = pa.table({"src_lang": ["eng_Latn"], "tgt_lang": ["fra_Latn"], "src_text": ["word " * 50],
                     "tgt_text": ["mot " * 5]})
    cut = alignment.tokenize_pairs(long, tok_dir, "masked_lm", 24)
    assert (cut["tlm_seg"][0] == 1).sum() == len(tok("mot " * 5, add_special_tokens=False)["input_ids"]) + 1
    assert cut["tlm_ids"][0][-1] == tok.sep_token_id


def _model(arch: str, tok):
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        LlamaConfig,
        LlamaForCausalLM,
        XLMRobertaConfig,
        XLMRobertaForMaskedLM,
    )

    small = dict(vocab_size=len(tok), hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=96, pad_token_id=tok.pad_token_id, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    if arch == "bert":
        return BertForMaskedLM(BertConfig(max_position_embeddings=48, **small))
    if arch == "xlm-roberta":  # one segment type, positions from padding_idx + 1
        return XLMRobertaForMaskedLM(XLMRobertaConfig(max_position_embeddings=48 + tok.pad_token_id + 2, **small))
    small = {k: v for k, v in small.items() if "dropout" not in k}
    return LlamaForCausalLM(LlamaConfig(max_position_embeddings=48, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id, **small))


@pytest.mark.parametrize("arch", ["bert", "xlm-roberta", "llama"])
def test_alignment_losses_fall_and_reach_both_sides(corpus, arch):
    from transformers import AutoTokenizer

    root, manifest = corpus
    objective = "causal_lm" if arch == "llama" else "masked_lm"
    tok_dir = str(root / objective)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    pairs = _pairs(root, manifest)
    pair_batch = alignment.tokenize_pairs(pairs.slice(0, 16) if arch != "bert" else pairs, tok_dir, objective, 40)
    docs = pa.table({"text": ["The market sells fresh fish.", "Le marché vend du poisson."], "lang": ["eng_Latn", "fra_Latn"]})
    lm_batch = tokenize_batch(docs, tok_dir, "masked_lm", 40)  # one padded row per document
    model = SelectiveLM(_model(arch, tok))
    gen = torch.Generator().manual_seed(0)

    # gradients reach the embeddings of tokens found on only one side of the pairs, for each objective
    def one_sided(src: np.ndarray, tgt: np.ndarray) -> tuple[set, set]:
        a, b = set(src.ravel()) - set(tok.all_special_ids), set(tgt.ravel()) - set(tok.all_special_ids)
        assert a - b and b - a
        return a - b, b - a

    tlm_ids, seg = pair_batch["tlm_ids"], pair_batch["tlm_seg"]
    sides = {"tlm_weight": one_sided(tlm_ids[seg == 0], tlm_ids[seg == 1]),  # as the TLM rows hold them
             "contrastive_weight": one_sided(pair_batch["a_ids"], pair_batch["b_ids"])}
    for objective_weight, (src_only, tgt_only) in sides.items():
        weights = {objective_weight: 1.0}
        pcfg = PretrainConfig(lm_weight=0.0, **weights)
        model.zero_grad()
        out = _micro_step(model, tok, lm_batch, pair_batch, objective == "causal_lm", pcfg, gen, torch.device("cpu"),
                          torch.autocast("cpu", enabled=False), True)
        grad = model.model.get_input_embeddings().weight.grad
        norms = grad.norm(dim=1)
        assert all(norms[i] > 0 for i in src_only), weights
        assert all(norms[i] > 0 for i in tgt_only), weights
        assert ("tlm" in out) == ("tlm_weight" in weights) and ("contrastive" in out) == ("contrastive_weight" in weights)

    # a few steps of all three objectives on the same pairs: TLM and contrastive losses fall
    pcfg = PretrainConfig(tlm_weight=1.0, contrastive_weight=1.0, contrastive_temperature=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        opt.zero_grad()
        out = _micro_step(model, tok, lm_batch, pair_batch, objective == "causal_lm", pcfg, gen, torch.device("cpu"),
                          torch.autocast("cpu", enabled=False), True)
        opt.step()
        history.append((float(out["tlm"][0].detach().sum() / out["tlm"][1].sum()),
                        float(out["contrastive"][0].detach().mean()), float(out["contrastive"][1].float().mean())))
    first, last = np.mean(history[:3], axis=0), np.mean(history[-3:], axis=0)
    assert last[0] < first[0] - 0.3, history
    assert last[1] < 0.5 * first[1], history
    # each source finds its own translation among the 16 (the sample repeats English sentences
    # across en-fr/en-de/en-es, so a few in-batch "negatives" are the same sentence)
    assert last[2] >= 0.75, history
    if arch == "bert":  # retrieval evaluation measures what the training did (these pairs were trained on)
        from pipeline.evaluation.retrieval import evaluate_retrieval

        untrained = _model(arch, tok)
        scores = {}
        for name, m in (("trained", model.model), ("init", untrained)):
            m.save_pretrained(root / f"retrieval-{name}")
            tok.save_pretrained(root / f"retrieval-{name}")
            scores[name] = evaluate_retrieval(str(root / f"retrieval-{name}"), manifest, str(root / "corpus"), 40,
                                              min_pairs=3)
        trained = scores["trained"]
        assert set(trained["pairs"]) <= set(manifest["parallel"]["pairs"]) and len(trained["pairs"]) >= 2
        for key, row in trained["pairs"].items():
            a, b = key.split("-", 1)
            assert row["pairs"] == manifest["parallel"]["pairs"][key]["heldout_rows"]
            assert row["accuracy"] == round((row[f"{a}->{b}"] + row[f"{b}->{a}"]) / 2, 4)
            assert row["chance"] == round(1 / row["pairs"], 4) and 0 <= row["margin_accuracy"] <= 1
        assert trained["macro_accuracy"] >= 0.8 > scores["init"]["macro_accuracy"], scores
        assert trained["macro_margin_accuracy"] >= 0.8 > scores["init"]["macro_margin_accuracy"], scores


def test_ratio_margin_discounts_hubs():
    """Two target vectors near the direction every query shares ("hubs") are the cosine nearest
    neighbour of many queries that are not theirs; the ratio margin (Artetxe & Schwenk 2019)
    divides each cosine by how close both sides are to their neighbours anyway, and finds
    the queries' own translations."""
    from pipeline.evaluation.retrieval import accuracy, ratio_margin

    norm = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    n, d = 50, 32
    shared = torch.zeros(d)
    shared[0] = 6.0
    r = torch.randn(n, d, generator=g)
    za = norm(r + shared)
    zb = norm(r + 1.3 * torch.randn(n, d, generator=g) + shared)
    zb[:2] = norm(shared + 0.2 * torch.randn(2, d, generator=g))
    sim = za @ zb.T
    assert int((sim[2:].argmax(1) < 2).sum()) >= 15  # 15 or more of 48 queries land on a hub by cosine
    assert int((ratio_margin(sim)[2:].argmax(1) < 2).sum()) <= 5
    cos_ab, _ = accuracy(za, zb)
    margin_ab, _ = accuracy(za, zb, margin=True)
    assert margin_ab >= cos_ab + 0.2, (cos_ab, margin_ab)
    # the score itself: cosine over the mean of both sides' k-nearest-neighbour cosines
    i, j, k = 5, 7, 4
    expect = sim[i, j] / ((sim[i].topk(k).values.mean() + sim[:, j].topk(k).values.mean()) / 2)
    assert torch.isclose(ratio_margin(sim, k)[i, j], expect)
    # k larger than the candidates: all of them
    small = sim[:3, :3]
    assert torch.isclose(ratio_margin(small, 10)[0, 1], small[0, 1] / ((small[0].mean() + small[:, 1].mean()) / 2))


def _ddp_worker(rank: int, world: int, init: str, za: torch.Tensor, zb: torch.Tensor, weight: torch.Tensor, out: str,
                margin: float = 0.0):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    w = weight.clone().requires_grad_(True)
    n = za.size(0) // world
    rows = slice(rank * n, (rank + 1) * n)
    loss, _ = alignment.contrastive_losses(za[rows] @ w, zb[rows] @ w, 0.1, gather_negatives=True, margin=margin)
    loss.mean().backward()
    dist.all_reduce(w.grad)  # what DDP does with the gradients: average over workers
    torch.save({"loss": loss.mean().detach(), "grad": w.grad / world}, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_contrastive_loss_under_ddp_equals_one_worker_on_the_global_batch(margin):
    """Two gloo workers, each with half of 8 pairs, negatives gathered with gradients: the mean of
    their losses and the averaged gradient equal the one-worker loss and gradient on all 8 pairs
    (with LaBSE's additive margin too)."""
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    za, zb, weight = torch.randn(8, 6), torch.randn(8, 6), torch.randn(6, 5)
    w = weight.clone().requires_grad_(True)
    loss, _ = alignment.contrastive_losses(za @ w, zb @ w, 0.1, margin=margin)
    loss.mean().backward()
    with tempfile.TemporaryDirectory() as d:
        init = f"file://{os.path.join(d, 'store')}"
        mp.spawn(_ddp_worker, args=(2, init, za, zb, weight, os.path.join(d, "r"), margin), nprocs=2, join=True)
        parts = [torch.load(os.path.join(d, f"r.{r}")) for r in range(2)]
    assert torch.allclose(sum(p["loss"] for p in parts) / 2, loss.mean(), atol=1e-6)
    assert torch.allclose(parts[0]["grad"], w.grad, atol=1e-6) and torch.allclose(parts[1]["grad"], w.grad, atol=1e-6)
    # without the gather each worker sees only its own 4 pairs: a different (easier) loss
    local = [alignment.contrastive_losses((za @ weight)[r * 4:(r + 1) * 4], (zb @ weight)[r * 4:(r + 1) * 4], 0.1,
                                          margin=margin)[0].mean() for r in range(2)]
    assert not torch.allclose(sum(local) / 2, loss.mean(), atol=1e-3)


def test_additive_margin_is_the_translation_cosine_less_the_margin():
    """LaBSE's additive margin softmax: each direction's cross-entropy with the pair's own cosine
    lowered by the margin before the temperature; which candidate ranks first is unchanged."""
    torch.manual_seed(1)
    za, zb = torch.randn(5, 4), torch.randn(5, 4)
    plain, correct = alignment.contrastive_losses(za, zb, 0.05, gather_negatives=False)
    loss, correct_m = alignment.contrastive_losses(za, zb, 0.05, gather_negatives=False, margin=0.3)
    cos = torch.nn.functional.normalize(za, dim=-1) @ torch.nn.functional.normalize(zb, dim=-1).T
    shifted = (cos - 0.3 * torch.eye(5)) / 0.05
    by_hand = 0.5 * (torch.nn.functional.cross_entropy(shifted, torch.arange(5), reduction="none")
                     + torch.nn.functional.cross_entropy(shifted.T, torch.arange(5), reduction="none"))
    assert torch.allclose(loss, by_hand, atol=1e-5)
    assert bool((loss > plain).all()) and torch.equal(correct, correct_m)


def test_contrastive_token_dropout_masks_inner_tokens_only(corpus):
    """Token dropout of contrastive rows: about the configured share of each side's inner tokens
    becomes the mask token, never the sentence start / end or padding; drawn from the step's
    generator (a resumed run draws the same); 0 leaves the rows as they are."""
    from pipeline.training.pretrain import _token_dropout, _tokenizer

    root, manifest = corpus
    tok = _tokenizer(str(root / "masked_lm"))
    rows = alignment.tokenize_pairs(_pairs(root, manifest), str(root / "masked_lm"), "masked_lm", 40)
    ids = torch.as_tensor(np.concatenate([rows["a_ids"], rows["b_ids"]]), dtype=torch.long)
    assert torch.equal(_token_dropout(ids, tok, 0.0, torch.Generator().manual_seed(0)), ids)
    out = _token_dropout(ids, tok, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(out, _token_dropout(ids, tok, 0.3, torch.Generator().manual_seed(0)))
    changed = out != ids
    assert bool((out[changed] == tok.mask_token_id).all())
    real = ids != tok.pad_token_id
    ends = real.sum(dim=1) - 1
    assert not changed[:, 0].any() and not changed[torch.arange(len(ids)), ends].any() and not changed[~real].any()
    inner = int(real.sum()) - 2 * len(ids)
    assert 0.25 < int(changed.sum()) / inner < 0.35


@pytest.mark.parametrize("causal", [False, True])
def test_logits_at_selected_positions_give_the_full_model_losses(corpus, causal):
    """SelectiveLM computes the LM head only where a loss needs it: the per-sequence losses equal
    those of the model's own forward over every position."""
    from transformers import AutoTokenizer

    root, _ = corpus
    tok = AutoTokenizer.from_pretrained(str(root / ("causal_lm" if causal else "masked_lm")))
    inner = _model("llama" if causal else "bert", tok).eval()
    torch.manual_seed(1)
    ids = torch.randint(5, len(tok), (4, 20))
    ids[1, 12:] = tok.pad_token_id
    attention = (ids != tok.pad_token_id).long()
    labels = ids.masked_fill(attention == 0, -100) if causal else \
        ids.masked_fill(torch.rand(ids.shape) > 0.3, -100).masked_fill(attention == 0, -100)
    full = sequence_losses(inner(input_ids=ids, attention_mask=attention).logits, labels, causal)
    select, targets = lm_targets(labels, causal)
    [(_, logits)] = SelectiveLM(inner)([{"input_ids": ids, "attention_mask": attention, "select": select}])
    assert logits.shape == (int(select.sum()), len(tok))
    part = selected_losses(logits, targets, select)
    assert torch.allclose(part[0], full[0], atol=1e-4) and torch.equal(part[1], full[1])


@pytest.mark.parametrize("causal", [False, True])
def test_length_buckets_change_the_cost_not_the_result(corpus, causal):
    """pretrain.length_buckets: rows of mixed length go through the body in buckets of similar
    length; hidden states at every token, losses and gradients equal the one-pass forward's."""
    from transformers import AutoTokenizer

    root, _ = corpus
    tok = AutoTokenizer.from_pretrained(str(root / ("causal_lm" if causal else "masked_lm")))
    torch.manual_seed(2)
    inner = _model("llama" if causal else "bert", tok).eval()
    ids = torch.randint(5, len(tok), (40, 24))
    lengths = torch.randint(2, 25, (40,))
    ids[torch.arange(24)[None, :] >= lengths[:, None]] = tok.pad_token_id
    attention = (ids != tok.pad_token_id).long()
    labels = ids.masked_fill(torch.rand(ids.shape) > 0.3, -100).masked_fill(attention == 0, -100)
    select, targets = lm_targets(labels, causal)
    positions = torch.arange(24).expand(40, -1)
    results = []
    for buckets in (1, 4):
        inner.zero_grad()
        group = {"input_ids": ids, "attention_mask": attention, "position_ids": positions, "select": select}
        [(hidden, logits)] = SelectiveLM(inner, buckets)([group])
        loss = selected_losses(logits, targets, select)[0]
        (loss.sum() + alignment.pool(hidden, attention).sum()).backward()
        results.append((hidden, loss, inner.get_input_embeddings().weight.grad.clone()))
    (h1, l1, g1), (h4, l4, g4) = results
    tokens = attention.bool()
    assert h1.shape == h4.shape
    assert torch.allclose(h1[tokens], h4[tokens], atol=1e-5)
    assert torch.allclose(l1, l4, atol=1e-4) and torch.allclose(g1, g4, atol=1e-5)


def _sample_texts() -> list[str]:
    import sys

    sys.path.insert(0, str(SAMPLE))
    from texts import DOCS

    return [d for topics in DOCS.values() for docs in topics.values() for d in docs]


@pytest.mark.parametrize("arch", ["xlm-roberta", "mbert", "llama"])
def test_a_pretrained_checkpoint_keeps_its_tokenizer_and_weights(corpus, tmp_path, arch):
    """model.pretrained_dir: the run uses the checkpoint's own tokenizer (not one trained on
    the corpus), starts from its weights, and the alignment objectives run on it; a checkpoint
    that cannot serve the run is refused with the setting to change."""
    from tiny_models import build_tiny_pretrained
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    from pipeline.config import ConfigError, load_config
    from pipeline.training.model import build_model, check_pretrained
    from pipeline.training.tokenizer import train_tokenizer

    root, manifest = corpus
    src = str(build_tiny_pretrained(tmp_path / arch, arch, _sample_texts()))
    objective = "causal_lm" if arch == "llama" else "masked_lm"
    cfg = load_config(None, [f"model.pretrained_dir={src}", f"model.objective={objective}", "model.max_length=40"])
    assert cfg.tokenizer.pretrained_dir == src
    tok_dir = str(tmp_path / "tokenizer")
    train_tokenizer(manifest, str(root / "corpus"), tok_dir, cfg.tokenizer, objective)
    tok, original = AutoTokenizer.from_pretrained(tok_dir), AutoTokenizer.from_pretrained(src)
    assert tok.get_vocab() == original.get_vocab() and type(tok) is type(original)
    text = "Le marché vend du poisson frais."
    assert tok(text)["input_ids"] == original(text)["input_ids"]

    check_pretrained(cfg.model)
    model = build_model(cfg.model, tok)
    auto = AutoModelForCausalLM if arch == "llama" else AutoModelForMaskedLM
    saved = auto.from_pretrained(src).state_dict()
    assert type(model).__name__ == type(auto.from_pretrained(src)).__name__
    assert all(torch.equal(t, saved[k]) for k, t in model.state_dict().items())

    # LM, TLM and contrastive on the checkpoint, its ids from its own tokenizer
    pair_batch = alignment.tokenize_pairs(_pairs(root, manifest), tok_dir, objective, 40)
    docs = pa.table({"text": ["The market sells fresh fish.", "Le marché vend du poisson."], "lang": ["eng_Latn", "fra_Latn"]})
    lm_batch = tokenize_batch(docs, tok_dir, "masked_lm", 40)  # one padded row per document
    wrapped = SelectiveLM(model)
    out = _micro_step(wrapped, tok, lm_batch, pair_batch, objective == "causal_lm",
                      PretrainConfig(tlm_weight=1.0, contrastive_weight=1.0), torch.Generator().manual_seed(0),
                      torch.device("cpu"), torch.autocast("cpu", enabled=False), True)
    assert {"lm", "tlm", "contrastive"} <= set(out)
    assert all(torch.isfinite(out[k][0]).all() for k in ("lm", "tlm", "contrastive"))
    assert model.get_input_embeddings().weight.grad.norm() > 0

    wrong = "causal_lm" if objective == "masked_lm" else "masked_lm"
    with pytest.raises(ValueError, match="model.objective"):
        check_pretrained(cfg.model.model_copy(update={"objective": wrong}))
    if arch != "llama":  # absolute positions stop at the checkpoint's 64 (rotary ones do not)
        with pytest.raises(ValueError, match="model.max_length"):
            check_pretrained(cfg.model.model_copy(update={"max_length": 65}))
    with pytest.raises(ConfigError, match="tokenizer.pretrained_dir"):
        load_config(None, [f"model.pretrained_dir={src}", f"tokenizer.pretrained_dir={tmp_path}"])



@pytest.mark.parametrize("kind", ["document", "pair"])
def test_a_corrupted_shard_byte_stops_training_before_it_starts(corpus, tmp_path, kind):
    """Every file the manifest lists is checked against its committed sha256 before the
    tokenizer or pretraining reads it: one flipped byte is refused with the file's path."""
    import shutil

    from pipeline.config import PipelineConfig
    from pipeline.corpus.shard import CorruptShardError, verify_corpus
    from pipeline.training.pretrain import pretrain
    from pipeline.training.tokenizer import train_tokenizer

    root, manifest = corpus
    copy = tmp_path / "corpus"
    shutil.copytree(root / "corpus", copy)
    n = verify_corpus(manifest, str(copy))
    assert n == len(manifest["shards"]) + len(manifest["parallel"]["files"]) + len(manifest["unidentified"]["files"])
    entry = (manifest["shards"] if kind == "document" else manifest["parallel"]["files"])[0]
    target = copy / entry["path"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    for run in (lambda: verify_corpus(manifest, str(copy)),
                lambda: train_tokenizer(manifest, str(copy), str(tmp_path / "tok"), TokenizerConfig(vocab_size=500)),
                lambda: pretrain(str(copy), manifest, str(root / "masked_lm"), str(tmp_path / "model"),
                                 PipelineConfig(output_dir=str(tmp_path / "runs")))):
        with pytest.raises(CorruptShardError, match=entry["path"].replace(".", r"\.") + ": sha256"):
            run()
    assert not (tmp_path / "tok").exists() and not (tmp_path / "runs").exists()
