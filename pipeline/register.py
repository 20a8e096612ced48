"""Model registration in MLflow: the model folder (safetensors + tokenizer + model card) as
run artifacts, the run's parameters, per-language metrics, and the corpus manifest checksum,
registered as a new version of a named model.

Default store: SQLite under `mlruns/` (no server). Point `registry.tracking_uri` or
MLFLOW_TRACKING_URI at an MLflow server for a shared registry; credentials for its artifact
store come from the environment, never from config files.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import promotion
from .config import PipelineConfig, public_dump
from .evaluation.evaluate import markdown
from .evaluation.retrieval import sections_of
from .redact import redact, redact_uri
from .storage import get_fs, join, local_dir
from .training import tasks

log = logging.getLogger(__name__)


def tracking_uri(configured: str | None) -> str:
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    Path("mlruns").mkdir(exist_ok=True)
    return f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return {k: v[:500] for k, v in out.items()}


def model_card(name: str, eval_report: dict, manifest: dict, manifest_sha256: str, cfg: PipelineConfig,
               decision: dict | None = None) -> str:
    """The model's README.md: a Hugging Face model card (`huggingface_hub.ModelCardData`, whose
    `EvalResult`s build and check the `model-index`: one result per test language) with the
    training corpus and the per-language evaluation tables."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    task = tasks.get(cfg.finetune.task)
    test = eval_report.get(task.key, {})
    languages = sorted(set(manifest.get("languages", {})) | set(test.get("languages", {})))
    results = [EvalResult(task_type=task.pipeline_tag, task_name=task.title,
                          dataset_type=redact_uri(cfg.finetune.test_path), dataset_name="babelforge labelled set",
                          dataset_config=lang, dataset_split="test",
                          metric_type=metric["type"], metric_value=metric["value"], metric_name=metric.get("name"))
               for lang, m in sorted(test.get("languages", {}).items()) for metric in task.card_metrics(m)]
    data = ModelCardData(
        # HF card metadata wants ISO 639 codes: the language part of our `<ISO 639-3>_<script>` labels
        language=sorted({lang.partition("_")[0] for lang in languages}), library_name="transformers",
        pipeline_tag=task.pipeline_tag, tags=["babelforge", "multilingual"], model_name=name,
        eval_results=results or None)
    corpus_rows = "\n".join(
        f"| {lang} | {info['rows']} | {info.get('augmented_rows', 0)} | {info['weight']} |"
        for lang, info in sorted(manifest.get("languages", {}).items())
    )
    arch = ("Llama-style decoder pretrained with causal LM" if cfg.model.objective == "causal_lm"
            else "BERT-style encoder pretrained with masked LM")
    body = (
        f"# {name}\n\n"
        f"A {arch} on the babelforge corpus of run `{cfg.run_name}`, then fine-tuned for {task.title.lower()} "
        f"({cfg.finetune.strategy}). Languages: {', '.join(languages)}.\n\n"
        f"## Training data\n\nCorpus manifest sha256 `{manifest_sha256}`; temperature alpha {manifest.get('alpha')}.\n\n"
        f"| language | documents | of which back-translated | sampling weight |\n|---|---:|---:|---:|\n{corpus_rows}\n\n"
        f"## Evaluation (per language)\n\n{markdown(eval_report)}\n"
        + (f"## Promotion\n\n{promotion.markdown(decision)}\n" if decision else "")
        + "Weights are stored as safetensors.\n"
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


class LineageError(ValueError):
    """The model to register was not made from this run's pretrained model and corpus."""


def check_model_lineage(model_dir: str, pretrained_dir: str | None, manifest_sha256: str, cfg: PipelineConfig) -> dict:
    """What the fine-tuned model at `model_dir` records it was made from (its checkpoint's
    `trainer_meta.json`), checked against this run: the pretrained model it names must be the
    one at `pretrained_dir` now, the corpus its pretraining read the manifest registered with
    it, and its task the configured one. A model that records nothing (an export of an older
    babelforge, or a model made elsewhere) is refused unless `registry.require_lineage` is off."""
    from .storage import exists, model_sha256, read_json

    meta = f"{model_dir.rstrip('/')}/trainer_meta.json"
    made_from = (read_json(meta).get("lineage") or {}) if exists(meta) else {}
    if not made_from:
        if cfg.registry.require_lineage:
            raise LineageError(f"{model_dir}: not registered: the model records no lineage (what it was fine-tuned "
                               f"from), so its tags could name a pretrained model and corpus it was not made from. "
                               f"Fine-tune it again with this version, or set registry.require_lineage: false to "
                               f"register a model made elsewhere")
        log.warning("register: %s records no lineage; registered as unrecorded (registry.require_lineage off)",
                    model_dir)
        return {}
    wrong = []
    if made_from.get("task") and made_from["task"] != cfg.finetune.task:
        wrong.append(f"fine-tuned for task {made_from['task']}, this run's is {cfg.finetune.task}")
    if pretrained_dir and exists(f"{pretrained_dir}/config.json") and made_from.get("pretrained_sha256"):
        now = model_sha256(pretrained_dir)
        if made_from["pretrained_sha256"] != now:
            wrong.append(f"fine-tuned from pretrained model {made_from['pretrained_sha256'][:12]}, this run's "
                         f"{pretrained_dir} is {now[:12]}")
    if made_from.get("manifest_sha256") and made_from["manifest_sha256"] != manifest_sha256:
        wrong.append(f"pretrained on corpus manifest {made_from['manifest_sha256'][:12]}, this run's is "
                     f"{manifest_sha256[:12]}")
    if wrong:
        raise LineageError(f"{model_dir}: not registered: the model was made from other data ({'; '.join(wrong)}). "
                           f"Fine-tune again from this run's pretrained model (a new run_name, or delete the "
                           f"run's <run>-finetune checkpoints)")
    return made_from


def lineage(cfg: PipelineConfig, pretrained_dir: str | None, made_from: dict | None = None) -> dict[str, str]:
    """What a registered version came from: the code (git commit, uncommitted changes), the
    config (sha256 of its JSON), the Prefect flow run, the pretrained model and tokenizer
    it was fine-tuned from (their folders' sha256, and the corpus / tokenizer its pretraining
    checkpoint recorded) and what the fine-tuned model records it was made from (`made_from`,
    checked by `check_model_lineage`: tags `finetuned.<key>`)."""
    import hashlib
    import subprocess

    from .storage import exists, model_sha256, read_json

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    out = {"git_commit": commit or "unknown",
           "git_dirty": "unknown" if commit is None else str(bool(git("status", "--porcelain", "--untracked-files=no"))),
           "config_sha256": hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()}
    try:  # the flow run of the whole DAG (this may run in one of its subflows)
        from prefect.runtime import flow_run

        if flow_run.id:
            out["flow_run_id"] = str(flow_run.root_flow_run_id or flow_run.id)
    except Exception as e:  # no Prefect, or its API unreachable: the version is registered all the same
        log.warning("register: no flow-run id for the lineage tags (%s)", e)
    if pretrained_dir and exists(f"{pretrained_dir}/config.json"):
        out["pretrained_sha256"] = model_sha256(pretrained_dir)
        meta = f"{pretrained_dir}/trainer_meta.json"
        trained_on = (read_json(meta).get("lineage") or {}) if exists(meta) else {}
        out.update({f"pretrained.{k}": str(v) for k, v in trained_on.items() if v})
    out.update({f"finetuned.{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True)
                for k, v in (made_from or {}).items() if v is not None and k != "label2id"})
    if not made_from:
        out["lineage"] = "unrecorded"
    return out


CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@contextmanager
def registry_credentials():
    """The scope of the credentials `without_credentials` hands MLflow: when it ends,
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD are as they were before (removed if
    unset), so neither a later MLflow client of this process pointed at another host nor a child
    process started afterwards gets them. `register`, `compare_versions` and `promote` (the work
    done with a `client_for` client) each run inside one (as a decorator; nested scopes restore in
    turn). While it lasts the variables are the process's: one registry at a time per process."""
    saved = {k: os.environ.get(k) for k in CREDENTIAL_VARS}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def without_credentials(uri: str) -> str:
    """`uri` as MLflow is given it: an http(s) URI's `user:password@` moved into MLflow's own
    credential variables (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, sent as HTTP
    basic auth as the userinfo would have been), so no URL MLflow builds, prints ("View run
    at ...") or puts in an error message carries the password. Other URIs are unchanged. Call it
    inside `registry_credentials`, which takes the variables back when the work is done."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return urlunsplit(parts._replace(netloc=host))


def client_for(cfg: PipelineConfig):
    """An MLflow client on the configured registry, with the fluent API pointed at it too, and
    the URI it was given (without credentials: `without_credentials`); for use inside
    `registry_credentials`."""
    import mlflow
    from mlflow import MlflowClient

    uri = without_credentials(tracking_uri(cfg.registry.tracking_uri))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def registration_key(model_dir: str, eval_report: dict, manifest_sha256: str, cfg: PipelineConfig) -> str:
    """What makes a registration the same one: the registry, the run, the classifier's weights
    and config (not its model card, which registration writes), the corpus and the evaluation."""
    import hashlib

    from .storage import model_sha256

    weights = model_sha256(model_dir)
    key = json.dumps([cfg.registry.model_dump(mode="json"), cfg.run_name, manifest_sha256, eval_report, weights],
                     sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()


def registered_version(client, model_name: str, key: str):
    """The version already registered with `registration_key` `key`, or None."""
    found = client.search_model_versions(f"name = '{model_name}' and tags.registration_key = '{key}'")
    return min(found, key=lambda v: int(v.version)) if found else None


@registry_credentials()
def register(model_dir: str, eval_report: dict, manifest: dict, manifest_sha256: str, cfg: PipelineConfig,
             pretrained_dir: str | None = None) -> dict:
    """Register the classifier at `model_dir` as a new version, with its gate decision. Idempotent:
    the version is tagged with its `registration_key`, and registering the same again (a
    retried flow, on any worker) returns that version instead of a duplicate; the registry is
    the record, so no orchestrator result cache (Prefect pickles those) is needed."""
    import mlflow

    made_from = check_model_lineage(model_dir, pretrained_dir, manifest_sha256, cfg)  # before anything is written
    rcfg = cfg.registry
    client, uri = client_for(cfg)
    key = registration_key(model_dir, eval_report, manifest_sha256, cfg)
    done = registered_version(client, rcfg.model_name, key) if _model_exists(client, rcfg.model_name) else None
    if done is not None:
        decision = mlflow.artifacts.load_dict(f"runs:/{done.run_id}/eval/promotion.json")
        if "promotion" not in done.tags:  # the first attempt stopped before recording its decision
            decision, _ = settle_decision(client, cfg, done.version, decision, rcfg.auto_promote)
            done = client.get_model_version(rcfg.model_name, done.version)
        log.info("register: %s version %s was registered from this model and evaluation already; returned as it is",
                 rcfg.model_name, done.version)
        return {"model_name": rcfg.model_name, "version": int(done.version), "run_id": done.run_id,
                "source": redact_uri(done.source), "tracking_uri": redact_uri(uri), "promotion": decision,
                "promoted": done.tags.get("promotion") == "promoted"}
    exp = client.get_experiment_by_name(rcfg.experiment)
    if exp is None:
        # beside a SQLite store, artifacts go next to the database file (mlruns/artifacts)
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri() \
            if uri.startswith("sqlite:///") else None
        exp_id = client.create_experiment(rcfg.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id

    task = tasks.get(cfg.finetune.task)
    test = eval_report.get(task.key, {})
    # the gate, against the version holding the alias now (before this one exists)
    metric = rcfg.gate_metric or task.gate_metric
    current = promotion.champion(client, rcfg.model_name, rcfg.champion_alias)
    decision = promotion.decide(promotion.scores(eval_report, task.key, metric),
                                promotion.version_scores(client, current, task.key, metric) if current else None,
                                rcfg, metric, int(current.version) if current else None)
    with tempfile.TemporaryDirectory() as card:  # the card and its charts, put beside the weights
        for name, chart in eval_report.get("charts", {}).items():  # the card shows them (<name>.png)
            fs, path = get_fs(chart)
            if fs.exists(path):
                fs.get(path, str(Path(card, f"{name}.png")))
        Path(card, "README.md").write_text(
            model_card(rcfg.model_name, eval_report, manifest, manifest_sha256, cfg, decision), encoding="utf-8")
        for f in Path(card).iterdir():
            fs, path = get_fs(join(model_dir, f.name))
            fs.put_file(str(f), path)
    metrics = task.metrics(test)
    metrics.update({f"lm_loss.{lang}": m["loss"] for lang, m in eval_report.get("lm", {}).get("languages", {}).items()})
    for name, section in sections_of(eval_report):  # retrieval_accuracy.<pair>, retrieval_udhr_accuracy.<pair>
        metrics.update({f"{name}_accuracy.{key}": m["accuracy"] for key, m in section["pairs"].items()})
        metrics[f"{name}_accuracy.macro"] = section["macro_accuracy"]
        metrics.update({f"{name}_margin_accuracy.{key}": m["margin_accuracy"] for key, m in section["pairs"].items()
                        if "margin_accuracy" in m})
        if "macro_margin_accuracy" in section:
            metrics[f"{name}_margin_accuracy.macro"] = section["macro_margin_accuracy"]
    with mlflow.start_run(experiment_id=exp_id, run_name=cfg.run_name) as run:
        mlflow.log_params(flatten(public_dump(cfg)))  # no secret field; URIs without their credentials
        mlflow.log_metrics(metrics)
        lineage_tags = lineage(cfg, pretrained_dir, made_from)
        mlflow.set_tags(lineage_tags)
        if "pretrained_sha256" in lineage_tags:  # the pretrained model and its tokenizer, versioned with this run
            mlflow.log_artifacts(local_dir(pretrained_dir), artifact_path="pretrained")
        mlflow.set_tags({"manifest_sha256": manifest_sha256, "task": task.name,
                         "languages": ",".join(sorted(test.get("languages", {})))})
        mlflow.log_artifacts(local_dir(model_dir), artifact_path="model")
        mlflow.log_dict(redact(eval_report), "eval/report.json")
        mlflow.log_dict(redact(manifest), "corpus/manifest.json")
        mlflow.log_dict(decision, "eval/promotion.json")
        artifact_uri = run.info.artifact_uri
        run_id = run.info.run_id
    try:
        client.get_registered_model(rcfg.model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(rcfg.model_name, description="babelforge multilingual model")
    version = client.create_model_version(
        rcfg.model_name, source=f"{artifact_uri}/model", run_id=run_id,
        tags={"manifest_sha256": manifest_sha256, "run_name": cfg.run_name, "registration_key": key, **lineage_tags},
        description=f"run {cfg.run_name}; {task.title.lower()}: {task.summary(test)}",
    )
    decision, promoted = settle_decision(client, cfg, version.version, decision, rcfg.auto_promote)
    uri = redact_uri(uri)  # never logged or returned (into Prefect task state) with a credential
    log.info("register: %s version %s (run %s) in %s; gate: %s (%s)", rcfg.model_name, version.version, run_id, uri,
             "promoted" if promoted else "passed, not promoted (auto_promote off)" if decision["promote"]
             else "not promoted", "; ".join(decision["reasons"]))
    return {"model_name": rcfg.model_name, "version": int(version.version), "run_id": run_id,
            "source": redact_uri(version.source), "tracking_uri": uri, "promotion": decision, "promoted": promoted}


def _model_exists(client, model_name: str) -> bool:
    import mlflow

    try:
        client.get_registered_model(model_name)
        return True
    except mlflow.exceptions.MlflowException:
        return False


def record_decision(client, model_name: str, version, decision: dict, alias: str, promote: bool) -> None:
    """The gate's decision as tags on the version (and on its run); the alias moved if `promote`.
    The alias moves first and the version's `promotion` tag is written last: `register` retries
    a registration whose version lacks that tag, so a crash on the way is redone, never reported
    as a promotion that did not happen."""
    if promote:
        client.set_registered_model_alias(model_name, alias, str(version))
    tags = {"promotion.reasons": "; ".join(decision["reasons"])[:5000],
            "promotion.against": str(decision.get("champion_version") or ""),
            "promotion.deltas": json.dumps({k: v.get("delta") for k, v in decision["languages"].items()})[:5000],
            "promotion": "promoted" if promote else "passed" if decision["promote"] else "rejected"}  # last
    mv = client.get_model_version(model_name, str(version))
    for k, v in tags.items():
        client.set_tag(mv.run_id, k, v)
    for k, v in tags.items():
        client.set_model_version_tag(model_name, str(version), k, v)


def promotion_lock_folder(cfg: PipelineConfig) -> str:
    """Where the promotion lock of `cfg.registry.model_name` lives: `registry.lock_dir`, else
    beside a SQLite store's database, else under `<output_dir>/.registry-locks`."""
    from .lock import slug

    rcfg = cfg.registry
    base = rcfg.lock_dir
    if not base:
        uri = tracking_uri(rcfg.tracking_uri)
        if uri.startswith("sqlite:///"):
            base = str(Path(uri.removeprefix("sqlite:///")).parent / ".registry-locks")
        else:
            base = join(cfg.output_dir, ".registry-locks")
            if (redact_uri(uri), base) not in _warned_lock_dir:
                _warned_lock_dir.add((redact_uri(uri), base))
                log.warning("register: the promotion lock of %s is under %s because registry.lock_dir is not set: "
                            "runs with another output_dir that register into the same MLflow server (%s) take "
                            "another lock, so two of their registrations can both promote against one champion. "
                            "If more than one output_dir registers there, set registry.lock_dir to a folder they "
                            "all share.", rcfg.model_name, redact_uri(base), redact_uri(uri))
    return join(base, slug(rcfg.model_name))


_warned_lock_dir: set[tuple[str, str]] = set()  # (tracking URI, lock folder) warned about once


def settle_decision(client, cfg: PipelineConfig, version, decision: dict, auto: bool,
                    forced: bool = False) -> tuple[dict, bool]:
    """Record the gate's decision on `version` and move the alias, atomically with respect to
    every other registration or promotion of the model: under its promotion lock
    (`promotion_lock_folder`, a lease as in pipeline/lock.py), the champion is read again, and if
    another version took the alias since `decision` was made, the gate is run again against that
    one (this version's scores as in `decision`) and the new decision is the one recorded (tags,
    the run's eval/promotion.json; the model card keeps the first comparison). The alias moves
    if `forced`, or if the gate passes and `auto`. Returns (the decision recorded, promoted)."""
    from .lock import hold

    rcfg = cfg.registry
    with hold(promotion_lock_folder(cfg), ttl_s=cfg.lock.ttl_seconds, heartbeat_s=cfg.lock.heartbeat_seconds,
              wait_s=cfg.lock.promotion_wait_seconds, related=False,
              what=f"the promotion lock of registered model {rcfg.model_name}",
              purpose=f"promotion decision of {rcfg.model_name} version {version}"):
        current = promotion.champion(client, rcfg.model_name, rcfg.champion_alias)
        now = int(current.version) if current is not None else None
        if not forced and now != decision.get("champion_version") and now != int(version):
            metric = decision["metric"]
            scores = {lang: row["new"] for lang, row in decision["languages"].items() if row.get("new") is not None}
            champion_scores = (promotion.version_scores(client, current, tasks.get(cfg.finetune.task).key, metric)
                               if current is not None else None)
            redone = {**promotion.decide(scores, champion_scores, rcfg, metric, now),
                      "rechecked_against": now, "first_against": decision.get("champion_version")}
            log.warning("register: %s version %s was judged against version %s, but the alias %s moved to %s "
                        "meanwhile; the gate ran again against %s: %s", rcfg.model_name, version,
                        decision.get("champion_version"), rcfg.champion_alias, now, now,
                        "passes" if redone["promote"] else "; ".join(redone["reasons"]))
            decision = redone
            client.log_dict(client.get_model_version(rcfg.model_name, str(version)).run_id, decision,
                            "eval/promotion.json")
        promote = forced or (decision["promote"] and auto)
        record_decision(client, rcfg.model_name, version, decision, rcfg.champion_alias, promote)
    return decision, promote


@registry_credentials()
def compare_versions(cfg: PipelineConfig, version: int, against: int | None = None) -> dict:
    """The gate's decision for a registered `version` against `against` (default: the champion)."""
    client, _ = client_for(cfg)
    rcfg = cfg.registry
    task = tasks.get(cfg.finetune.task)
    metric = rcfg.gate_metric or task.gate_metric
    new = client.get_model_version(rcfg.model_name, str(version))
    other = client.get_model_version(rcfg.model_name, str(against)) if against else \
        promotion.champion(client, rcfg.model_name, rcfg.champion_alias)
    if other is not None and str(other.version) == str(version):
        raise ValueError(f"{rcfg.model_name} version {version} is the version compared against "
                         f"({'--against' if against else 'alias ' + rcfg.champion_alias})")
    return promotion.decide(promotion.version_scores(client, new, task.key, metric),
                            promotion.version_scores(client, other, task.key, metric) if other else None,
                            rcfg, metric, int(other.version) if other else None)


@registry_credentials()
def promote(cfg: PipelineConfig, version: int, force: bool = False) -> dict:
    """Move the champion alias to `version` if it passes the gate against the champion (or
    regardless with `force`, recorded as such)."""
    client, _ = client_for(cfg)
    current = promotion.champion(client, cfg.registry.model_name, cfg.registry.champion_alias)
    if current is not None and str(current.version) == str(version):
        raise ValueError(f"{cfg.registry.model_name} version {version} already holds alias "
                         f"{cfg.registry.champion_alias}")
    decision = compare_versions(cfg, version)
    if force and not decision["promote"]:
        decision = {**decision, "reasons": ["forced by hand: " + "; ".join(decision["reasons"])]}
    go = decision["promote"] or force
    decision, go = settle_decision(client, cfg, version, {**decision, "promote": go}, True, forced=force)
    return {**decision, "promoted": go}
