//! The report as a paginated PDF, typeset by Typst (as a library): a cover, the
//! contents, tables that break across pages with their header repeated, and the charts
//! as vector graphics (the same SVG as the HTML report).
//!
//! Reproducible: the fonts are the ones compiled into the binary (typst-assets), the
//! document has no creation date, and its PDF identifier is derived from the report id,
//! so the same report gives the same bytes.

use std::collections::HashMap;

use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime};
use typst::layout::PagedDocument;
use typst::syntax::{FileId, Source, VirtualPath};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use vigil_engine::report::Report;

use super::{html, svg};

/// A Typst world with one document, the report's charts and the embedded fonts.
struct ReportWorld {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
    main: Source,
    files: HashMap<FileId, Bytes>,
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &self.library
    }
    fn book(&self) -> &LazyHash<FontBook> {
        &self.book
    }
    fn main(&self) -> FileId {
        self.main.id()
    }
    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::NotFound(id.vpath().as_rootless_path().into()))
        }
    }
    fn file(&self, id: FileId) -> FileResult<Bytes> {
        self.files.get(&id).cloned().ok_or_else(|| FileError::NotFound(id.vpath().as_rootless_path().into()))
    }
    fn font(&self, index: usize) -> Option<Font> {
        self.fonts.get(index).cloned()
    }
    fn today(&self, _offset: Option<i64>) -> Option<Datetime> {
        // No wall clock in a report.
        None
    }
}

/// A Typst string literal.
fn s(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `table(columns: .., align: .., table.header(..), cells..)` with string cells: the first
/// column takes the room left (and wraps), the others fit their content; the header row
/// repeats on every page the table breaks onto.
fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let align: Vec<&str> = right.iter().map(|r| if *r { "right" } else { "left" }).collect();
    let mut widths = vec!["1fr"];
    widths.extend(std::iter::repeat_n("auto", header.len().saturating_sub(1)));
    let mut t = format!(
        "#table(columns: ({}), align: ({}), stroke: (x: none, y: 0.4pt + luma(200)), inset: (x: 4pt, y: 3pt),\n  table.header({}),\n",
        widths.join(", "),
        align.join(", "),
        header.iter().map(|h| format!("[*{}*]", escape_markup(h))).collect::<Vec<_>>().join(", ")
    );
    for r in rows {
        t.push_str("  ");
        // Identifiers such as CORRELATION_RESOURCE_SHORTAGE may break after an underscore.
        t.push_str(&r.iter().map(|c| s(&c.replace('_', "_\u{200B}"))).collect::<Vec<_>>().join(", "));
        t.push_str(",\n");
    }
    t.push_str(")\n");
    t
}

/// Plain words in markup (headers we write ourselves): escape what markup would read.
fn escape_markup(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\#*_`$<>@[]~/=-+:".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn text_par(t: &str) -> String {
    format!("#text({})\n\n", s(t))
}

/// The Typst document of a report.
pub fn source(r: &Report) -> String {
    let mut d = String::new();
    let title = format!("Activity report {} {} to {}", r.tenant, r.from, r.to);
    d.push_str(&format!("#set document(title: {}, author: \"Vigil\", date: none)\n", s(&title)));
    d.push_str("#set text(font: \"Libertinus Serif\", size: 10pt, lang: \"en\")\n");
    d.push_str(&format!(
        "#set page(paper: \"a4\", margin: (x: 2cm, top: 2cm, bottom: 2.4cm), footer: context [#set text(8pt, fill: luma(90)); {} #h(1fr) #counter(page).display(\"1 / 1\", both: true)])\n",
        escape_markup(&r.id)
    ));
    d.push_str("#set heading(numbering: \"1.\")\n#show heading.where(level: 1): it => { v(6pt); it; v(2pt) }\n#set par(justify: false)\n");
    // Cover.
    let scope = match &r.site {
        Some(site) => format!("Site {site}"),
        None => format!("{} sites", r.sites.len()),
    };
    d.push_str("#page(footer: none)[\n#v(5cm)\n");
    d.push_str("#text(28pt, weight: \"bold\")[Activity report]\n\n#v(8pt)\n");
    d.push_str(&format!("#text(16pt, {})\n\n", s(&format!("Client {} · {}", r.tenant, scope))));
    d.push_str(&format!("#text(14pt, {})\n\n", s(&format!("{} to {} ({} day(s), each site in its local time)", r.from, r.to, r.days))));
    d.push_str("#v(1fr)\n#set text(9pt, fill: luma(70))\n");
    d.push_str(&text_par(&format!("Report {}", r.id)));
    d.push_str(&text_par(&format!(
        "Built from rule-set revision {}, {} finding(s) and {} signal row(s). Input hash {}.",
        r.built_from.revision, r.built_from.findings, r.built_from.signal_rows, r.built_from.input_hash
    )));
    if r.internal {
        d.push_str(&text_par("Internal: operator names and notes are included."));
    }
    d.push_str("]\n");
    d.push_str("#outline(title: [Contents], depth: 1)\n#pagebreak()\n");

    d.push_str("= Summary\n");
    d.push_str(&format!("#block(fill: luma(240), inset: 8pt, width: 100%, {})\n\n", s(&html::headline(r))));
    let rows: Vec<Vec<String>> = html::summary(r).into_iter().map(|(a, b, c, e)| vec![a, b, c, e]).collect();
    d.push_str(&table(&["Measure", "This period", "Previous period", "Change"], &[false, true, true, true], &rows));

    d.push_str("= Coverage\n");
    let rows: Vec<Vec<String>> = r
        .sites
        .iter()
        .map(|x| {
            let c = &x.coverage;
            vec![
                format!("{} {}", x.site.site_id, x.site.name),
                x.site.timezone.clone(),
                x.hours_in_period.to_string(),
                c.scheduled.to_string(),
                c.worked.to_string(),
                c.no_shows.to_string(),
                c.late_checkins.to_string(),
                format!("{:.2}", c.hours_on_duty),
            ]
        })
        .collect();
    d.push_str(&table(
        &["Site", "Time zone", "Hours", "Shifts", "Worked", "No-shows", "Late in", "On duty (h)"],
        &[false, false, true, true, true, true, true, true],
        &rows,
    ));

    d.push_str("= Patrols\n");
    let rows: Vec<Vec<String>> = r
        .sites
        .iter()
        .map(|x| {
            let p = &x.patrols;
            vec![
                x.site.site_id.clone(),
                p.scheduled.to_string(),
                p.completed.to_string(),
                p.late.to_string(),
                p.abandoned.to_string(),
                p.missed.to_string(),
                format!("{} / {}", p.checkpoints_scanned, p.checkpoints_expected),
                html::pct(p.checkpoints_scanned, p.checkpoints_expected),
            ]
        })
        .collect();
    d.push_str(&table(
        &["Site", "Tours", "Completed", "Late", "Abandoned", "Not started", "Checkpoints", "Coverage"],
        &[false, true, true, true, true, true, true, true],
        &rows,
    ));
    d.push_str("== Tours with the lowest checkpoint coverage\n");
    let tours: Vec<Vec<String>> = r
        .sites
        .iter()
        .flat_map(|x| x.worst_tours.iter())
        .map(|t| {
            vec![
                t.site_id.clone(),
                t.tour_id.clone(),
                t.guard_id.clone().unwrap_or_else(|| "—".into()),
                t.scheduled.clone(),
                t.outcome.to_string(),
                format!("{} / {} ({})", t.scanned, t.expected, html::pct(t.scanned, t.expected)),
            ]
        })
        .collect();
    if tours.is_empty() {
        d.push_str(&text_par("Every tour scanned all its checkpoints."));
    } else {
        d.push_str(&table(
            &["Site", "Tour", "Guard", "Scheduled (local)", "Outcome", "Scanned"],
            &[false, false, false, false, false, true],
            &tours,
        ));
    }
    d.push_str("== Checkpoints scanned least often\n");
    let cps: Vec<Vec<String>> = r
        .sites
        .iter()
        .flat_map(|x| x.worst_checkpoints.iter())
        .map(|c| {
            vec![
                c.site_id.clone(),
                c.checkpoint_id.clone(),
                format!("{} of {} ({})", c.tours_scanned, c.tours, html::pct(c.tours_scanned, c.tours)),
            ]
        })
        .collect();
    if cps.is_empty() {
        d.push_str(&text_par("Every checkpoint was scanned on every started tour."));
    } else {
        d.push_str(&table(&["Site", "Checkpoint", "Tours that scanned it"], &[false, false, true], &cps));
    }

    d.push_str("= Findings\n");
    if r.by_category.is_empty() {
        d.push_str(&text_par("No findings in this period."));
    } else {
        let sev = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
        let rows: Vec<Vec<String>> = r
            .by_category
            .iter()
            .map(|(c, m)| {
                let mut row = vec![c.clone()];
                row.extend(sev.iter().map(|s| m.get(*s).copied().unwrap_or(0).to_string()));
                row.push(m.values().sum::<u32>().to_string());
                row
            })
            .collect();
        d.push_str(&table(&["Category", "Critical", "High", "Medium", "Low", "Total"], &[false, true, true, true, true, true], &rows));
    }
    d.push_str("= Response times\n");
    d.push_str(&text_par("Time from a finding to its acknowledgement (or resolution), against the escalation SLA of its runbook."));
    if r.sla.is_empty() {
        d.push_str(&text_par("No findings, so nothing to respond to."));
    } else {
        let m = |v: Option<f64>| v.map_or("—".to_string(), |m| format!("{m:.1} min"));
        let rows: Vec<Vec<String>> = r
            .sla
            .iter()
            .map(|x| {
                vec![
                    x.runbook.clone(),
                    format!("{} min", x.sla_minutes),
                    x.findings.to_string(),
                    x.met.to_string(),
                    x.missed.to_string(),
                    x.pending.to_string(),
                    m(x.median_ack_minutes),
                    m(x.median_resolve_minutes),
                ]
            })
            .collect();
        d.push_str(&table(
            &["Runbook", "SLA", "Findings", "Met", "Missed", "Pending", "To ack (median)", "To resolve (median)"],
            &[false, true, true, true, true, true, true, true],
            &rows,
        ));
    }
    d.push_str("= Incidents\n");
    if r.incidents.is_empty() {
        d.push_str(&text_par("No incident of high or critical severity."));
    }
    for i in &r.incidents {
        let head = format!(
            "#{} {} · {} at {}{}",
            i.id,
            i.severity,
            i.finding_type,
            i.site_id,
            i.guard_id.as_ref().map(|g| format!(" (guard {g})")).unwrap_or_default()
        );
        d.push_str(&format!("#block(breakable: false)[#text(weight: \"bold\", {})\n", s(&head)));
        for st in &i.steps {
            d.push_str(&format!("- #text({})\n", s(&format!("{} — {}", st.at, st.what))));
        }
        d.push_str("]\n");
    }
    d.push_str("= Trends\n");
    d.push_str("#figure(image(\"daily.svg\", width: 100%), caption: [Findings per day, by category (local days).])\n");
    d.push_str("#figure(image(\"coverage.svg\", width: 100%), caption: [Checkpoint coverage per day (tours by their scheduled start).])\n");
    d.push_str("#figure(image(\"heat.svg\", width: 100%), caption: [Findings by local hour of week.])\n");
    d
}

/// The PDF's bytes, or Typst's errors.
pub fn render(r: &Report) -> Result<Vec<u8>, String> {
    let fonts: Vec<Font> = typst_assets::fonts().flat_map(|data| Font::iter(Bytes::new(data))).collect();
    let book = FontBook::from_fonts(&fonts);
    let main_id = FileId::new(None, VirtualPath::new("report.typ"));
    let mut files = HashMap::new();
    // In the PDF the charts use the embedded serif font.
    let font = |svg: String| Bytes::new(svg.replace("DejaVu Sans, sans-serif", "Libertinus Serif").into_bytes());
    files.insert(FileId::new(None, VirtualPath::new("daily.svg")), font(svg::daily_bars(&r.daily)));
    files.insert(FileId::new(None, VirtualPath::new("coverage.svg")), font(svg::coverage_line(&r.daily)));
    files.insert(FileId::new(None, VirtualPath::new("heat.svg")), font(svg::heat_map(&r.heat)));
    let world = ReportWorld {
        library: LazyHash::new(Library::default()),
        book: LazyHash::new(book),
        fonts,
        main: Source::new(main_id, source(r)),
        files,
    };
    let doc: PagedDocument = typst::compile(&world)
        .output
        .map_err(|errors| errors.iter().map(|e| format!("typst: {}", e.message)).collect::<Vec<_>>().join("\n"))?;
    let options =
        typst_pdf::PdfOptions { ident: typst::foundations::Smart::Custom(&r.id), timestamp: None, ..typst_pdf::PdfOptions::default() };
    typst_pdf::pdf(&doc, &options)
        .map_err(|errors| errors.iter().map(|e| format!("typst-pdf: {}", e.message)).collect::<Vec<_>>().join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_typst() {
        assert_eq!(s(r#"a "b" \ c"#), r#""a \"b\" \\ c""#);
        assert_eq!(escape_markup("Not started"), "Not started");
        assert_eq!(escape_markup("To ack (median) #1"), "To ack (median) \\#1");
    }
}
