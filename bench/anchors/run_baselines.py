#!/usr/bin/env python3
"""Online-loop baselines on a creative world (see world.py).

For each impression t = 1..T: draw segment s_t, the policy picks a creative c_t,
conversion ~ Bernoulli(P(s_t, c_t)) and donation ~ LogNormal(mean(s_t, c_t)),
the policy is updated with (s_t, c_t, converted, value).  Reward = donation
value (0 without conversion).  All policies see the SAME impressions and the
same random numbers (common random numbers: segment, a uniform for the
conversion draw, a normal for the donation draw, all from --sim-seed), so a
policy's outcome differs from another's only through its choices.

Metrics per (world, policy):
  pct_oracle          realised total value / oracle's EXPECTED value over the
                      same impressions (oracle = best creative per segment by EV)
  pct_oracle_expected sum of EV(s_t, c_t) of the chosen creatives / same
                      denominator (same quantity without the outcome noise)
  conversions, conv_rate
  wall_s              whole loop including the simulator
  policy_s            time inside the policy's choose+update only
  decisions_per_s     impressions / policy_s  (one decision + one update each)

Every policy run has a time cap (--max-seconds); a run that hits it stops
early and is flagged truncated (its metrics cover the impressions it did).
Results: one JSON line per run appended to results/results.jsonl, and
results/results.md regenerated from all lines (latest per world x policy).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "worlds"))
from world import World, file_sha256  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(os.getcwd(), "bench-results"))


# ---------------------------------------------------------------------------
# Policies.  choose(s) -> creative index; update(s, c, converted, value).
# Policies with batch > 1 implement choose_batch / update_batch instead.
# ---------------------------------------------------------------------------
class RandomPolicy:
    name = "random"
    batch = 1

    def __init__(self, world, seed, **_):
        self.K = world.K
        self.rng = np.random.default_rng(seed)
        self.desc = "uniform random creative"

    def choose(self, s):
        return int(self.rng.integers(self.K))

    def update(self, s, c, conv, value):
        pass


class OraclePolicy:
    name = "oracle"
    batch = 1

    def __init__(self, world, seed, **_):
        _, EV = world.tables()
        self.best = EV.argmax(axis=1).tolist()
        self.desc = "best creative per segment by expected value (knows ground truth)"

    def choose(self, s):
        return self.best[s]

    def update(self, s, c, conv, value):
        pass


class NumpyBetaTS:
    """Independent Beta-Bernoulli Thompson sampling, one arm per
    (segment, creative), implemented in numpy.

    objective="value": score = sampled conversion rate * arm's posterior-mean
    donation (donations shrunk to the running global mean with pseudo-count
    value_prior_n); objective="conversion": score = sampled conversion rate.

    Exact lazy implementation so that worlds with millions of arms fit: arms
    never played share the prior, so instead of drawing one Beta per unplayed
    arm we draw the MAXIMUM of n_unplayed i.i.d. Beta(a0, b0) variables in one
    step (inverse CDF at U^(1/n)), and if it wins we play a uniformly chosen
    unplayed arm.  This is the same distribution over choices as drawing every
    arm's Beta separately.
    """
    batch = 1

    def __init__(self, world, seed, objective="value", a0=1.0, b0=1.0, value_prior_n=1.0,
                 name="numpy_ts", **_):
        from scipy.special import betaincinv
        self._betaincinv = betaincinv
        self.name = name
        self.S, self.K = world.S, world.K
        self.rng = np.random.default_rng(seed)
        self.objective = objective
        self.a0, self.b0, self.k0 = float(a0), float(b0), float(value_prior_n)
        self.pos = np.full((self.S, self.K), -1, dtype=np.int32)
        cap = 64
        self.arms = [np.zeros(cap, np.int64) for _ in range(self.S)]
        self.A = [np.zeros(cap) for _ in range(self.S)]
        self.B = [np.zeros(cap) for _ in range(self.S)]
        self.vsum = [np.zeros(cap) for _ in range(self.S)]
        self.nconv = [np.zeros(cap) for _ in range(self.S)]
        self.n = [0] * self.S
        self.gsum, self.gn = 0.0, 0
        self.desc = (f"independent Beta({a0:g},{b0:g})-Bernoulli TS per (segment, creative), "
                     f"objective={objective}" +
                     (f", donation mean shrunk to global mean (n0={value_prior_n:g})"
                      if objective == "value" else ""))

    def _g(self):
        return self.gsum / self.gn if self.gn else 1.0

    def choose(self, s):
        n = self.n[s]
        best, best_score = -1, -math.inf
        g = self._g()
        if n:
            th = self.rng.beta(self.A[s][:n], self.B[s][:n])
            if self.objective == "value":
                th *= (self.vsum[s][:n] + self.k0 * g) / (self.nconv[s][:n] + self.k0)
            j = int(th.argmax())
            best, best_score = int(self.arms[s][j]), th[j]
        nu = self.K - n
        if nu > 0:
            u = self.rng.random()
            m = float(self._betaincinv(self.a0, self.b0, u ** (1.0 / nu)))
            if self.objective == "value":
                m *= g
            if m > best_score:
                if n < self.K // 2:
                    while True:
                        c = int(self.rng.integers(self.K))
                        if self.pos[s, c] < 0:
                            return c
                unseen = np.flatnonzero(self.pos[s] < 0)
                return int(unseen[self.rng.integers(len(unseen))])
        return best

    def update(self, s, c, conv, value):
        j = self.pos[s, c]
        if j < 0:
            j = self.n[s]
            if j == len(self.arms[s]):
                for lst in (self.arms, self.A, self.B, self.vsum, self.nconv):
                    lst[s] = np.concatenate([lst[s], np.zeros_like(lst[s])])
            self.pos[s, c] = j
            self.arms[s][j] = c
            self.A[s][j], self.B[s][j] = self.a0, self.b0
            self.n[s] += 1
        if conv:
            self.A[s][j] += 1.0
            self.vsum[s][j] += value
            self.nconv[s][j] += 1.0
            self.gsum += value
            self.gn += 1
        else:
            self.B[s][j] += 1.0


class MabwiserTS:
    """MABWiser LearningPolicy.ThompsonSampling, one MAB per segment with one
    arm per creative (independent arms).  MABWiser's TS is Beta-Bernoulli, so
    rewards are binarised with binarizer=(value > 0), i.e. it learns
    conversions.  batch > 1: decisions for `batch` impressions are made with
    the posterior frozen (MABWiser predict with n contexts draws n independent
    samples), then partial_fit on the batch."""
    name = "mabwiser_ts"

    def __init__(self, world, seed, batch=1, **_):
        from mabwiser.mab import MAB, LearningPolicy
        import mabwiser
        self.K, self.S = world.K, world.S
        self.batch = int(batch)
        self.mabs = []
        for s in range(self.S):
            m = MAB(list(range(self.K)),
                    LearningPolicy.ThompsonSampling(binarizer=lambda arm, r: int(r > 0)),
                    seed=seed * 1000 + s)
            m.fit(np.array([], dtype=np.int64), np.array([], dtype=np.float64))
            self.mabs.append(m)
        ver = getattr(mabwiser, "__version__", None)
        if ver is None:
            from mabwiser._version import __version__ as ver
        self.desc = (f"MABWiser {ver} ThompsonSampling, per-segment MAB, {self.K} arms each, "
                     f"binarizer value>0, batch={self.batch}")

    def choose(self, s):
        return int(self.mabs[s].predict())

    def update(self, s, c, conv, value):
        self.mabs[s].partial_fit([c], [value])

    def choose_batch(self, segs):
        out = np.empty(len(segs), dtype=np.int64)
        for s in np.unique(segs):
            idx = np.flatnonzero(segs == s)
            if len(idx) == 1:
                out[idx[0]] = self.mabs[s].predict()
            else:
                out[idx] = self.mabs[s].predict(np.zeros((len(idx), 1)))
        return out

    def update_batch(self, segs, cs, convs, values):
        for s in np.unique(segs):
            idx = np.flatnonzero(segs == s)
            self.mabs[s].partial_fit(cs[idx], values[idx])


class VWADF:
    """Vowpal Wabbit contextual bandit (--cb_explore_adf) via the Python API.
    Shared features: the segment (namespace s).  Action features: one
    namespace per component with the option as a categorical feature.  All
    pairwise quadratic interactions among namespaces (segment x component and
    component x component).  Cost = -donation / mean donation scale.
    Every decision scores all K creatives (K action lines)."""
    batch = 1

    def __init__(self, world, seed, explore="--squarecb", extra="", name="vw", **_):
        import vowpalwabbit
        from vowpalwabbit import Workspace
        self.name = name
        self.K = world.K
        self.rng = np.random.default_rng(seed)
        letters = "abcdefghijklmnopqrtuvwxyz"  # no 's' (segment)
        ns = letters[:len(world.dims)]
        allns = "s" + ns
        quads = " ".join(f"-q {x}{y}" for i, x in enumerate(allns) for y in allns[i + 1:])
        self.args = f"--cb_explore_adf {explore} {extra} {quads} --quiet --random_seed {seed}".replace("  ", " ")
        self.vw = Workspace(self.args)
        opts = world.options_of(np.arange(world.K))
        self.actions = [" ".join(f"|{ns[k]} {ns[k]}{o}" for k, o in enumerate(row)) for row in opts.tolist()]
        self.shared = [f"shared |s s{s}" for s in range(world.S)]
        self.cost_scale = math.exp(world.log_mean_base)
        self.last_p = 1.0
        ver = getattr(vowpalwabbit, "__version__", "?")
        self.desc = f"vowpalwabbit {ver}: {self.args}"

    def choose(self, s):
        pmf = np.asarray(self.vw.predict([self.shared[s]] + self.actions), dtype=np.float64)
        tot = pmf.sum()
        c = int(np.searchsorted(np.cumsum(pmf), self.rng.random() * tot, side="right"))
        c = min(c, self.K - 1)
        self.last_p = pmf[c] / tot
        return c

    def update(self, s, c, conv, value):
        ex = [self.shared[s]] + self.actions
        ex[c + 1] = f"0:{-value / self.cost_scale:.6g}:{max(self.last_p, 1e-9):.6g} " + self.actions[c]
        self.vw.learn(ex)

    def close(self):
        self.vw.finish()


class VWSlates:
    """Vowpal Wabbit --slates (combinatorial bandit, one slot per component,
    slot k's actions = that component's options, single global cost) via the
    Python API.  Shared feature: the segment; quadratic segment x option
    interactions; the reward model is additive over slots (no option x option
    interactions).  Scores sum(options) actions per decision instead of
    prod(options), so it is feasible on every world.  Not one of the per-
    creative cb_explore_adf baselines: an extra factorised VW anchor."""
    batch = 1

    def __init__(self, world, seed, explore="--epsilon 0.05", name="vw_slates", **_):
        import vowpalwabbit
        from vowpalwabbit import Workspace
        self.name = name
        self.world = world
        self.rng = np.random.default_rng(seed)
        letters = "abcdefghijklmnopqrtuvwxyz"
        ns = letters[:len(world.dims)]
        quads = " ".join(f"-q s{x}" for x in ns)
        self.args = f"--slates {explore} {quads} --quiet --random_seed {seed}"
        self.vw = Workspace(self.args)
        self.actions = [f"slates action {k} |{ns[k]} {ns[k]}{o}"
                        for k, n in enumerate(world.dims) for o in range(n)]
        self.slots = [f"slates slot |z z{k}" for k in range(len(world.dims))]
        self.shared = [f"slates shared |s s{s}" for s in range(world.S)]
        self.cost_scale = math.exp(world.log_mean_base)
        self.last = None
        ver = getattr(vowpalwabbit, "__version__", "?")
        self.desc = f"vowpalwabbit {ver}: {self.args} (one slot per component)"

    def choose(self, s):
        pred = self.vw.predict([self.shared[s]] + self.actions + self.slots)
        opts, probs = [], []
        for slot in pred:
            ids = np.array([a for a, _ in slot], dtype=np.int64)
            ps = np.array([p for _, p in slot], dtype=np.float64)
            j = int(np.searchsorted(np.cumsum(ps), self.rng.random() * ps.sum(), side="right"))
            j = min(j, len(ids) - 1)
            opts.append(int(ids[j]))
            probs.append(max(ps[j] / ps.sum(), 1e-9))
        self.last = (opts, probs)
        return self.world.index_of(opts)

    def update(self, s, c, conv, value):
        opts, probs = self.last
        ex = ([f"slates shared {-value / self.cost_scale:.6g} |s s{s}"] + self.actions +
              [f"slates slot {o}:{p:.6g} |z z{k}" for k, (o, p) in enumerate(zip(opts, probs))])
        self.vw.learn(ex)

    def close(self):
        self.vw.finish()


def make_policy(name, world, seed, args):
    if name == "random":
        return RandomPolicy(world, seed)
    if name == "oracle":
        return OraclePolicy(world, seed)
    if name == "numpy_ts":
        return NumpyBetaTS(world, seed, objective="value", name=name)
    if name == "numpy_ts_conv":
        return NumpyBetaTS(world, seed, objective="conversion", name=name)
    if name == "numpy_ts_prior":
        # informed prior: mean = world-agnostic 2% base rate, strength 50
        return NumpyBetaTS(world, seed, objective="value", a0=1.0, b0=49.0, name=name)
    if name == "mabwiser_ts":
        return MabwiserTS(world, seed, batch=args.mab_batch)
    if name == "vw_squarecb":
        return VWADF(world, seed, explore="--squarecb", extra="--cb_type mtr", name=name)
    if name == "vw_eps05":
        return VWADF(world, seed, explore="--epsilon 0.05", extra="--cb_type mtr", name=name)
    if name == "vw_slates_eps05":
        return VWSlates(world, seed, explore="--epsilon 0.05", name=name)
    if name == "vw_slates_squarecb":
        return VWSlates(world, seed, explore="--squarecb", name=name)
    raise ValueError(f"unknown policy {name}")


POLICIES = ["random", "oracle", "numpy_ts", "numpy_ts_conv", "numpy_ts_prior",
            "mabwiser_ts", "vw_squarecb", "vw_eps05", "vw_slates_eps05", "vw_slates_squarecb"]


def run_one(world, world_path, pname, T, seed, sim, args):
    seg, u, z = sim
    P, EV = world.tables()
    MVc = world.mean_value_creative()
    oracle_ev_t = EV.max(axis=1)[seg]            # per impression
    sig = world.sigma
    lognorm = np.exp(sig * z - 0.5 * sig * sig)  # donation multiplier

    load_start = os.getloadavg()[0]
    t_setup = time.perf_counter()
    pol = make_policy(pname, world, seed, args)
    setup_s = time.perf_counter() - t_setup

    checkpoints = sorted(set([x for x in (1000, 10000, 50000, 100000, 200000, 500000, 1000000) if x < T] + [T]))
    cps = []
    tot_val = 0.0
    tot_ev = 0.0
    conv_n = 0
    pol_s = 0.0
    done = 0
    truncated = False
    B = getattr(pol, "batch", 1)
    pc = time.perf_counter
    t0 = pc()
    deadline = t0 + args.max_seconds
    next_cp = 0
    while done < T:
        if B == 1:
            s = int(seg[done])
            a = pc()
            c = pol.choose(s)
            b = pc()
            cv = u[done] < P[s, c]
            val = float(MVc[s, c] * lognorm[done]) if cv else 0.0
            d = pc()
            pol.update(s, c, bool(cv), val)
            e = pc()
            pol_s += (b - a) + (e - d)
            tot_val += val
            tot_ev += EV[s, c]
            conv_n += int(cv)
            done += 1
        else:
            hi = min(T, done + B)
            ss = seg[done:hi]
            a = pc()
            cs = np.asarray(pol.choose_batch(ss), dtype=np.int64)
            b = pc()
            cv = u[done:hi] < P[ss, cs]
            vals = np.where(cv, MVc[ss, cs] * lognorm[done:hi], 0.0)
            d = pc()
            pol.update_batch(ss, cs, cv, vals)
            e = pc()
            pol_s += (b - a) + (e - d)
            tot_val += float(vals.sum())
            tot_ev += float(EV[ss, cs].sum())
            conv_n += int(cv.sum())
            done = hi
        while next_cp < len(checkpoints) and done >= checkpoints[next_cp]:
            oe = float(oracle_ev_t[:done].sum())
            cps.append({"t": done, "pct_oracle": 100 * tot_val / oe,
                        "pct_oracle_expected": 100 * tot_ev / oe, "conversions": conv_n})
            next_cp += 1
        if pc() > deadline:
            truncated = done < T
            break
    wall = pc() - t0
    if hasattr(pol, "close"):
        pol.close()
    oe = float(oracle_ev_t[:done].sum())
    if not cps or cps[-1]["t"] != done:
        cps.append({"t": done, "pct_oracle": 100 * tot_val / oe,
                    "pct_oracle_expected": 100 * tot_ev / oe, "conversions": conv_n})
    rec = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "world": world.name, "world_file": os.path.relpath(world_path, HERE),
        "world_sha256": file_sha256(world_path),
        "n_creatives": world.K, "n_segments": world.S,
        "policy": pname, "policy_desc": pol.desc, "batch": B,
        "seed": seed, "sim_seed": args.sim_seed,
        "T_requested": T, "T_done": done, "truncated": truncated, "max_seconds": args.max_seconds,
        "total_value": tot_val, "oracle_expected_value": oe,
        "pct_oracle": 100.0 * tot_val / oe, "pct_oracle_expected": 100.0 * tot_ev / oe,
        "conversions": conv_n, "conv_rate": conv_n / max(done, 1),
        "wall_s": wall, "policy_s": pol_s, "setup_s": setup_s,
        "decisions_per_s": done / pol_s if pol_s > 0 else None,
        "loop_impressions_per_s": done / wall if wall > 0 else None,
        "checkpoints": cps,
        "loadavg_1min_start_end": [load_start, os.getloadavg()[0]],
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "cpu": _cpu_model(), "nproc": os.cpu_count()},
    }
    return rec


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _fmt_rate(x):
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


_ORACLE_CUM = {}


def _window_pct(r):
    """% of oracle (expected) over the last checkpoint window, e.g. impressions
    100k..200k: how good the policy is late in the run, not averaged with its
    early exploration.  Recomputed from the world file and sim seed."""
    cps = r["checkpoints"]
    if len(cps) < 2:
        return None, None
    key = (r["world_file"], r["sim_seed"], r["T_requested"])
    if key not in _ORACLE_CUM:
        try:
            w = World.load(os.path.join(HERE, r["world_file"]))
            seg, _, _ = w.draw_impressions(r["T_requested"], r["sim_seed"])
            _ORACLE_CUM[key] = np.concatenate([[0.0], np.cumsum(w.tables()[1].max(axis=1)[seg])])
        except (OSError, ValueError):
            _ORACLE_CUM[key] = None
    oc = _ORACLE_CUM[key]
    if oc is None:
        return None, None
    a, b = cps[-2], cps[-1]
    ev_a = a["pct_oracle_expected"] / 100 * oc[a["t"]]
    ev_b = b["pct_oracle_expected"] / 100 * oc[b["t"]]
    return 100 * (ev_b - ev_a) / (oc[b["t"]] - oc[a["t"]]), (a["t"], b["t"])


def write_table(jsonl, md):
    rows = {}
    with open(jsonl) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows[(r["world"], r["policy"])] = r
    worlds = ["small", "medium", "full"]
    order = {p: i for i, p in enumerate(POLICIES)}
    keys = sorted(rows, key=lambda k: (worlds.index(k[0]) if k[0] in worlds else 99, k[0],
                                       order.get(k[1], 99), k[1]))
    out = ["# Baseline results", "",
           "Generated by run_baselines.py from results.jsonl (latest run per world x policy).",
           "% of oracle = realised donation value / oracle's expected value on the same impressions;",
           "'expected' uses the chosen creatives' expected values (no outcome noise).",
           "decisions/s = impressions / time inside the policy (choose + update), single Python thread.",
           "",
           "'late window' = % of oracle (expected) over the last checkpoint window only (e.g. impressions 100k-200k).",
           "",
           "| world | policy | T done / requested | % of oracle (realised) | % of oracle (expected) | late window (expected) | conv. rate | conversions | wall s | policy decisions+updates/s | notes |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in keys:
        r = rows[k]
        note = []
        if r["truncated"]:
            note.append(f"TRUNCATED at time cap {r['max_seconds']:g}s")
        if r.get("batch", 1) > 1:
            note.append(f"batch={r['batch']}")
        if "loadavg_1min_start_end" in r:
            la = r["loadavg_1min_start_end"]
            note.append(f"load {la[0]:.1f}->{la[1]:.1f}")
        wp, wr = _window_pct(r)
        wtxt = f"{wp:.1f} ({wr[0] // 1000}k-{wr[1] / 1000:g}k)" if wp is not None else "-"
        out.append(f"| {r['world']} | {r['policy']} | {r['T_done']:,} / {r['T_requested']:,} | "
                   f"{r['pct_oracle']:.1f} | {r['pct_oracle_expected']:.1f} | {wtxt} | {100 * r['conv_rate']:.3f}% | "
                   f"{r['conversions']:,} | {r['wall_s']:.1f} | {_fmt_rate(r['decisions_per_s'])} | {'; '.join(note)} |")
    out += ["", "Policy descriptions:", ""]
    seen = set()
    for k in keys:
        r = rows[k]
        if (r["policy"], r["policy_desc"]) in seen:
            continue
        seen.add((r["policy"], r["policy_desc"]))
        out.append(f"- {r['policy']} ({r['world']}): {r['policy_desc']}")
    out += ["", "Learning curves (cumulative % of oracle, expected, from impression 1 to each checkpoint):", ""]
    for k in keys:
        r = rows[k]
        cp = ", ".join(f"{c['t']:,}: {c['pct_oracle_expected']:.1f}" for c in r["checkpoints"])
        out.append(f"- {r['world']} / {r['policy']}: {cp}")
    with open(md, "w") as f:
        f.write("\n".join(out) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run bandit baselines on a creative world.")
    ap.add_argument("--world", required=True, help="preset name (small/medium/full -> worlds/<name>.json) or a world JSON path")
    ap.add_argument("--T", type=int, default=200000, help="impressions")
    ap.add_argument("--policies", default="random,oracle,numpy_ts,numpy_ts_conv,numpy_ts_prior,mabwiser_ts,vw_squarecb,vw_eps05")
    ap.add_argument("--seed", type=int, default=7, help="policy seed (same for every policy)")
    ap.add_argument("--sim-seed", type=int, default=12345, help="seed of the impression stream")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="time cap per policy run (loop only)")
    ap.add_argument("--mab-batch", type=int, default=1, help="MABWiser batch size (1 = fully online)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "results.jsonl"))
    ap.add_argument("--table-only", action="store_true", help="only regenerate results.md")
    a = ap.parse_args(argv)
    os.makedirs(RESULTS, exist_ok=True)
    md = os.path.join(os.path.dirname(os.path.abspath(a.out)), "results.md")
    if a.table_only:
        write_table(a.out, md)
        return
    path = a.world if a.world.endswith(".json") else os.path.join(HERE, "..", "..", "worlds", f"{a.world}.json")
    world = World.load(path)
    err = world.verify_checks()
    assert err < 1e-9, f"world checks failed: {err}"
    t = time.perf_counter()
    world.tables()
    sim = world.draw_impressions(a.T, a.sim_seed)
    print(f"world {world.name}: {world.K} creatives x {world.S} segments; tables+impressions "
          f"{time.perf_counter() - t:.1f}s", flush=True)
    for pname in [p.strip() for p in a.policies.split(",") if p.strip()]:
        try:
            rec = run_one(world, path, pname, a.T, a.seed, sim, a)
        except ImportError as e:
            print(f"{pname}: SKIPPED (import failed: {e})", flush=True)
            continue
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{world.name:7s} {pname:15s} T={rec['T_done']:>8,}{' (TRUNCATED)' if rec['truncated'] else ''} "
              f"%oracle={rec['pct_oracle']:6.1f} (exp {rec['pct_oracle_expected']:5.1f}) "
              f"conv={100 * rec['conv_rate']:.3f}% wall={rec['wall_s']:.1f}s "
              f"dec/s={_fmt_rate(rec['decisions_per_s'])}", flush=True)
        write_table(a.out, md)


if __name__ == "__main__":
    main()
