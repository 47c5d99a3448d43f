"""The toolbox study's rule (docs/METHOD.md, "The toolbox study"), applied to its records.

Reads the sweep ``bench-toolbox`` and prints, per dataset: la's tau chosen on validation (step
1), the headline table (final-epoch test accuracy with many / medium / few, validation
accuracy, seconds per epoch, seconds to 95 % of the final validation accuracy: mean ± std over
seeds, step 2), the verdict on MFM (step 3) and whether the MFM composition replaces MFM's
defaults (step 4). Markdown, for docs/BENCHMARKS.md.

    python bench/toolbox_verdict.py --db bench-toolbox.db
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from mfm.store import Database
from mfm.store import sweeps as sweep_store
from mfm.sweeps.queueing import cell_runs
from mfm.sweeps.table import arm_rows, fmt_mean_std, mean_std

MFM = "mfm"
COMPOSITION = "mfm on la + drw + sam"
BS = "balanced softmax (la, tau 1)"
LA_TAUS = {BS: 1.0, "la tau 0.5": 0.5, "la tau 1.5": 1.5,
           "la tau 2": 2.0}
COLUMNS = (("acc", "test (final)"), ("many", "many"), ("medium", "medium"), ("few", "few"),
           ("val_acc", "validation"))


def split_arm(label: str) -> tuple[str, str]:
    """'ce · fashion-mnist-LT IF100' -> ('ce', 'fashion-mnist-LT IF100'); the grid's own
    method cells read 'fashion-mnist-LT IF100 · mfm'."""
    left, _, right = label.rpartition(" · ")
    if left.endswith("-LT IF100") or left.endswith("-LT IF10"):
        return right, left
    return left, right


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="bench-toolbox.db")
    ap.add_argument("--sweep", default="bench-toolbox")
    args = ap.parse_args()
    db = Database(args.db, upgrade=False)
    rec = sweep_store.get_sweep(db, args.sweep)
    if rec is None:
        raise SystemExit(f"no sweep {args.sweep!r} in {args.db}")
    rows = arm_rows(cell_runs(db, rec.id))
    by_data: dict[str, dict[str, object]] = defaultdict(dict)
    for row in rows:
        arm, data = split_arm(row.arm)
        by_data[data][arm] = row
    for data, arms in by_data.items():
        print(f"\n#### {data}\n")
        val = {a: r.stat("val_acc") for a, r in arms.items()}  # type: ignore[attr-defined]
        # 1. la's tau on validation
        la = {a: val[a] for a in LA_TAUS if val.get(a) is not None}
        chosen = max(la, key=lambda a: la[a][0]) if la else None
        if chosen is not None:
            print(f"Step 1 — la's tau chosen on validation: **{LA_TAUS[chosen]:g}** (" + ", ".join(
                f"tau {LA_TAUS[a]:g}: {fmt_mean_std(la[a])}" for a in la) + ")\n")
        # 2. the table
        head = ["arm", "n", *(h for _, h in COLUMNS), "s / epoch", "s to 95 %"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for arm, row in arms.items():
            n = row.finished  # type: ignore[attr-defined]
            label = f"{arm} ← la (tau chosen on validation)" if arm == chosen else arm
            cells = [fmt_mean_std(row.stat(k), n=n) for k, _ in COLUMNS]  # type: ignore[attr-defined]
            spe = row.stat("seconds_per_epoch")  # type: ignore[attr-defined]
            s95 = row.stat("seconds_to_95")  # type: ignore[attr-defined]
            cells += [fmt_mean_std(spe, scale=1.0, digits=2, n=n),
                      fmt_mean_std(s95, scale=1.0, digits=0, n=n)]
            print(f"| {label} | {n} | " + " | ".join(cells) + " |")
        # 3. the verdict on MFM (validation)
        # every arm of the rule: balanced softmax, and la at the tau chosen on validation
        ranked = {a: v for a, v in val.items() if v is not None
                  and (a not in LA_TAUS or a in (chosen, BS))}
        if MFM in ranked:
            best = max(ranked, key=lambda a: ranked[a][0])
            (m, s), (bm, bs) = ranked[MFM], ranked[best]
            spread = max(s, bs)
            if best == MFM:
                verdict = "MFM is **the best** on validation"
            elif m >= bm - spread:
                verdict = (f"MFM is **within the spread of the best** ({best}: "
                           f"{100 * bm:.1f} vs {100 * m:.1f}, spread {100 * spread:.1f})")
            else:
                verdict = (f"MFM is **behind** the best ({best}) by {100 * (bm - m):.1f} "
                           f"points on validation (spread {100 * spread:.1f})")
            few_m = arms[MFM].stat("few")  # type: ignore[attr-defined]
            few_b = arms[best].stat("few")  # type: ignore[attr-defined]
            if few_m and few_b and best != MFM:
                verdict += (f"; few-shot test accuracy {100 * few_m[0]:.1f} vs "
                            f"{100 * few_b[0]:.1f} ({100 * (few_m[0] - few_b[0]):+.1f})")
            print(f"\nStep 3 — {verdict}.")
        # 4. the composition against MFM's defaults
        if MFM in ranked and COMPOSITION in val and val[COMPOSITION] is not None:
            (m, s), (c, cs) = ranked[MFM], val[COMPOSITION]
            margin = max(s, cs)
            wins = c - m > margin
            print(f"\nStep 4 — {COMPOSITION}: {100 * c:.1f} vs MFM {100 * m:.1f} on validation, "
                  f"margin {100 * margin:.1f}: {'**beats it by more than the spread**' if wins else 'not by more than the spread'}.")
    _ = mean_std  # the table's own statistics (sample std), used through ArmRow.stat


if __name__ == "__main__":
    main()
