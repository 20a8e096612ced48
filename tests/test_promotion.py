"""The promotion gate: per-language comparison with the champion, the alias moved only through
it, the decision on the version (MLflow tags), its run, the model card and the CLI."""

from __future__ import annotations

import pytest

from pipeline.config import PipelineConfig, RegistryConfig
from pipeline.promotion import decide

LANGS = ["eng_Latn", "fra_Latn", "yor_Latn"]


def test_the_gate_rules():
    cfg = RegistryConfig(gate_tolerance=0.02)
    champion = {"eng_Latn": 0.60, "fra_Latn": 0.50, "yor_Latn": 0.30}
    first = decide(champion, None, cfg, "macro_f1")
    assert first["promote"] and "first version" in first["reasons"][0]
    better = decide({"eng_Latn": 0.62, "fra_Latn": 0.49, "yor_Latn": 0.35}, champion, cfg, "macro_f1", 1)
    assert better["promote"] and better["languages"]["fra_Latn"]["delta"] == -0.01  # within tolerance
    # English up a lot, the low-resource language down: the macro average rises, the gate says no
    trade = decide({"eng_Latn": 0.80, "fra_Latn": 0.50, "yor_Latn": 0.25}, champion, cfg, "macro_f1", 1)
    assert not trade["promote"] and any(r.startswith("yor_Latn: macro_f1 fell 0.0500") for r in trade["reasons"])
    dropped = decide({"eng_Latn": 0.70, "fra_Latn": 0.60}, champion, cfg, "macro_f1", 1)
    assert not dropped["promote"] and any("yor_Latn: tested for the champion, missing" in r for r in dropped["reasons"])
    flat = decide({"eng_Latn": 0.59, "fra_Latn": 0.49, "yor_Latn": 0.30}, champion, cfg, "macro_f1", 1)
    assert not flat["promote"] and any(r.startswith("macro macro_f1 fell") for r in flat["reasons"])
    floored = decide({"eng_Latn": 0.9, "fra_Latn": 0.9, "yor_Latn": 0.31}, champion,
                     RegistryConfig(gate_floor=0.4), "macro_f1", 1)
    assert not floored["promote"] and any("below the floor 0.4" in r for r in floored["reasons"])


def _report(scores: dict[str, float]) -> dict:
    langs = {lang: {"n": 20, "accuracy": s + 0.1, "macro_f1": s, "majority_accuracy": 0.25} for lang, s in scores.items()}
    return {"classification": {"labels": ["a", "b"], "chance_accuracy": 0.5, "languages": langs,
                               "overall": {"n": 60, "micro_accuracy": 0.5, "macro_accuracy": 0.5, "macro_f1": 0.4}}}


def test_versions_take_the_champion_alias_only_through_the_gate(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from flows.cli import main
    from pipeline.register import register

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig.model_validate({"run_name": "gate", "output_dir": str(tmp_path / "runs"),
                                         "registry": {"tracking_uri": uri, "model_name": "gate-model", "require_lineage": False}})
    manifest = {"alpha": 0.3, "languages": {lang: {"rows": 10, "weight": 1 / 3} for lang in LANGS}}
    runs = [{"eng_Latn": 0.60, "fra_Latn": 0.50, "yor_Latn": 0.30},   # v1: first, promoted
            {"eng_Latn": 0.80, "fra_Latn": 0.55, "yor_Latn": 0.22},   # v2: yor_Latn regresses
            {"eng_Latn": 0.62, "fra_Latn": 0.52, "yor_Latn": 0.33}]   # v3: better everywhere
    infos = []
    for i, scores in enumerate(runs):
        model_dir = tmp_path / f"model{i}"
        model_dir.mkdir()
        (model_dir / "config.json").write_text("{}")
        infos.append(register(str(model_dir), _report(scores), manifest, "0" * 64, cfg))
        card = (model_dir / "README.md").read_text()
        assert "## Promotion" in card and "| yor_Latn |" in card
    assert [(i["version"], i["promoted"]) for i in infos] == [(1, True), (2, False), (3, True)]
    assert "yor_Latn: macro_f1 fell 0.0800" in "; ".join(infos[1]["promotion"]["reasons"])
    assert infos[2]["promotion"]["champion_version"] == 1  # v3 was compared with v1, not with v2

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("gate-model", "champion").version) == "3"
    v2 = client.get_model_version("gate-model", "2")
    assert v2.tags["promotion"] == "rejected" and v2.tags["promotion.against"] == "1"
    assert client.get_run(v2.run_id).data.tags["promotion"] == "rejected"

    # humans: compare, and promote (refused by the gate, then forced, recorded as forced)
    sets = ["--set", f"registry.tracking_uri={uri}", "--set", "registry.model_name=gate-model"]
    assert main(["compare", "--version", "2", "--against", "1", *sets]) == 0
    assert main(["promote", "--version", "2", *sets]) == 1
    assert str(client.get_model_version_by_alias("gate-model", "champion").version) == "3"
    assert main(["promote", "--version", "2", "--force", *sets]) == 0
    assert str(client.get_model_version_by_alias("gate-model", "champion").version) == "2"
    assert client.get_model_version("gate-model", "2").tags["promotion.reasons"].startswith("forced by hand")
    with pytest.raises(SystemExit):
        main(["promote", *sets])  # --version is required


def test_a_retried_registration_returns_the_version_instead_of_a_duplicate(tmp_path, monkeypatch, prefect_api):
    """register-model is idempotent in the registry itself (each version tagged with its key:
    registry, run, weights, evaluation): a flow retried after its registration succeeded gets the
    same version back, and no Prefect result is persisted (Prefect pickles those: a writable
    result store would run code on a cache hit)."""
    from mlflow import MlflowClient
    from prefect import flow

    from tasks import run_stage, stage
    from tasks.register import register_task

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig.model_validate({"run_name": "retry", "output_dir": str(tmp_path / "runs"),
                                         "registry": {"tracking_uri": uri, "model_name": "retry-model", "require_lineage": False}})
    manifest = {"alpha": 0.3, "languages": {lang: {"rows": 10, "weight": 1 / 3} for lang in LANGS}}
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights-1")

    @flow
    def registration(report: dict) -> dict:
        return run_stage(register_task, cfg, str(model_dir), report, manifest, "1" * 64, cfg)

    report = _report({"eng_Latn": 0.6, "fra_Latn": 0.5, "yor_Latn": 0.3})
    first, again = registration(report), registration(report)  # the second as a retried flow would
    assert first["version"] == again["version"] == 1
    (model_dir / "model.safetensors").write_bytes(b"weights-2")  # other weights: a new version
    assert registration(report)["version"] == 2
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert len(client.search_model_versions("name='retry-model'")) == 2
    staged = stage(register_task, cfg)
    assert staged.persist_result is False and staged.cache_key_fn is None

    # a registration that stopped after creating its version, before recording the gate's decision:
    # the retry records it (and moves the alias) instead of registering a duplicate
    for k in ("promotion", "promotion.reasons", "promotion.against", "promotion.deltas"):
        client.delete_model_version_tag("retry-model", "2", k)
    client.delete_registered_model_alias("retry-model", "champion")
    again = registration(report)
    assert again["version"] == 2 and len(client.search_model_versions("name='retry-model'")) == 2
    assert client.get_model_version("retry-model", "2").tags["promotion"] in ("promoted", "rejected", "passed")
