"""Pictures for people: kept and rejected documents per language, as a PNG."""

from __future__ import annotations

import io

from .storage import atomic_open


def corpus_chart(report: dict, uri: str) -> str:
    """Horizontal stacked bars per language: kept, then rejected by stage-level reason
    groups. Written atomically to `uri` (local or remote); returns `uri`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = sorted(report["languages"], key=lambda l: report["languages"][l]["input"])
    reasons = sorted({r for info in report["languages"].values() for r in info["rejected"]})
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * len(langs) + 1.2)), dpi=110)
    kept = [report["languages"][l]["kept"] for l in langs]
    ax.barh(langs, kept, color="#2e7d32", label="kept")
    und = [report["languages"][l].get("unidentified", 0) for l in langs]
    ax.barh(langs, und, left=kept, color="#9e9e9e", label="unidentified (kept apart)")
    left = [a + b for a, b in zip(kept, und)]
    cmap = plt.get_cmap("tab20")
    palette = [cmap(i) for i in range(20) if i not in (4, 5)]  # no greens: green means kept
    for i, reason in enumerate(reasons):
        values = [report["languages"][l]["rejected"].get(reason, 0) for l in langs]
        ax.barh(langs, values, left=left, color=palette[i % len(palette)], label=f"rejected: {reason}")
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("documents")
    ax.set_title(f"Corpus: {report['input']} in = {report['kept']} kept + {report.get('unidentified', 0)} "
                 f"unidentified + {report['rejected']} rejected")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_open(uri, "wb") as f:
        f.write(buf.getvalue())
    return uri
