"""Per-class accuracy against training count for several methods of one study, as a PNG.

    pip install -e '.[plot]'
    python bench/plot_per_class.py --spec "digits-LT IF10" --methods ce,balanced_softmax,mfm \
        --out docs/per_class_digits_lt.png

Reads the study database of bench/longtail.py; averages the final-epoch per-class accuracy
over seeds. Classes are ordered head to tail; the x axis is labelled with training counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collect(db_path: str, profile: str, spec: str, methods: list[str]) -> tuple[list[int],
                                                                              dict[str, list[float]]]:
    from mfm.store import Database, repo

    with Database(db_path) as db:
        runs = [r for r in repo.list_runs(db) if r.status == "completed" and r.name
                and r.name.startswith(f"{profile}/{spec}/")]
        counts: list[int] = []
        curves: dict[str, list[float]] = {}
        for m in methods:
            mine = [r for r in runs if r.name.split("/")[2] == m]
            if not mine:
                raise SystemExit(f"no completed {m} runs for {spec!r} in {db_path}")
            vecs = [repo.get_class_accuracy(db, r.id) for r in mine]
            counts = mine[0].class_counts["train"]
            curves[m] = [100 * sum(v[c] for v in vecs) / len(vecs) for c in range(len(counts))]
    return counts, curves


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=str(ROOT / "bench-longtail.db"))
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--methods", default="ce,balanced_softmax,mfm")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts, curves = collect(args.db, args.profile, args.spec, args.methods.split(","))
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    width = 0.8 / len(curves)
    for k, (m, acc) in enumerate(curves.items()):
        ax.bar([i + (k - (len(curves) - 1) / 2) * width for i in range(len(order))],
               [acc[c] for c in order], width=width, label=m)
    ax.set_xticks(range(len(order)), [f"{c}\n{counts[c]}" for c in order], fontsize=8)
    ax.set_xlabel("class (top) and its training count (bottom), head → tail")
    ax.set_ylabel("final-epoch test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{args.spec}: per-class accuracy, mean over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
