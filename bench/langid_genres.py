"""Language ID on a genre left out of everything: each backend alone, the weighted ensemble, and
the stacked combiner, per language (issue 26).

    # 1. the babelforge model without each genre (one thread each, ~3.5 min a model here)
    for g in ntrex bible udhr tatoeba lingua-sentences; do
      babelforge langid train $(for h in ntrex bible udhr tatoeba lingua-sentences; do \
        [ $h != $g ] && echo ../shared/data/$h; done) --out runs/lid-without-$g; done
    # 2. the tables
    .venv/bin/python bench/langid_genres.py --models runs --out bench/langid_genres.json

For genre g the babelforge member is the model trained without g, and the combiner is fitted on
the other genres' documents only (read by their own left-out models): nothing that decides a
label on g has seen g. Documents: 10 consecutive sentences (verses; UDHR: 3 paragraphs), up to
100 per language. A document is *right* when its label (language and script) is the truth,
*und* when it is left unidentified; documents/s is each backend's time on the same documents.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import language_codes as L  # noqa: E402
from pipeline.config import LangIdConfig, LidModel  # noqa: E402
from pipeline.corpus import langid, lid_backends, lid_combine, lid_fit  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
GENRES = {"ntrex": "ntrex", "bible": "bible", "udhr": "udhr", "tatoeba": "tatoeba", "lingua": "lingua-sentences"}


def tally(golds, labels, bars=None):
    out = defaultdict(Counter)
    for i, (g, l) in enumerate(zip(golds, labels)):
        if L.is_unidentified(l) or (bars is not None and bars[i]):
            out[g]["und"] += 1
        else:
            out[g]["right" if l == g else "wrong"] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True, help="folder with lid-without-<genre>/model.ftz")
    ap.add_argument("--out", default="bench/langid_genres.json")
    ap.add_argument("--heliport", action="store_true", help="also heliport (optional extra)")
    ap.add_argument("--write-combiners", metavar="DIR", help="also fit the combiners on all five genres and "
                    "write them as DIR/combiner.<members>.json (pipeline/corpus/lid_models: the shipped ones)")
    a = ap.parse_args()
    models_dir = Path(a.models)
    names = ["lid.176", "babelforge"] + (["heliport"] if a.heliport else [])
    docs, rows, speed = {}, {}, defaultdict(float)
    for g, folder in GENRES.items():
        docs[g] = lid_fit.genre_documents(str(DATA / folder), 3 if g == "udhr" else 10, 100)
        left = str(models_dir / f"lid-without-{folder}" / "model.ftz")
        members = [LidModel(path="lid.176"), LidModel(path=left, max_chars=300)] + \
            ([LidModel(path="heliport")] if a.heliport else [])
        texts = [t for _, t in docs[g]]
        scripts, lines = langid.detect_scripts(texts), langid._lines(texts, 2000)
        answers = []
        for name, m in zip(names, members):
            t = time.perf_counter()
            answers.append(lid_backends.backend(m).top_k(lines, scripts, langid.CANDIDATES))
            speed[name] += time.perf_counter() - t
        knows = [lid_backends.backend(m).knows for m in members]
        rows[g] = [(lid_combine.candidates([x[i] for x in answers], knows, scripts[i]), gold, scripts[i],
                    [x[i] for x in answers]) for i, (gold, _) in enumerate(docs[g])]
        rows[g + ":weighted"] = (members, texts)
    n_docs = sum(len(d) for d in docs.values())
    report = {"documents": n_docs, "docs_per_second": {n: round(n_docs / s) for n, s in speed.items()}, "genres": {}}
    for g in GENRES:
        golds = [gold for _, gold, _, _ in rows[g]]
        res = {}
        for i, n in enumerate(names):
            res[f"{n} alone"] = tally(golds, [lid_combine.final_label(ans[i][0][0], s) if ans[i] else "und"
                                              for _, _, s, ans in rows[g]])
        members, texts = rows[g + ":weighted"]
        cfg = LangIdConfig(combiner="weighted", models=[m.model_copy(update={"weight": w})
                                                        for m, w in zip(members[:2], (0.6, 0.4))])
        t = time.perf_counter()
        labs, scores, _ = langid.predict_top(texts, cfg, 3, cfg.max_chars)
        speed["weighted ensemble (lid.176 + babelforge)"] += time.perf_counter() - t
        res["weighted ensemble (lid.176 + babelforge), default"] = tally(
            golds, labs, [sc < langid.threshold(l, cfg) for l, sc in zip(labs, scores)])
        for used in (names[:2], names):
            idx = [names.index(n) for n in used]
            knows = [lid_backends.backend(m).knows for m in [members[i] for i in idx]]
            sub = {k: [(lid_combine.candidates([ans[i] for i in idx], knows, s), gold) for _, gold, s, ans in rows[k]]
                   for k in GENRES}
            comb = lid_fit.fit_across_genres({k: v for k, v in sub.items() if k != g}, used)
            for bar, tag in ((comb.abstain_below, f"bar {comb.abstain_below}, chosen across the other genres (und <= 5% where a member names the truth)"),
                             (0.0, "never abstains")):
                decided = [lid_combine.decide(c, comb.probabilities(c), bar, s)[0]
                           for (c, _), (_, _, s, _) in zip(sub[g], rows[g])]
                res[f"stacked combiner ({' + '.join(used)}), {tag}"] = tally(golds, decided)
            if len(used) == len(names):
                break
        report["genres"][g] = {k: {**lid_fit.summary(v), "per_language": {l: dict(c) for l, c in sorted(v.items())}}
                               for k, v in res.items()}
        print(g, {k: {x: y for x, y in v.items() if x != "per_language"} for k, v in report["genres"][g].items()},
              flush=True)
    if a.write_combiners:
        for used in (names[:2], names):
            idx = [names.index(n) for n in used]
            sub = {}
            for k in GENRES:
                members = rows[k + ":weighted"][0]
                knows = [lid_backends.backend(members[i]).knows for i in idx]
                sub[k] = [(lid_combine.candidates([ans[i] for i in idx], knows, s), gold) for _, gold, s, ans in rows[k]]
            comb = lid_fit.fit_across_genres(sub, used, meta={
                "fitted_on": {k: len(v) for k, v in sub.items()},
                "made_by": "bench/langid_genres.py --write-combiners (babelforge member: the model trained "
                           "without each genre, on that genre's documents)"})
            path = Path(a.write_combiners) / Path(lid_combine.combiner_file(used)).name
            path.write_text(json.dumps(comb.to_json(), indent=0) + "\n", encoding="utf-8")
            print("wrote", path, "bar", comb.abstain_below)
            if len(used) == len(names):
                break
    report["docs_per_second"] = {n: round(n_docs / s) if s else None for n, s in speed.items()}
    print(report["docs_per_second"])
    Path(a.out).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
