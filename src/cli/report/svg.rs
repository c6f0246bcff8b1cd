//! The report's charts as SVG: daily bars of findings by category, checkpoint coverage
//! per day, and a heat map of findings by hour of week. Plain vector markup with fixed
//! sizes and number formats, so the same report gives the same bytes.

use std::fmt::Write as _;

use vigil_engine::report::Day;

/// Categories in a fixed order, each with its colour and a pattern-free label.
pub const CATEGORIES: [(&str, &str); 5] =
    [("SAFETY", "#c0392b"), ("SECURITY", "#d68910"), ("OPERATIONAL", "#2471a3"), ("DEVICE_HEALTH", "#7d3c98"), ("COMPLIANCE", "#1e8449")];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A day's label: `04` for a long period, `Sat 04` for a week or less.
fn day_label(date: &str, days: usize) -> String {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok();
    match d {
        Some(d) if days <= 7 => d.format("%a %d").to_string(),
        Some(d) => d.format("%d").to_string(),
        None => date.to_string(),
    }
}

/// Stacked daily bars of findings by category, with a legend.
pub fn daily_bars(days: &[Day]) -> String {
    let (w, h, left, bottom, top) = (640.0, 220.0, 36.0, 28.0, 24.0);
    let max = days.iter().map(|d| d.findings.values().sum::<u32>()).max().unwrap_or(0).max(1);
    let step = nice_step(max);
    let ymax = max.div_ceil(step) * step;
    let plot_h = h - bottom - top;
    let n = days.len().max(1) as f64;
    let slot = (w - left - 8.0) / n;
    let bar = (slot * 0.7).clamp(1.0, 36.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Findings per day by category" font-family="DejaVu Sans, sans-serif" font-size="10">"#
    );
    let mut tick = 0;
    while tick <= ymax {
        let y = top + plot_h - plot_h * f64::from(tick) / f64::from(ymax);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d5d8dc" stroke-width="0.5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{tick}</text>"##,
            w - 8.0,
            left - 4.0,
            y + 3.0
        );
        tick += step;
    }
    for (i, d) in days.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = top + plot_h;
        for (cat, colour) in CATEGORIES {
            let v = d.findings.get(cat).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let bh = plot_h * f64::from(v) / f64::from(ymax);
            y -= bh;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{bh:.1}" fill="{colour}"><title>{} {cat}: {v}</title></rect>"#,
                esc(&d.date)
            );
        }
        if days.len() <= 16 || i % (days.len() / 10 + 1) == 0 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##,
                x + bar / 2.0,
                h - bottom + 14.0,
                esc(&day_label(&d.date, days.len()))
            );
        }
    }
    let mut lx = left;
    for (cat, colour) in CATEGORIES {
        let _ = write!(
            s,
            r##"<rect x="{lx:.1}" y="6" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="15" fill="#333">{}</text>"##,
            lx + 14.0,
            cat.replace('_', " ").to_lowercase()
        );
        lx += 14.0 + 7.0 * cat.len() as f64 + 16.0;
    }
    s.push_str("</svg>");
    s
}

/// Checkpoint coverage per day as a line (percent), days without tours left out.
pub fn coverage_line(days: &[Day]) -> String {
    let (w, h, left, bottom, top) = (640.0, 180.0, 40.0, 28.0, 12.0);
    let plot_h = h - bottom - top;
    let n = days.len().max(1) as f64;
    let slot = (w - left - 8.0) / n;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Checkpoint coverage per day" font-family="DejaVu Sans, sans-serif" font-size="10">"#
    );
    for pct in [0, 25, 50, 75, 100] {
        let y = top + plot_h - plot_h * f64::from(pct) / 100.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d5d8dc" stroke-width="0.5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{pct}%</text>"##,
            w - 8.0,
            left - 4.0,
            y + 3.0
        );
    }
    let mut points = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let x = left + slot * (i as f64 + 0.5);
        if d.expected > 0 {
            let pct = 100.0 * f64::from(d.scanned) / f64::from(d.expected);
            let y = top + plot_h - plot_h * pct / 100.0;
            points.push(format!("{x:.1},{y:.1}"));
            let _ = write!(
                s,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="#2471a3"><title>{}: {pct:.1}%</title></circle>"##,
                esc(&d.date)
            );
        }
        if days.len() <= 16 || i % (days.len() / 10 + 1) == 0 {
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##,
                h - bottom + 14.0,
                esc(&day_label(&d.date, days.len()))
            );
        }
    }
    if points.len() > 1 {
        let _ = write!(s, r##"<polyline points="{}" fill="none" stroke="#2471a3" stroke-width="1.5"/>"##, points.join(" "));
    }
    if points.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">no tours with checkpoints in this period</text>"##,
            w / 2.0,
            h / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Findings by local hour of week: 7 rows (Monday first) of 24 cells.
pub fn heat_map(heat: &[Vec<u32>]) -> String {
    let (cell, left, top) = (22.0, 36.0, 18.0);
    let (w, h) = (left + 24.0 * cell + 8.0, top + 7.0 * cell + 8.0);
    let max = heat.iter().flatten().copied().max().unwrap_or(0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Findings by hour of week" font-family="DejaVu Sans, sans-serif" font-size="9">"#
    );
    for hour in (0..24).step_by(3) {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="12" text-anchor="middle" fill="#555">{hour:02}</text>"##,
            left + cell * f64::from(hour) + cell / 2.0
        );
    }
    for (d, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].iter().enumerate() {
        let y = top + cell * d as f64;
        let _ = write!(s, r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{name}</text>"##, left - 4.0, y + cell / 2.0 + 3.0);
        for hour in 0..24 {
            let v = heat.get(d).and_then(|r| r.get(hour)).copied().unwrap_or(0);
            // White to deep red by share of the busiest hour; counts are in the cells' titles.
            let a = if max == 0 { 0.0 } else { f64::from(v) / f64::from(max) };
            let (r, g, b) = (255.0 - 63.0 * a, 255.0 - 198.0 * a, 255.0 - 212.0 * a);
            let x = left + cell * hour as f64;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="rgb({:.0},{:.0},{:.0})" stroke="#eaecee" stroke-width="0.5"><title>{name} {hour:02}:00: {v}</title></rect>"##,
                cell - 1.0,
                cell - 1.0,
                r,
                g,
                b
            );
            if v > 0 {
                let _ = write!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{}">{v}</text>"##,
                    x + cell / 2.0 - 0.5,
                    y + cell / 2.0 + 3.0,
                    if a > 0.6 { "#fff" } else { "#222" }
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// A round step for about five grid lines.
fn nice_step(max: u32) -> u32 {
    for step in [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000] {
        if max / step <= 6 {
            return step;
        }
    }
    10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_and_deterministic() {
        let mut a = Day { date: "2025-10-04".into(), expected: 10, scanned: 8, ..Day::default() };
        a.findings.insert("SAFETY".into(), 2);
        a.findings.insert("SECURITY".into(), 3);
        let b = Day { date: "2025-10-05".into(), ..Day::default() };
        let days = vec![a, b];
        let bars = daily_bars(&days);
        assert_eq!(bars, daily_bars(&days));
        assert_eq!(bars.matches("<rect").count(), 2 + CATEGORIES.len(), "two segments and the legend");
        assert!(bars.contains("<title>2025-10-04 SECURITY: 3</title>"));
        let line = coverage_line(&days);
        assert!(line.contains("<title>2025-10-04: 80.0%</title>"));
        let mut heat = vec![vec![0; 24]; 7];
        heat[5][9] = 4;
        let map = heat_map(&heat);
        assert_eq!(map.matches("<rect").count(), 7 * 24);
        assert!(map.contains("<title>Sat 09:00: 4</title>"));
        assert_eq!(nice_step(3), 1);
        assert_eq!(nice_step(40), 10);
    }
}
