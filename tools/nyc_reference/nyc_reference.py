#!/usr/bin/env python3
"""Independent reference implementation of Vigil anomaly-rule semantics on the
NAB NYC taxi data set (stdlib only). Usage:
    python3 nyc_reference.py [path/to/nyc_taxi.csv] > output.md
"""
import csv
import math
import sys
from datetime import datetime, timedelta, timezone

from zoneinfo import ZoneInfo

TZ = ZoneInfo("America/New_York")
UTC = timezone.utc
S = 3600                      # bucket size, seconds
K = 52                        # robust window
STABLE_AFTER = 30
MIN_SPREAD = 1.0
THRESHOLDS = {"LOW": 3.0, "MEDIUM": 2.5, "HIGH": 2.0}
CONFIGS = {"A": ["hour_of_week"], "B": ["hour_of_week", "hour_of_day", "all_hours"]}
STATS = ["mean_std", "median_mad"]
EVENTS = [  # name, label, window start, window end (local NY time)
    ("NYC marathon", "2014-11-01 19:00", "2014-10-30 15:30", "2014-11-03 22:30"),
    ("Thanksgiving", "2014-11-27 15:30", "2014-11-25 12:00", "2014-11-29 19:00"),
    ("Christmas", "2014-12-25 15:00", "2014-12-23 11:30", "2014-12-27 18:30"),
    ("New Year", "2015-01-01 01:00", "2014-12-29 21:30", "2015-01-03 04:30"),
    ("Snowstorm", "2015-01-27 00:00", "2015-01-24 20:30", "2015-01-29 03:30"),
]
DEBUG_T = "2015-01-27T06:00:00Z"


def local_to_utc(s):
    """Naive local 'YYYY-MM-DD HH:MM[:SS]' -> UTC epoch seconds (fold=0)."""
    naive = datetime.fromisoformat(s)
    return int(naive.replace(tzinfo=TZ, fold=0).timestamp())


def off(t):
    """UTC offset of America/New_York at UTC epoch t, in seconds."""
    return int(datetime.fromtimestamp(t, TZ).utcoffset().total_seconds())


def bucket_of(t):
    return t - ((t + off(t)) % S)


def iso(t):
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_str(t):
    return datetime.fromtimestamp(t, TZ).strftime("%Y-%m-%d %H:%M %Z")


def slot(level, b):
    local = datetime.fromtimestamp(b + off(b), UTC)  # wall-clock fields of b
    if level == "hour_of_week":
        return local.weekday() * 24 + local.hour
    if level == "hour_of_day":
        return local.hour
    return 0


def median(xs):
    ys = sorted(xs)
    m = len(ys) // 2
    return ys[m] if len(ys) % 2 else (ys[m - 1] + ys[m]) / 2


def baseline(hist):
    """All statistics of one history list (ordered by bucket time)."""
    n = len(hist)
    mean = sum(hist) / n if n else 0.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in hist) / (n - 1)) if n >= 2 else 0.0
    win = hist[-K:]
    med = median(win) if win else 0.0
    mad = median([abs(x - med) for x in win]) if win else 0.0
    spread = 1.4826 * mad
    if spread == 0 and win:
        spread = 1.2533 * sum(abs(x - med) for x in win) / len(win)
    if spread == 0:
        spread = MIN_SPREAD
    return {"n": n, "mean": mean, "sd": sd, "median": med, "mad": mad,
            "mean_std": (mean, sd if sd != 0 else MIN_SPREAD),
            "median_mad": (med, spread)}


def load(path):
    samples = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            t = local_to_utc(row["timestamp"])
            b = bucket_of(t)
            samples[b] = samples.get(b, 0.0) + float(row["value"])
    return samples


def compute_baselines(samples):
    """For every sample bucket B and level: baseline over samples b < B, same slot."""
    levels = CONFIGS["B"]
    hist = {lv: {} for lv in levels}
    out = {}
    for b in sorted(samples):
        out[b] = {}
        for lv in levels:
            h = hist[lv].setdefault(slot(lv, b), [])
            out[b][lv] = baseline(h)
            h.append(samples[b])
    return out


def evaluate(T, samples, bases, levels, stat):
    """Return (observed, center, z, level, n) or None."""
    B = T - ((T + off(T)) % S) - S
    if B not in samples:
        return None
    for lv in levels:
        bl = bases[B][lv]
        if bl["n"] >= STABLE_AFTER:
            center, spread = bl[stat]
            return samples[B], center, (samples[B] - center) / spread, lv, bl["n"]
    return None


def replay(ticks, samples, bases, levels, stat, thr):
    """Findings reported at the first tick of each run where a rule holds."""
    findings, holding = [], {"ABOVE": False, "BELOW": False}
    first_stable = None
    for T in ticks:
        ev = evaluate(T, samples, bases, levels, stat)
        if ev and first_stable is None:
            first_stable = T
        z = ev[2] if ev else None
        for rule in ("ABOVE", "BELOW"):
            holds = z is not None and (z >= thr if rule == "ABOVE" else z <= -thr)
            if holds and not holding[rule]:
                obs, center, z_, lv, n = ev
                sev = "HIGH" if abs(z_) >= 4 else "MEDIUM"
                findings.append((T, rule, obs, center, z_, lv, n, sev))
            holding[rule] = holds
    return findings, first_stable


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/nyc_taxi.csv"
    samples = load(path)
    bases = compute_baselines(samples)
    first_T = min(samples) + S
    last_T = local_to_utc("2015-02-01 00:00")
    ticks = range(first_T, last_T + 1, S)
    events = [(name, local_to_utc(lab), local_to_utc(ws), local_to_utc(we))
              for name, lab, ws, we in EVENTS]

    p = print
    p("# Vigil NYC taxi reference replay\n")
    p(f"Samples (hour buckets): {len(samples)}; ticks {iso(first_T)} .. {iso(last_T)} "
      f"({len(ticks)} ticks). Buckets with no rows inside the range: "
      f"{[iso(b) for b in range(min(samples), max(samples), S) if b not in samples]}\n")

    summary = []
    for cfg, levels in CONFIGS.items():
        for stat in STATS:
            for sens, thr in THRESHOLDS.items():
                findings, first_stable = replay(ticks, samples, bases, levels, stat, thr)
                p(f"## Config {cfg} ({'+'.join(levels)}), {stat}, {sens} (|z| >= {thr})\n")
                p(f"First tick with a stable level: {iso(first_stable)} "
                  f"({local_str(first_stable)}); findings total: {len(findings)}\n")
                p("| event | detected | first tick (local) | rule | z | lead (h) |")
                p("|---|---|---|---|---|---|")
                detected = 0
                for name, lab, ws, we in events:
                    hit = next((f for f in findings if ws <= f[0] <= we), None)
                    if hit:
                        detected += 1
                        p(f"| {name} | yes | {local_str(hit[0])} | {hit[1]} | {hit[4]:.2f} | "
                          f"{(lab - hit[0]) / 3600:+.1f} |")
                    else:
                        p(f"| {name} | no | | | | |")
                fa = [f for f in findings if f[0] >= first_stable
                      and not any(ws <= f[0] <= we for _, _, ws, we in events)]
                weeks = (last_T - first_stable) / (7 * 86400)
                rate = len(fa) / weeks if weeks > 0 else float("nan")
                p(f"\nFalse alarms: {len(fa)} over {weeks:.2f} weeks = {rate:.2f}/week\n")
                summary.append((cfg, stat, sens, detected, len(fa), weeks, rate, len(findings)))
                if stat == "mean_std" and sens == "MEDIUM":
                    p("Findings:\n")
                    p("| tick (UTC) | rule | observed | center | z | level | n | severity |")
                    p("|---|---|---|---|---|---|---|---|")
                    for T, rule, obs, c, z, lv, n, sev in findings:
                        p(f"| {iso(T)} | {rule} | {obs:.0f} | {c:.2f} | {z:.3f} | {lv} | {n} | {sev} |")
                    p()

    p("## Summary\n")
    p("| config | stat | sensitivity | events detected | false alarms | weeks | FA/week | findings |")
    p("|---|---|---|---|---|---|---|---|")
    for cfg, stat, sens, det, fa, weeks, rate, tot in summary:
        p(f"| {cfg} | {stat} | {sens} | {det}/5 | {fa} | {weeks:.2f} | {rate:.2f} | {tot} |")

    T = int(datetime.fromisoformat(DEBUG_T.replace("Z", "+00:00")).timestamp())
    B = T - ((T + off(T)) % S) - S
    p(f"\n## Baselines at T = {DEBUG_T} (observed bucket {iso(B)} = {local_str(B)}, "
      f"observed = {samples[B]:.0f})\n")
    p("| level | slot | n | mean | sd | median (last 52) | MAD | z mean_std | z median_mad |")
    p("|---|---|---|---|---|---|---|---|---|")
    for lv in CONFIGS["B"]:
        bl = bases[B][lv]
        zs = [(samples[B] - bl[s][0]) / bl[s][1] for s in STATS]
        p(f"| {lv} | {slot(lv, B)} | {bl['n']} | {bl['mean']:.2f} | {bl['sd']:.2f} | "
          f"{bl['median']:.1f} | {bl['mad']:.1f} | {zs[0]:.3f} | {zs[1]:.3f} |")


if __name__ == "__main__":
    main()
