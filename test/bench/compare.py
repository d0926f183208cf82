#!/usr/bin/env python3
"""test/bench/compare.py: the summary of compare.sh's runs (Markdown on stdout).

    python3 test/bench/compare.py DIR BASE_ID HEAD_ID

DIR holds base-N/raw.json and head-N/raw.json. For figures 1 and 5, each run's ratio
(halo or ingest TPS over the plain baseline of the same run) and, per repetition N,
head's ratio over base's: above 1 means head costs less than base.
"""
import json
import os
import statistics
import sys

SERIES = [
    ("fig1", "tps", "halo", "figure 1: insert overhead (halo / plain TPS)"),
    ("fig1", "tps_synchronous_commit_off", "halo", "figure 1, synchronous_commit = off"),
    ("fig5", "tps", "ingest", "figure 5: webhook ingest (ingest_webhook / plain INSERT TPS)"),
]


def load(path):
    """The raw results of one run, or None."""
    try:
        with open(os.path.join(path, "raw.json")) as f:
            return json.load(f)["results"]
    except (OSError, ValueError, KeyError):
        return None


def main(out, base_id, head_id):
    reps = sorted({int(n.split("-")[1]) for n in os.listdir(out)
                   if n.split("-")[0] in ("base", "head") and n.split("-")[-1].isdigit()})
    print("# Same-session comparison: %s (base) vs %s (head)\n" % (base_id, head_id))
    print("Each repetition runs both commits' own harness once, in turn (ABBA order);\n"
          "ratios are per run (against the plain baseline measured in that run).\n")
    for fig, key, side, title in SERIES:
        rows, rel = [], []
        for n in reps:
            b, h = load(os.path.join(out, "base-%d" % n)), load(os.path.join(out, "head-%d" % n))
            if not b or not h or fig not in b or fig not in h:
                continue
            rb = b[fig][key][side][0] / b[fig][key]["plain"][0]
            rh = h[fig][key][side][0] / h[fig][key]["plain"][0]
            rel.append(rh / rb)
            rows.append("| %d | %.0f / %.0f | %.3f | %.0f / %.0f | %.3f | %.3f |"
                        % (n, b[fig][key][side][0], b[fig][key]["plain"][0], rb,
                           h[fig][key][side][0], h[fig][key]["plain"][0], rh, rh / rb))
        if not rows:
            continue
        print("## %s\n" % title)
        print("| rep | base: TPS / plain | base ratio | head: TPS / plain | head ratio | head / base |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
        print("\nhead / base: median %.3f (min %.3f, max %.3f)\n"
              % (statistics.median(rel), min(rel), max(rel)))


if __name__ == "__main__":
    main(*sys.argv[1:4])
