#!/usr/bin/env python3
"""Writes a platform's results in the ads-manager layout for a stored plan, for timing
`tla results import`.

    python3 bench/make_results.py PLAN.json ROWS OUT.csv [SEED]

PLAN.json is a plan as `POST /v1/campaigns/{id}/plans` answers it. One row per ad of the
plan, ad set and hour, hour after hour from 2026-01-01, until ROWS rows: columns "Ad name",
"Ad set name", "Day", "Hour" (`HH:00:00 - HH:59:59`), "Impressions" (20 to 100),
"Link clicks" (about 2 % of them), "Results" (about a quarter of the clicks),
"Purchase conversion value" (25 per result) and "Amount spent". Standard library only.
"""
import csv
import datetime
import json
import random
import sys


def main():
    plan = json.load(open(sys.argv[1]))
    rows = int(sys.argv[2])
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    ads = [(ad["ad_name"], s["ad_set"]) for s in plan["ad_sets"] for ad in s["ads"]]
    start = datetime.datetime(2026, 1, 1)
    with open(sys.argv[3], "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Ad name", "Ad set name", "Day", "Hour", "Impressions", "Link clicks",
                      "Results", "Purchase conversion value", "Amount spent"])
        written, hour = 0, 0
        while written < rows:
            at = start + datetime.timedelta(hours=hour)
            for name, ad_set in ads:
                if written == rows:
                    break
                impressions = rng.randint(20, 100)
                clicks = sum(rng.random() < 0.02 for _ in range(impressions))
                results = sum(rng.random() < 0.25 for _ in range(clicks))
                out.writerow([name, ad_set, at.strftime("%Y-%m-%d"),
                              at.strftime("%H:00:00 - %H:59:59"), impressions, clicks,
                              results or "", results * 25 or "",
                              "%.2f" % (impressions * 0.01)])
                written += 1
            hour += 1


if __name__ == "__main__":
    main()
