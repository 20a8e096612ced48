import pytest
from conftest import ROOT, write

from pipeline.config import ConfigError, PipelineConfig, load_yaml


def test_defaults_are_valid_and_serialisable():
    cfg = PipelineConfig()
    again = PipelineConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg
    assert cfg.path("corpus") == "runs/demo/corpus"


def test_demo_config_loads():
    cfg = load_yaml(ROOT / "configs" / "demo.yaml")
    assert "swh" in cfg.corpus.langid.languages   # "sw" in the file, normalised
    assert [m.path for m in cfg.corpus.langid.models] == ["lid.176", "babelforge"]


def test_bad_value_names_file_and_field(tmp_path):
    f = write(tmp_path / "bad.yaml", "pretrain:\n  max_steps: -3\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(f)
    assert "bad.yaml" in str(e.value) and "pretrain.max_steps" in str(e.value)


def test_unknown_field_is_rejected(tmp_path):
    f = write(tmp_path / "typo.yaml", "corpus:\n  shard:\n    alhpa: 0.5\n")
    with pytest.raises(ConfigError, match=r"corpus\.shard\.alhpa"):
        load_yaml(f)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(write(tmp_path / "x.yaml", "a: [1, 2"))
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")


def test_every_shipped_config_loads_and_the_gpu_template_is_125m():
    import sys

    import torch

    from pipeline.training.model import build_clm

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_yaml(path)                     # raises naming the file and field
    cfg = load_yaml(ROOT / "configs" / "gpu-125m.yaml")
    assert cfg.ray.use_gpu and cfg.model.objective == "causal_lm" and cfg.pretrain.precision == "bf16"
    sys.path.insert(0, str(ROOT / "bench"))
    from train_gpu import VocabOnly

    with torch.device("meta"):              # shapes only, no memory
        model = build_clm(cfg.model, VocabOnly(cfg.tokenizer.vocab_size))
    assert 115e6 < sum(p.numel() for p in model.parameters()) < 135e6
