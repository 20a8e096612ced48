"""The promotion gate: a new model version takes the champion alias only if, language by
language, it is no worse than the version holding it (same evaluation suite, same metric).

Rules (`registry.*`): no language the champion was tested on may be missing from the new
version's test; no language may drop by more than `gate_tolerance`; no language may score below
`gate_floor`; the macro average over the languages may not fall. The first version is promoted.
The decision carries every language's scores and delta, for the Prefect artifact, the MLflow
tags and the model card.
"""

from __future__ import annotations

import logging

from .config import RegistryConfig

log = logging.getLogger(__name__)


def scores(eval_report: dict, task_key: str, metric: str) -> dict[str, float]:
    """Per-language value of `metric` in an evaluation report's test section."""
    langs = eval_report.get(task_key, {}).get("languages", {})
    return {lang: float(m[metric]) for lang, m in sorted(langs.items()) if metric in m}


def decide(new: dict[str, float], champion: dict[str, float] | None, cfg: RegistryConfig, metric: str,
           champion_version: int | None = None) -> dict:
    """The gate's decision for scores `new` against the champion's (None: there is none)."""
    macro_new = sum(new.values()) / len(new) if new else 0.0
    out = {"metric": metric, "tolerance": cfg.gate_tolerance, "floor": cfg.gate_floor,
           "champion_version": champion_version, "macro": {"new": round(macro_new, 4)}, "languages": {}}
    reasons: list[str] = []
    if not new:
        reasons.append(f"no per-language {metric} in the new version's evaluation")
    for lang in sorted(set(new) | set(champion or {})):
        row = {"new": new.get(lang), "champion": (champion or {}).get(lang)}
        if row["new"] is not None and row["champion"] is not None:
            row["delta"] = round(row["new"] - row["champion"], 4)
        out["languages"][lang] = row
        if champion is not None and row["new"] is None:
            reasons.append(f"{lang}: tested for the champion, missing from the new version's test")
        elif row.get("delta") is not None and row["delta"] < -cfg.gate_tolerance:
            reasons.append(f"{lang}: {metric} fell {-row['delta']:.4f} (> tolerance {cfg.gate_tolerance})")
        if cfg.gate_floor is not None and row["new"] is not None and row["new"] < cfg.gate_floor:
            reasons.append(f"{lang}: {metric} {row['new']:.4f} below the floor {cfg.gate_floor}")
    if champion is None:
        out["promote"] = not reasons
        out["reasons"] = reasons or ["first version: no champion to compare with"]
        return out
    macro_champion = sum(champion.values()) / len(champion) if champion else 0.0
    out["macro"].update(champion=round(macro_champion, 4), delta=round(macro_new - macro_champion, 4))
    if macro_new < macro_champion - 1e-9:
        reasons.append(f"macro {metric} fell from {macro_champion:.4f} to {macro_new:.4f}")
    out["promote"] = not reasons
    out["reasons"] = reasons or [f"no language fell more than {cfg.gate_tolerance}, macro {metric} "
                                 f"{macro_champion:.4f} -> {macro_new:.4f}"]
    return out


def markdown(decision: dict) -> str:
    """The decision as a model-card / artifact section."""
    verdict = "**promoted**" if decision["promote"] else "**not promoted**"
    against = (f"against version {decision['champion_version']} (the champion)"
               if decision.get("champion_version") else "(no champion yet)")
    lines = [f"Promotion gate on per-language {decision['metric']} {against}: {verdict}.", "",
             *[f"- {r}" for r in decision["reasons"]], "",
             "| language | new | champion | delta |", "|---|---:|---:|---:|"]
    for lang, row in decision["languages"].items():
        cells = ["" if row.get(k) is None else f"{row[k]:.4f}" for k in ("new", "champion", "delta")]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    macro = decision["macro"]
    lines.append("| **macro** | " + " | ".join("" if macro.get(k) is None else f"{macro[k]:.4f}"
                                              for k in ("new", "champion", "delta")) + " |")
    return "\n".join(lines) + "\n"


def champion(client, model_name: str, alias: str):
    """The model version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def version_scores(client, version, task_key: str, metric: str) -> dict[str, float]:
    """Per-language scores of a registered version, from the evaluation report its run logged."""
    import mlflow

    report = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/eval/report.json")
    return scores(report, task_key, metric)
