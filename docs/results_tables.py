"""Markdown tables of docs/results.md from a profile's analyze tables.

Run after `just all`:  python3 docs/results_tables.py artifacts/cpu/analyze > tables.md
Needs pyarrow and pandas (pip install pyarrow pandas).
"""
import sys

import pandas as pd
import pyarrow.parquet as pq

ARCHS = ["alexnet", "vgg16", "densenet121"]
METHODS = ["mc_dropout", "mc_dropconnect", "ensemble"]


def read(d, name):
    return pq.read_table(f"{d}/{name}.parquet").to_pandas()


def read_optional(d, name):
    """A table of the extra analyses, or None when the profile has none."""
    try:
        t = read(d, name)
    except FileNotFoundError:
        return None
    return t if len(t) else None


def fmt(v, pct=False):
    if v is None or pd.isna(v):
        return "–"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def main(d):
    m = read(d, "metrics")
    test = m[m.split == "test"]
    valid = m[m.split == "valid"]
    print("### Test split at n = 1, 5, 10, 15 (error, ECE, soft accuracy in %)\n")
    rows = []
    for a in ARCHS:
        for meth in METHODS:
            for n in [1, 5, 10, 15]:
                r = test[(test.arch == a) & (test.method == meth) & (test.n == n)]
                if r.empty:
                    continue
                r = r.iloc[0]
                rows.append([a, meth, n, fmt(r.error, True), fmt(r.nll), fmt(r.ece, True),
                             fmt(r.brier), fmt(r.jsd), fmt(r.soft_accuracy, True)])
    print(table(["arch", "method", "n", "error", "NLL", "ECE", "Brier", "JSD", "soft acc"], rows))

    print("\n### Best n per combination (chosen on valid: lowest NLL), its test numbers\n")
    rows = []
    for a in ARCHS:
        for meth in METHODS:
            v = valid[(valid.arch == a) & (valid.method == meth)]
            if v.empty:
                continue
            n = int(v.loc[v.nll.idxmin()].n)
            r = test[(test.arch == a) & (test.method == meth) & (test.n == n)].iloc[0]
            rows.append([a, meth, n, fmt(1 - r.error, True), fmt(r.nll), fmt(r.ece, True)])
    print(table(["arch", "method", "n (valid)", "test accuracy", "NLL", "ECE"], rows))

    print("\n### Numbers behind the claims (test; pp = percentage points)\n")
    rows = []
    for a in ARCHS:
        for meth in METHODS:
            t = test[(test.arch == a) & (test.method == meth)].set_index("n").sort_index()
            if t.empty:
                continue
            first, last = t.loc[t.index.min()], t.loc[t.index.max()]
            best_gain = first.error - t.error.min()
            rows.append([a, meth, f"{100 * (last.error - first.error):+.1f}",
                         f"{100 * best_gain:.1f} (n = {int(t.error.idxmin())})",
                         f"{100 * (last.ece - first.ece):+.1f}", f"{last.jsd - first.jsd:+.4f}",
                         f"{100 * (last.soft_accuracy - first.soft_accuracy):+.1f}"])
    print(table(["arch", "method", "Δ error 1→15 (pp)", "best gain (pp)", "Δ ECE 1→15 (pp)",
                 "Δ JSD 1→15 (bits)", "Δ soft acc 1→15 (pp)"], rows))

    s = read(d, "selective")
    print("\n### Selective prediction (test, n = T)\n")
    rows = [[r.arch, r.method, r.score, fmt(r.accuracy_at_80, True), fmt(r.accuracy_at_90, True),
             fmt(r.coverage_at_90_accuracy, True), fmt(r.aurc)] for r in s.itertuples()]
    print(table(["arch", "method", "score", "acc @80% cov", "acc @90% cov", "cov @90% acc", "AURC"], rows))

    sh = read_optional(d, "shift")
    if sh is not None:
        print("\n### Dataset shift (mean over the 7 corruptions; error and ECE in %)\n")
        g = sh.groupby(["arch", "method", "severity"])[["error", "nll", "ece", "entropy", "mutual_information"]].mean().reset_index()
        rows = []
        for a in ARCHS:
            for meth in METHODS:
                for sev in range(6):
                    r = g[(g.arch == a) & (g.method == meth) & (g.severity == sev)]
                    if r.empty:
                        continue
                    r = r.iloc[0]
                    rows.append([a, meth, sev, fmt(r.error, True), fmt(r.nll), fmt(r.ece, True),
                                 fmt(r.entropy), fmt(r.mutual_information)])
        print(table(["arch", "method", "severity", "error", "NLL", "ECE", "entropy", "MI"], rows))

    o = read_optional(d, "ood")
    if o is not None:
        sets = list(dict.fromkeys(o.set))
        for score in ["max_prob", "entropy", "mutual_information"]:
            print(f"\n### OOD detection, AUROC (%) by `{score}`\n")
            rows = []
            for a in ARCHS:
                for meth in METHODS:
                    r = o[(o.arch == a) & (o.method == meth) & (o.score == score)]
                    if r.empty:
                        continue
                    rows.append([a, meth] + [fmt(r[r.set == st].auroc.iloc[0], True) if (r.set == st).any() else "–" for st in sets])
            print(table(["arch", "method"] + sets, rows))
        print("\n### OOD detection on the real natural-image patches (AUPR and FPR at 95% TPR, %)\n")
        rows = []
        real = [st for st in sets if st not in ("uniform_noise", "smooth_noise", "shuffled_pixels", "upside_down")]
        for st in real:
            for score in ["max_prob", "entropy", "mutual_information"]:
                for a in ARCHS:
                    for meth in METHODS:
                        r = o[(o.arch == a) & (o.method == meth) & (o.score == score) & (o.set == st)]
                        if r.empty:
                            continue
                        r = r.iloc[0]
                        rows.append([st, score, a, meth, fmt(r.auroc, True), fmt(r.aupr, True), fmt(r.fpr95, True)])
        print(table(["set", "score", "arch", "method", "AUROC", "AUPR", "FPR95"], rows))

    lab = read_optional(d, "labels")
    if lab is not None:
        print("\n### Soft-label comparison (test, n = T; error, ECE, soft accuracy in %)\n")
        rows = [[r.label_mode, r.arch, r.method, fmt(r.error, True), fmt(r.nll), fmt(r.ece, True),
                 fmt(r.brier), fmt(r.jsd), fmt(r.soft_accuracy, True), fmt(r.entropy_corr)]
                for r in lab.itertuples()]
        print(table(["label mode", "arch", "method", "error", "NLL", "ECE", "Brier", "JSD", "soft acc", "entropy corr"], rows))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "artifacts/cpu/analyze")
