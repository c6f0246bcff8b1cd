#!/usr/bin/env python3
"""Independent reference of Vigil's anomaly rules v2 (issue 16), stdlib only, written
from the specification in README "Anomaly detection v2", not from the engine's code.

One site, one series of readings (UTC epoch seconds, value) summed per site-local
hour. For each bucket, in time order, the baseline of each level (hour of week, hour
of day, all hours) from the earlier samples of its slot: n, and mean/sd, median/MAD
or EWMA (weights 0.5^(k / half_life), k = 0 for the latest sample, over the last
`window` samples; sd bias-corrected). The first level with n >= its stable count is
used. z = (x - expected) / spread (spread 1 when 0). With `young widen` a threshold t
becomes t * young_factor(t, n). A finding holds at a bucket when, in the stretch of
consecutive buckets with z at or beyond the clearing level ending there, some
`confirm` consecutive buckets are at or beyond the threshold. A finding is raised at
the first bucket of a holding stretch. `exclude_outliers E`: samples whose |z| against
all earlier samples of a level (with that level's stable count) is >= E are left out
of that level's later baselines.

Used by tools/anomaly_v2/cases.py (case files) and evaluate.py (NYC taxi and
synthetic series).
"""
import math
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

S = 3600


class Site:
    def __init__(self, zone):
        self.tz = ZoneInfo(zone)

    def off(self, t):
        return int(datetime.fromtimestamp(t, self.tz).utcoffset().total_seconds())

    def bucket(self, t):
        return t - ((t + self.off(t)) % S)

    def slot(self, level, b):
        d = datetime.fromtimestamp(b + self.off(b), timezone.utc)
        return {"hour_of_week": d.weekday() * 24 + d.hour, "hour_of_day": d.hour, "all_hours": 0}[level]


def young_factor(t, n):
    if n < 2:
        return 1.0
    nu = n - 1
    q = t + (t**3 + t) / (4 * nu) + (5 * t**5 + 16 * t**3 + 3 * t) / (96 * nu**2) \
        + (3 * t**7 + 19 * t**5 + 17 * t**3 - 15 * t) / (384 * nu**3)
    return q * math.sqrt(1 + 1 / n) / t


def median(xs):
    ys = sorted(xs)
    m = len(ys) // 2
    return ys[m] if len(ys) % 2 else (ys[m - 1] + ys[m]) / 2


def baseline(hist, cfg):
    """(expected, spread) of a slot's earlier samples."""
    n = len(hist)
    stat = cfg.get("statistic", "mean_std")
    if stat == "mean_std":
        m = sum(hist) / n
        sd = math.sqrt(sum((x - m) ** 2 for x in hist) / (n - 1)) if n > 1 else 0.0
        return m, (sd if sd > 0 else cfg.get("min_spread", 1.0))
    if stat == "ewma":
        h = cfg.get("half_life", 16)
        win = hist[-cfg.get("window", math.ceil(8 * h)):]
        k = len(win)
        w = [0.5 ** ((k - 1 - i) / h) for i in range(k)]
        W = sum(w)
        W2 = sum(x * x for x in w)
        m = sum(a * b for a, b in zip(w, win)) / W
        sd = 0.0
        if k >= 2:
            sd = math.sqrt(sum(a * (b - m) ** 2 for a, b in zip(w, win)) / (W - W2 / W))
        return m, (sd if sd > 0 else cfg.get("min_spread", 1.0))
    win = hist[-cfg.get("window", 52):]
    med = median(win)
    mad = median([abs(x - med) for x in win])
    if mad > 0:
        return med, 1.4826 * mad
    dev = sum(abs(x - med) for x in win) / len(win)
    return med, (1.2533 * dev if dev > 0 else cfg.get("min_spread", 1.0))


def hourly(site, readings):
    sums = {}
    for t, v in readings:
        b = site.bucket(t)
        sums[b] = sums.get(b, 0.0) + v
    return sorted(sums.items())


def score(site, buckets, cfg):
    """[(b, x, z, n, level, expected, spread)] for every bucket (z None: not stable)."""
    levels = cfg["levels"]  # [(level, stable_after)]
    hist = {}
    out = []
    for b, x in buckets:
        res = (b, x, None, None, None, None, None)
        for level, k in levels:
            hs = hist.get((level, site.slot(level, b)), [])
            if len(hs) >= k and len(hs) >= 1:
                m, sp = baseline(hs, cfg)
                res = (b, x, (x - m) / sp, len(hs), level, m, sp)
                break
        out.append(res)
        for level, k in levels:
            hs = hist.setdefault((level, site.slot(level, b)), [])
            e = cfg.get("exclude_outliers")
            if e is not None and len(hs) >= max(k, 2):
                m, sp = baseline(hs, cfg)
                if abs((x - m) / sp) >= e:
                    continue
            hs.append(x)
    return out


def holding(scored, cfg, direction):
    """Buckets at which the rule holds (direction +1 above, -1 below)."""
    T = cfg["threshold"]
    clear = min(cfg.get("clear_below", T), T)
    confirm = cfg.get("confirm", 1)
    young = cfg.get("young_widen", False)
    held = []
    prev = None
    on = False
    run = 0
    for b, x, z, n, level, m, sp in scored:
        if prev is not None and b - prev != S:
            on, run = False, 0
        prev = b
        if z is None:
            on, run = False, 0
            continue
        zz = z * direction
        t_eff = T * young_factor(T, n) if young else T
        c_eff = clear * young_factor(clear, n) if young else clear
        if zz < c_eff:
            on, run = False, 0
            continue
        run = run + 1 if zz >= t_eff else 0
        if run >= confirm:
            on = True
        if on:
            held.append(b)
    return held


def raises(held):
    """The first bucket of each holding stretch: where a finding is raised."""
    s = set(held)
    return [b for b in held if b - S not in s]


SHIPPED_METRIC = dict(
    levels=[("hour_of_week", 4), ("hour_of_day", 4), ("all_hours", 4)],
    statistic="ewma", half_life=16, threshold=2.5, young_widen=True, confirm=3, clear_below=1.5,
)
