//! Printing findings: a table for people, JSON or JSON lines for tools.

use super::*;

pub(super) fn print_findings(mut findings: Vec<Finding>, output: &OutputArgs) {
    if output.hide_suppressed {
        findings.retain(|f| !f.suppressed);
    }
    match output.format {
        Format::Jsonl => {
            for f in &findings {
                outln!("{}", serde_json::to_string(f).unwrap_or_default());
            }
        }
        Format::Json => outln!("{}", serde_json::to_string_pretty(&findings).unwrap_or_default()),
        Format::Table => out!("{}", table(&findings)),
    }
}

pub(super) fn table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".to_string();
    }
    let headers = ["detected_at", "severity", "finding_type", "tenant", "site", "guard", "entity", "runbook", "evidence"];
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            let evidence: Vec<String> = f
                .evidence
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect();
            vec![
                f.detected_at.clone(),
                match (f.suppressed, f.inhibited_by.is_some()) {
                    (true, _) => format!("{} (suppressed)", f.severity),
                    (false, true) => format!("{} (inhibited)", f.severity),
                    (false, false) => f.severity.clone(),
                },
                f.finding_type.clone(),
                f.tenant_id.clone(),
                f.site_id.clone(),
                f.guard_id.clone().unwrap_or_else(|| "-".into()),
                f.entity_id.clone().unwrap_or_else(|| "-".into()),
                f.runbook.clone(),
                evidence.join(" "),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    let counts = exec::count_by_type(findings);
    out.push_str(&format!(
        "\n{} finding(s): {}\n",
        findings.len(),
        counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    ));
    out
}
