//! Every timestamp and duration helper in one place: how times are read (ISO-8601
//! with a zone, to UTC microseconds), written (ISO-8601 UTC with `Z`), and how
//! durations are spelled (`15m`, `1h15m`).
//!
//! Invariant: a time is an `i64` of microseconds since the epoch, UTC; a duration
//! is an `i64` of microseconds.

/// Parses an ISO-8601 timestamp with a zone (`Z` or `+01:00`) to UTC microseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    if chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").is_ok()
    {
        return Err(format!("timestamp `{text}` has no zone: write it in UTC with Z, e.g. 2025-10-04T12:00:00Z"));
    }
    Err(format!("`{text}` is not an ISO-8601 timestamp such as 2025-10-04T12:00:00Z"))
}

/// Formats microseconds since the epoch as ISO-8601 UTC with `Z`.
pub fn iso(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| {
            if micros % 1_000_000 == 0 {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            }
        })
        .unwrap_or_default()
}

/// `1h15m`, `45s`, `2d3h`: a duration as an operator reads it.
pub fn format_duration(micros: i64) -> String {
    let negative = micros < 0;
    let mut secs = micros.unsigned_abs() / 1_000_000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    if negative {
        out.insert(0, '-');
    }
    out
}

/// Microseconds in a duration written as digits and a unit (`500ms`, `30s`, `15m`,
/// `2h`, `30d`, `1w`), the one spelling used by rules, `--every` and `--context`.
pub fn duration_micros(text: &str) -> Option<i64> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let unit_micros: i64 = match unit {
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        "w" => 604_800_000_000,
        _ => return None,
    };
    digits.parse::<i64>().ok()?.checked_mul(unit_micros)
}
