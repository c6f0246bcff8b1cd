//! Counters for `/metrics`, rendered in the Prometheus text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the tick-duration histogram, in seconds.
const BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    ticks: BTreeMap<String, Histogram>,
    ticks_failed: u64,
    rules_evaluated: u64,
    rules_failed: u64,
    raised: BTreeMap<(String, String), u64>,
    reloads: BTreeMap<&'static str, u64>,
    ingest_rows: BTreeMap<String, u64>,
    ingest_rejected: BTreeMap<String, u64>,
    last_tick_at: Option<i64>,
}

/// The service's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    /// Connected SSE clients.
    pub sse_clients: AtomicI64,
}

/// Open findings by (tenant-free) severity, read from the store when scraped.
pub type OpenBySeverity = BTreeMap<String, u64>;

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A tick committed.
    pub fn tick(&self, cadence: &str, seconds: f64, evaluated: usize, failed: usize, raised: &[(String, String)], at: i64) {
        self.with(|c| {
            let h = c.ticks.entry(cadence.to_string()).or_default();
            for (slot, bound) in h.counts.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *slot += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
            c.rules_evaluated += evaluated as u64;
            c.rules_failed += failed as u64;
            for key in raised {
                *c.raised.entry(key.clone()).or_default() += 1;
            }
            c.last_tick_at = Some(at);
        });
    }

    /// A tick failed as a whole.
    pub fn tick_failed(&self) {
        self.with(|c| c.ticks_failed += 1);
    }

    /// A reload was attempted.
    pub fn reload(&self, ok: bool) {
        self.with(|c| *c.reloads.entry(if ok { "ok" } else { "failed" }).or_default() += 1);
    }

    /// Rows stored by ingestion.
    pub fn ingested(&self, table: &str, rows: usize) {
        self.with(|c| *c.ingest_rows.entry(table.to_string()).or_default() += rows as u64);
    }

    /// A batch refused.
    pub fn rejected(&self, table: &str) {
        self.with(|c| *c.ingest_rejected.entry(table.to_string()).or_default() += 1);
    }

    /// The text format.
    pub fn render(&self, open: &OpenBySeverity) -> String {
        let mut out = String::new();
        let sse = self.sse_clients.load(Ordering::SeqCst);
        self.with(|c| {
            let w = &mut out;
            head(w, "vigil_tick_duration_seconds", "histogram", "Wall time of one tick, by the longest cadence among the rules due.");
            for (cadence, h) in &c.ticks {
                for (bound, n) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(w, "vigil_tick_duration_seconds_bucket{{cadence=\"{cadence}\",le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(w, "vigil_tick_duration_seconds_bucket{{cadence=\"{cadence}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(w, "vigil_tick_duration_seconds_sum{{cadence=\"{cadence}\"}} {}", h.sum);
                let _ = writeln!(w, "vigil_tick_duration_seconds_count{{cadence=\"{cadence}\"}} {}", h.count);
            }
            head(w, "vigil_ticks_failed_total", "counter", "Ticks that failed as a whole (nothing written).");
            let _ = writeln!(w, "vigil_ticks_failed_total {}", c.ticks_failed);
            head(w, "vigil_rules_evaluated_total", "counter", "Rule evaluations that completed.");
            let _ = writeln!(w, "vigil_rules_evaluated_total {}", c.rules_evaluated);
            head(w, "vigil_rules_failed_total", "counter", "Rule evaluations that failed.");
            let _ = writeln!(w, "vigil_rules_failed_total {}", c.rules_failed);
            head(w, "vigil_findings_raised_total", "counter", "New findings, by type and severity.");
            for ((t, s), n) in &c.raised {
                let _ = writeln!(w, "vigil_findings_raised_total{{finding_type=\"{}\",severity=\"{}\"}} {n}", label(t), label(s));
            }
            head(w, "vigil_findings_open", "gauge", "Open (NEW or ACKNOWLEDGED) findings, by severity.");
            for (s, n) in open {
                let _ = writeln!(w, "vigil_findings_open{{severity=\"{}\"}} {n}", label(s));
            }
            head(w, "vigil_reloads_total", "counter", "Rule-set reloads, by result.");
            for result in ["ok", "failed"] {
                let _ = writeln!(w, "vigil_reloads_total{{result=\"{result}\"}} {}", c.reloads.get(result).copied().unwrap_or(0));
            }
            head(w, "vigil_ingest_rows_total", "counter", "Signal rows stored by ingestion, by table.");
            for (t, n) in &c.ingest_rows {
                let _ = writeln!(w, "vigil_ingest_rows_total{{table=\"{}\"}} {n}", label(t));
            }
            head(w, "vigil_ingest_rejected_total", "counter", "Ingestion batches refused, by table.");
            for (t, n) in &c.ingest_rejected {
                let _ = writeln!(w, "vigil_ingest_rejected_total{{table=\"{}\"}} {n}", label(t));
            }
            head(w, "vigil_sse_clients", "gauge", "Connected live-feed clients.");
            let _ = writeln!(w, "vigil_sse_clients {sse}");
            head(w, "vigil_last_tick_timestamp_seconds", "gauge", "Evaluation time of the last tick committed.");
            if let Some(at) = c.last_tick_at {
                let _ = writeln!(w, "vigil_last_tick_timestamp_seconds {}", at as f64 / 1e6);
            }
        });
        out
    }
}

fn head(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let m = Metrics::default();
        m.tick("heartbeat", 0.2, 3, 1, &[("SILENT_SITE".into(), "HIGH".into())], 1_700_000_000_000_000);
        m.reload(false);
        m.ingested("shifts", 5);
        let open = BTreeMap::from([("HIGH".to_string(), 2u64)]);
        let text = m.render(&open);
        for line in [
            "vigil_tick_duration_seconds_bucket{cadence=\"heartbeat\",le=\"0.1\"} 0",
            "vigil_tick_duration_seconds_bucket{cadence=\"heartbeat\",le=\"0.25\"} 1",
            "vigil_tick_duration_seconds_count{cadence=\"heartbeat\"} 1",
            "vigil_rules_failed_total 1",
            "vigil_findings_raised_total{finding_type=\"SILENT_SITE\",severity=\"HIGH\"} 1",
            "vigil_findings_open{severity=\"HIGH\"} 2",
            "vigil_reloads_total{result=\"failed\"} 1",
            "vigil_reloads_total{result=\"ok\"} 0",
            "vigil_ingest_rows_total{table=\"shifts\"} 5",
            "vigil_last_tick_timestamp_seconds 1700000000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
