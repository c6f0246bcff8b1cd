#!/usr/bin/env python3
"""Scores anomaly-rule settings with NAB's scoring (standard profile) on the NYC taxi
series and on synthetic series (weekly seasonality, trends, level shifts, gauges with
gaps), using the independent reference in reference.py. This is how the shipped
defaults of ANOMALY_METRIC_* were chosen (README "Anomaly detection v2").

    python3 tools/anomaly_v2/evaluate.py [../shared/data/nyc_taxi.csv]
"""
import csv
import math
import random
import sys
from datetime import datetime

import reference as ref

NY = ref.Site("America/New_York")
EVENTS = [("2014-10-30 15:30", "2014-11-03 22:30"), ("2014-11-25 12:00", "2014-11-29 19:00"),
          ("2014-12-23 11:30", "2014-12-27 18:30"), ("2014-12-29 21:30", "2015-01-03 04:30"),
          ("2015-01-24 20:30", "2015-01-29 03:30")]


def ny(s):
    return int(datetime.fromisoformat(s).replace(tzinfo=NY.tz, fold=0).timestamp())


def nab(n, dets, wins, fp=0.11, fn=1.0):
    sig = lambda y: 2 / (1 + math.exp(5 * y)) - 1
    pos = lambda w, i: (i - w[1]) / max(w[1] - w[0], 1)
    prob = min(int(n * 0.15), 750)
    dets = sorted(set(d for d in dets if prob <= d < n))
    raw, det, fps = 0.0, [None] * len(wins), 0
    for i in dets:
        k = next((k for k, w in enumerate(wins) if w[0] <= i <= w[1]), None)
        if k is not None:
            if det[k] is None:
                det[k] = i
                raw += sig(pos(wins[k], i))
        else:
            fps += 1
            before = [w for w in wins if w[1] < i]
            raw += fp * sig(pos(before[-1], i)) if before else -fp
    raw -= fn * sum(1 for d in det if d is None)
    null = -fn * len(wins)
    perfect = sum(sig(pos(w, w[0])) for w in wins)
    return 100 * (raw - null) / (perfect - null), sum(1 for d in det if d is not None), fps


def detections(site, buckets, cfg):
    scored = ref.score(site, buckets, cfg)
    out = []
    for d in (1, -1):
        out.extend(ref.raises(ref.holding(scored, cfg, d)))
    return out


def nyc(path, cfg):
    rows = [(ny(r["timestamp"]), float(r["value"])) for r in csv.DictReader(open(path))]
    t0, step = rows[0][0], 1800
    point = lambda t: (t - t0) // step
    wins = [(point(ny(a)), point(ny(b))) for a, b in EVENTS]
    # A finding raised for bucket b is the series' last point in it (b + 30 min).
    dets = [point(b + ref.S - step) for b in detections(NY, ref.hourly(NY, rows), cfg)]
    return nab(len(rows), dets, wins)


def synthetic(seed, kind, weeks=26):
    rnd = random.Random(seed)
    t0 = ny("2024-01-01 00:00")
    n = weeks * 168
    trend, level = rnd.uniform(-0.3, 0.5), rnd.uniform(50, 500)
    mu = []
    for i in range(n):
        d = datetime.fromtimestamp(t0 + i * ref.S, NY.tz)
        day = 1.0 if d.weekday() < 5 else rnd.choice([0.6, 0.7])
        hour = 0.3 + 0.7 * math.exp(-((d.hour - 14) / 5) ** 2)
        mu.append(level * day * hour * (1 + trend * i / n))
    anomalies = []
    for s in sorted(rnd.sample(range(int(n * 0.2), n - 60), rnd.randint(3, 6))):
        dur, f = rnd.choice([3, 6, 12, 24, 48]), rnd.choice([0.3, 0.5, 1.8, 2.5])
        if kind == "shift" and rnd.random() < 0.5:
            dur, f = n - s, rnd.choice([0.6, 1.5])
        for i in range(s, min(n, s + dur)):
            mu[i] *= f
        anomalies.append(s)
    rows = []
    for i, v in enumerate(mu):
        if kind == "gauge":
            if rnd.random() < 0.1:
                continue
            x = v / 10 + rnd.gauss(0, math.sqrt(v / 10))
        else:
            x = max(0, round(rnd.gauss(v, math.sqrt(v) * 1.5)))
        rows.append((t0 + i * ref.S + 900, x))
    wl = int(0.1 * n / len(anomalies))
    wins = []
    for s in anomalies:
        a, b = max(0, s - wl // 2), min(n - 1, s + wl // 2)
        if wins and a <= wins[-1][1]:
            a = wins[-1][1] + 1
        if a < b:
            wins.append((a, b))
    return t0, n, rows, wins


def synthetic_score(cfg, kind, seeds=range(12)):
    total, missed, fps = 0.0, 0, 0
    for seed in seeds:
        t0, n, rows, wins = synthetic(seed, kind)
        dets = [(b - t0) // ref.S for b in detections(NY, ref.hourly(NY, rows), cfg)]
        s, found, fp = nab(n, dets, wins)
        total += s
        missed += len(wins) - found
        fps += fp
    return total / len(seeds), missed, fps


CANDIDATES = {
    "before v2 (MEDIUM, mean/std, 30 samples)": dict(levels=[("hour_of_week", 30), ("hour_of_day", 30), ("all_hours", 30)], threshold=2.5),
    "young widen, 4 samples": dict(levels=[("hour_of_week", 4), ("hour_of_day", 4), ("all_hours", 4)], threshold=2.5, young_widen=True),
}
for T in (2.5, 3.0):
    for confirm in (2, 3, 4):
        for stat in ("mean_std", "ewma"):
            for clear in (None, 1.5):
                cfg = dict(levels=[("hour_of_week", 4), ("hour_of_day", 4), ("all_hours", 4)], threshold=T, young_widen=True,
                           confirm=confirm, statistic=stat, half_life=16)
                if clear:
                    cfg["clear_below"] = clear
                CANDIDATES[f"T {T}, confirm {confirm}, {stat}, clear {clear or T}"] = cfg

if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/nyc_taxi.csv"
    print("| setting | NYC taxi NAB | found | false alarms | synthetic counts | gauges | level shifts | synthetic mean |")
    print("|---|---|---|---|---|---|---|---|")
    for name, cfg in CANDIDATES.items():
        s, found, fp = nyc(path, cfg)
        syn = [synthetic_score(cfg, kind) for kind in ("count", "gauge", "shift")]
        cells = " | ".join(f"{x[0]:.1f} ({x[1]} missed, {x[2]} FP)" for x in syn)
        print(f"| {name} | {s:.1f} | {found}/5 | {fp} | {cells} | {sum(x[0] for x in syn) / 3:.1f} |", flush=True)
