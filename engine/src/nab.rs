//! Scoring detections against labelled anomaly windows the way the Numenta Anomaly
//! Benchmark does (Lavin and Ahmad, "Evaluating Real-time Anomaly Detection
//! Algorithms: the Numenta Anomaly Benchmark", 2015), from its published description.
//!
//! - The series' first 15 % of points (at most 750) are a probationary period:
//!   detections there are not scored.
//! - A detection inside a window scores `A_TP * sigma(y)` for the first detection of that
//!   window only (later ones score nothing), where `y` is its relative position in the
//!   window: -1 at the window's first point, 0 at its last. Earlier is better.
//! - A detection outside every window is a false positive. After a window it scores
//!   `A_FP * sigma(y)` with `y` its distance past that window's end in window lengths
//!   (sigma is negative there, tending to -1); before any window it scores `-A_FP`.
//! - A window without a detection scores `-A_FN`.
//! - `sigma(y) = 2 / (1 + e^(5y)) - 1`.
//! - Normalized: `100 * (S - S_null) / (S_perfect - S_null)`, where the null detector
//!   detects nothing and the perfect one detects each window at its first point.
//!
//! Positions count points of the series, not wall-clock time, as NAB does.

/// Weights of a scoring profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Its name.
    pub name: &'static str,
    /// Weight of a true positive.
    pub tp: f64,
    /// Weight of a false positive.
    pub fp: f64,
    /// Weight of a missed window.
    pub fn_: f64,
}

/// NAB's standard profile.
pub const STANDARD: Profile = Profile { name: "standard", tp: 1.0, fp: 0.11, fn_: 1.0 };
/// NAB's profile that punishes false positives more.
pub const LOW_FP: Profile = Profile { name: "reward_low_FP_rate", tp: 1.0, fp: 0.22, fn_: 1.0 };
/// NAB's profile that punishes missed windows more.
pub const LOW_FN: Profile = Profile { name: "reward_low_FN_rate", tp: 1.0, fp: 0.11, fn_: 2.0 };

/// The scaled sigmoid: close to 1 well before a window's end, 0 at it, tending to -1 after.
pub fn sigmoid(y: f64) -> f64 {
    2.0 / (1.0 + (5.0 * y).exp()) - 1.0
}

/// A labelled window: the indices of its first and last points in the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First point.
    pub start: usize,
    /// Last point (inclusive).
    pub end: usize,
}

impl Window {
    /// Relative position of point `i`: -1 at the first point, 0 at the last, past 0 after.
    fn position(self, i: usize) -> f64 {
        let length = (self.end - self.start).max(1) as f64;
        (i as f64 - self.end as f64) / length
    }
}

/// What happened to each detection and window.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The raw score S.
    pub raw: f64,
    /// Normalized to 0 (null detector) .. 100 (perfect detector).
    pub normalized: f64,
    /// For each window, the index of its scored detection, if any.
    pub detected: Vec<Option<usize>>,
    /// Detections outside every window (after the probationary period).
    pub false_positives: Vec<usize>,
}

/// Points in the probationary period of a series of `n` points.
pub fn probation(n: usize) -> usize {
    ((n as f64 * 0.15).floor() as usize).min(750)
}

/// Scores detections (indices into a series of `n` points, any order) against windows
/// (in order, not overlapping) with a profile.
pub fn score(n: usize, detections: &[usize], windows: &[Window], profile: Profile) -> Scored {
    let mut detections: Vec<usize> = detections.iter().copied().filter(|i| *i >= probation(n) && *i < n).collect();
    detections.sort_unstable();
    detections.dedup();
    let mut raw = 0.0;
    let mut detected = vec![None; windows.len()];
    let mut false_positives = Vec::new();
    for &i in &detections {
        match windows.iter().position(|w| w.start <= i && i <= w.end) {
            Some(k) => {
                if detected[k].is_none() {
                    detected[k] = Some(i);
                    raw += profile.tp * sigmoid(windows[k].position(i));
                }
            }
            None => {
                false_positives.push(i);
                raw += match windows.iter().rev().find(|w| w.end < i) {
                    Some(w) => profile.fp * sigmoid(w.position(i)),
                    None => -profile.fp,
                };
            }
        }
    }
    raw -= profile.fn_ * detected.iter().filter(|d| d.is_none()).count() as f64;
    let null = -profile.fn_ * windows.len() as f64;
    let perfect: f64 = windows.iter().map(|w| profile.tp * sigmoid(w.position(w.start))).sum();
    let normalized = if perfect > null { 100.0 * (raw - null) / (perfect - null) } else { 0.0 };
    Scored { raw, normalized, detected, false_positives }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_sigmoid_at_its_landmarks() {
        // 2 / (1 + e^-5) - 1 = 0.98661429815...
        assert!(close(sigmoid(-1.0), 2.0 / (1.0 + (-5.0f64).exp()) - 1.0));
        assert!((sigmoid(-1.0) - 0.986_614_298).abs() < 1e-8);
        assert!(close(sigmoid(0.0), 0.0));
        assert!(sigmoid(3.0) < -0.999_999 && sigmoid(3.0) > -1.0);
    }

    #[test]
    fn hand_computed_scores() {
        // 100 points: probation is the first 15. One window, points 40..=60 (length 20).
        let w = [Window { start: 40, end: 60 }];
        let sig = |y: f64| 2.0 / (1.0 + (5.0 * y).exp()) - 1.0;
        // Nothing detected: the null detector, S = -1, normalized 0.
        let none = score(100, &[], &w, STANDARD);
        assert!(close(none.raw, -1.0) && close(none.normalized, 0.0));
        // At the window's first point: the perfect detector, normalized 100.
        let perfect = score(100, &[40], &w, STANDARD);
        assert!(close(perfect.raw, sig(-1.0)) && close(perfect.normalized, 100.0));
        // Halfway (y = -0.5), a second detection in the window ignored, one false positive
        // 10 points after the window (y = 0.5) and one in probation (ignored).
        let s = score(100, &[5, 50, 55, 70], &w, STANDARD);
        let raw = sig(-0.5) + 0.11 * sig(0.5);
        assert!(close(s.raw, raw), "{} vs {raw}", s.raw);
        assert!(close(s.normalized, 100.0 * (raw + 1.0) / (sig(-1.0) + 1.0)));
        assert_eq!(s.detected, vec![Some(50)]);
        assert_eq!(s.false_positives, vec![70]);
        // A false positive before any window costs the whole A_FP; low-FP doubles it.
        let early = score(100, &[20], &w, STANDARD);
        assert!(close(early.raw, -0.11 - 1.0));
        assert!(close(score(100, &[20], &w, LOW_FP).raw, -0.22 - 1.0));
        // Low-FN doubles the cost of the missed window.
        assert!(close(score(100, &[], &w, LOW_FN).raw, -2.0));
    }

    #[test]
    fn probation_is_15_percent_at_most_750_points() {
        assert_eq!(probation(100), 15);
        assert_eq!(probation(10_320), 750);
    }
}
