#!/usr/bin/env python3
"""Writes a stochastic, contextual target policy for a log of bench/make_log.py, as a file
and as a column, and prints its true value, for checking `tla evaluate --log` with
`--target file:PATH` and `--target column:NAME`.

    python3 bench/make_target.py LOG.csv SEED TARGET.csv LOG_WITH_PI.csv

SEED must be the seed the log was written with (the conversion rates are drawn from it).
The target, in context c: probability 0.5 on arm a(3c), 0.3 on arm a19, and 0.2 spread
evenly over the 20 arms; the same in both slots. TARGET.csv has the columns ctx, slot,
action, probability; LOG_WITH_PI.csv is the log with a column pi, the target's probability
of each row's logged arm. Prints the true value per row to stderr. Standard library only.
"""
import csv
import random
import sys


def main():
    log, seed, target_out, log_out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = random.Random(seed)
    contexts, arms, reward = 4, 20, 10.0
    # The same draws as make_log.py, in the same order.
    rate = [[rng.uniform(0.01, 0.08) for _ in range(arms)] for _ in range(contexts)]

    def pi(c, a):
        return 0.2 / arms + (0.5 if a == 3 * c else 0.0) + (0.3 if a == 19 else 0.0)

    with open(target_out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ctx", "slot", "action", "probability"])
        for c in range(contexts):
            for slot in range(2):
                for a in range(arms):
                    w.writerow([f"c{c}", slot, f"a{a}", repr(pi(c, a))])
    with open(log) as f, open(log_out, "w", newline="") as g:
        r = csv.reader(f)
        w = csv.writer(g)
        header = next(r)
        w.writerow(header + ["pi"])
        ci, ai = header.index("ctx"), header.index("arm")
        for row in r:
            w.writerow(row + [repr(pi(int(row[ci][1:]), int(row[ai][1:])))])
    truth = sum(reward * sum(pi(c, a) * rate[c][a] for a in range(arms)) for c in range(contexts)) / contexts
    print(f"truth: {truth:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
