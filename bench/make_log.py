#!/usr/bin/env python3
"""Writes a logged-bandit CSV with a known truth, for timing and checking `tla evaluate --log`.

    python3 bench/make_log.py ROWS OUT.csv [SEED]

Columns: ts, ctx (4 contexts), slot (2 slots), arm (20 actions), r (reward: 10 on a
conversion, else 0), p (the logging propensity). Logging is epsilon-greedy with epsilon 0.6:
each context's greedy arm has propensity 0.6/20 + 0.4 = 0.43, every other arm 0.03. The
conversion probability of (context, arm) is fixed by the seed. Prints the true value per row
of the uniform target and of always-arm-19 to stderr. Standard library only.
"""
import random
import sys


def main():
    rows = int(sys.argv[1])
    out = sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    contexts, arms, eps, reward = 4, 20, 0.6, 10.0
    rate = [[rng.uniform(0.01, 0.08) for _ in range(arms)] for _ in range(contexts)]
    greedy = [rng.randrange(arms) for _ in range(contexts)]
    with open(out, "w") as f:
        f.write("ts,ctx,slot,arm,r,p\n")
        for i in range(rows):
            c = rng.randrange(contexts)
            if rng.random() < eps:
                a = rng.randrange(arms)
            else:
                a = greedy[c]
            p = eps / arms + (1 - eps if a == greedy[c] else 0.0)
            r = reward if rng.random() < rate[c][a] else 0.0
            f.write(f"{i},c{c},{i % 2},a{a},{r:g},{p:.6g}\n")
    uniform = sum(reward * sum(rate[c]) / arms for c in range(contexts)) / contexts
    fixed = sum(reward * rate[c][19] for c in range(contexts)) / contexts
    print(f"truth: uniform {uniform:.4f}, fixed:a19 {fixed:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
