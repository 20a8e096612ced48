"""Pictures for people: kept and rejected documents per language, and per-language result
charts (grouped bars with a baseline), as PNG files."""

from __future__ import annotations

import io

from .storage import atomic_open


def save_png(fig, uri: str) -> str:
    """Render a matplotlib figure to PNG, close it, and write it atomically to `uri`."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_open(uri, "wb") as f:
        f.write(buf.getvalue())
    return uri


def _bars(ax, y: list[float], left: list[float], width: list[float], color, label: str, height: float = 0.8):
    """Horizontal bars as one PolyCollection (one artist per series: a chart of 500 languages
    draws in a fraction of a second, where one Rectangle per bar took half a minute)."""
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    h = height / 2
    verts = [[(l, yy - h), (l + w, yy - h), (l + w, yy + h), (l, yy + h)] for yy, l, w in zip(y, left, width) if w > 0]
    if verts:
        ax.add_collection(PolyCollection(verts, facecolors=[color], edgecolors="none"))
    return Patch(color=color, label=label)


def chart_languages(info: dict, limit: int) -> list[str]:
    """The languages a chart shows, bottom to top: all of them by input size, or past `limit`
    the `limit` with the lowest kept share (the ones to look at; every language is in the
    report's table). A chart of 500 bars is 80 inches tall and unreadable."""
    langs = sorted(info, key=lambda l: info[l]["input"])
    if len(langs) <= limit:
        return langs
    share = lambda l: info[l]["kept"] / max(info[l]["input"], 1)  # noqa: E731
    worst = sorted(langs, key=lambda l: (share(l), -info[l]["input"]))[:limit]
    return sorted(worst, key=lambda l: (-share(l), info[l]["input"]))


def corpus_chart(report: dict, uri: str, limit: int = 60) -> str:
    """Horizontal stacked bars per language: kept, unidentified, then rejected by reason (at
    most `limit` languages: `chart_languages`). Written atomically to `uri` (local or remote);
    returns `uri`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = report["languages"]
    langs = chart_languages(info, limit)
    reasons = sorted({r for v in info.values() for r in v["rejected"]})
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.16 * len(langs) + 1.2)), dpi=110)
    y = list(range(len(langs)))
    kept = [info[l]["kept"] for l in langs]
    und = [info[l].get("unidentified", 0) for l in langs]
    handles = [_bars(ax, y, [0] * len(langs), kept, "#2e7d32", "kept"),
               _bars(ax, y, kept, und, "#9e9e9e", "unidentified (kept apart)")]
    left = [a + b for a, b in zip(kept, und)]
    cmap = plt.get_cmap("tab20")
    palette = [cmap(i) for i in range(20) if i not in (4, 5, 14, 15)]  # no greens, no greys
    for i, reason in enumerate(reasons):
        values = [info[l]["rejected"].get(reason, 0) for l in langs]
        handles.append(_bars(ax, y, left, values, palette[i % len(palette)], f"rejected: {reason}"))
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(y, langs, fontsize=7 if len(langs) > 40 else 9)
    ax.set_ylim(-0.6, len(langs) - 0.4)
    ax.set_xlim(0, max(left + [1]) * 1.02)
    ax.set_xlabel("documents")
    shown = "" if len(langs) == len(info) else \
        f"\n{len(langs)} of {len(info)} languages: the lowest kept share (all in report.md)"
    ax.set_title(f"Corpus: {report['input']} in = {report['kept']} kept + {report.get('unidentified', 0)} "
                 f"unidentified + {report['rejected']} rejected{shown}", fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    height = fig.get_size_inches()[1]  # fixed margins in inches: tight_layout lays out every label again
    fig.subplots_adjust(left=0.11, right=0.98, top=1 - 0.6 / height, bottom=0.5 / height)
    return save_png(fig, uri)


def language_bars(series: dict[str, dict[str, float]], uri: str, title: str, xlabel: str,
                  baseline: dict[str, float] | None = None, baseline_label: str = "baseline",
                  xlim: tuple[float, float] | None = None) -> str:
    """Grouped horizontal bars, one group per language (rows), one bar per series (e.g. two
    training arms, or trained vs at initialisation), with an optional per-language baseline
    drawn as a black tick (majority-label accuracy, chance). Written atomically to `uri`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    langs = sorted({lang for values in series.values() for lang in values}, reverse=True)
    k = max(1, len(series))
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.22 * len(langs) * (1 + 0.35 * (k - 1)) + 1.2)), dpi=110)
    cmap = plt.get_cmap("tab10")
    height = 0.8 / k
    handles = []
    for j, (name, values) in enumerate(series.items()):
        y = [i - 0.4 + height * (j + 0.5) for i in range(len(langs))]
        widths = [values.get(lang, 0.0) or 0.0 for lang in langs]
        handles.append(_bars(ax, y, [0.0] * len(langs), widths, cmap(j % 10), name, height * 0.9))
    top = max([v or 0.0 for values in series.values() for v in values.values()] + [1e-9])
    if baseline:
        for i, lang in enumerate(langs):
            if lang in baseline:
                ax.plot([baseline[lang]] * 2, [i - 0.45, i + 0.45], color="black", linewidth=1.5)
        handles.append(Line2D([0], [0], color="black", linewidth=1.5, label=baseline_label))
        top = max([top] + list(baseline.values()))
    ax.set_yticks(range(len(langs)), langs, fontsize=7 if len(langs) > 40 else 9)
    ax.set_ylim(-0.6, len(langs) - 0.4)
    ax.set_xlim(*(xlim or (0, top * 1.05)))
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    height_in = fig.get_size_inches()[1]
    fig.subplots_adjust(left=0.2, right=0.98, top=1 - 0.5 / height_in, bottom=0.5 / height_in)
    return save_png(fig, uri)


def png_data_uri(uri: str) -> str:
    """A PNG as a data: URI, for markdown that must carry its picture (Prefect artifacts)."""
    import base64

    from .storage import get_fs

    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()
