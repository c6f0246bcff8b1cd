//! `vigil findings` and `vigil status`: the findings store, its lifecycle, and what ops
//! look at during the night.

use super::*;

pub(super) fn findings_command(state: &Path, action: FindingsCommand) -> CliResult {
    use vigil_engine::store;
    if !state.exists() {
        return Err(input_err(format!("no state database `{}` (audit --state or watch writes it)", state.display())));
    }
    let db = |e: vigil_engine::store::StateError| CliError::Eval(format!("error: {}: {e}", state.display()));
    match action {
        FindingsCommand::List { status, format } => {
            let Some(listing) = store::Listing::parse(&status) else {
                return Err(input_err(format!("unknown status `{status}` (open, new, acknowledged, resolved or all)")));
            };
            let rows = store::list(state, listing).map_err(db)?;
            match format {
                Format::Table => {
                    outln!(
                        "{:>5}  {:<12}  {:<8}  {:<34}  {:<8}  {:<8}  {:<10}  {:<12}  {:<20}  {:<20}  {:>5}",
                        "id",
                        "status",
                        "severity",
                        "finding_type",
                        "tenant",
                        "site",
                        "guard",
                        "entity",
                        "first_seen",
                        "last_seen",
                        "seen"
                    );
                    for r in &rows {
                        outln!(
                            "{:>5}  {:<12}  {:<8}  {:<34}  {:<8}  {:<8}  {:<10}  {:<12}  {:<20}  {:<20}  {:>5}{}",
                            r.id,
                            r.status,
                            r.severity,
                            r.finding_type,
                            r.tenant_id,
                            r.site_id,
                            r.guard_id.as_deref().unwrap_or("-"),
                            r.entity_id.as_deref().unwrap_or("-"),
                            r.first_seen,
                            r.last_seen,
                            r.occurrences,
                            if r.holding { "" } else { "  (no longer holds)" }
                        );
                    }
                    eprintln!("{} finding(s)", rows.len());
                }
                Format::Json | Format::Jsonl => {
                    for r in &rows {
                        outln!("{}", serde_json::to_string(r).unwrap_or_default());
                    }
                }
            }
            Ok(())
        }
        FindingsCommand::Show { id } => {
            let rows = store::list(state, store::Listing::All).map_err(db)?;
            let Some(r) = rows.iter().find(|r| r.id == id) else { return Err(input_err(format!("no finding {id}"))) };
            outln!("finding {} {} ({})", r.id, r.finding_type, r.status);
            outln!(
                "  where        tenant {} site {} guard {} entity {}",
                r.tenant_id,
                r.site_id,
                r.guard_id.as_deref().unwrap_or("-"),
                r.entity_id.as_deref().unwrap_or("-")
            );
            outln!("  what         {} | {} {} | runbook {}", r.title, r.category, r.severity, r.runbook);
            outln!(
                "  seen         first {}  last {}  {} time(s){}",
                r.first_seen,
                r.last_seen,
                r.occurrences,
                if r.holding { "" } else { ", no longer holds" }
            );
            outln!("  evidence     {}", r.evidence);
            if let Some(by) = &r.inhibited_by {
                outln!("  inhibited by {by}");
            }
            outln!("  provenance   rule {} (text {}), SQL {}, rule set {}", r.rule, r.rule_hash, r.sql_hash, r.ruleset_revision);
            if let (Some(by), Some(at)) = (&r.acknowledged_by, &r.acknowledged_at) {
                outln!("  acknowledged by {by} at {at}");
            }
            if let (Some(by), Some(at)) = (&r.resolved_by, &r.resolved_at) {
                outln!("  resolved     by {by} at {at}");
            }
            outln!("  history:");
            for (at, event, detail, who) in store::history(state, id).map_err(db)? {
                outln!(
                    "    {at}  {event}{}{}",
                    detail.map(|d| format!("  {d}")).unwrap_or_default(),
                    who.map(|w| format!("  by {w}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        FindingsCommand::Ack(step) => lifecycle_step(state, &step, false),
        FindingsCommand::Resolve(step) => lifecycle_step(state, &step, true),
    }
}

pub(super) fn status(state: &Path) -> CliResult {
    use vigil_engine::store;
    if !state.exists() {
        return Err(input_err(format!("no state database `{}` (audit --state or watch writes it)", state.display())));
    }
    let db = |e: vigil_engine::store::StateError| CliError::Eval(format!("error: {}: {e}", state.display()));
    outln!("state {}", state.display());
    outln!("  last tick        {}", store::last_tick(state).map_err(db)?.unwrap_or_else(|| "none".into()));
    let all = store::list(state, store::Listing::All).map_err(db)?;
    let count = |status: store::Status| all.iter().filter(|f| f.status == status).count();
    outln!(
        "  findings         {} new, {} acknowledged, {} resolved",
        count(store::Status::New),
        count(store::Status::Acknowledged),
        count(store::Status::Resolved)
    );
    let open: Vec<&store::Stored> = all.iter().filter(|f| f.status != store::Status::Resolved).collect();
    for level in ["CRITICAL", "HIGH", "MEDIUM", "LOW"] {
        let n = open.iter().filter(|f| f.severity == level).count();
        if n > 0 {
            outln!("    open {level:<9}  {n}");
        }
    }
    let sig = load::Signals::from_connection(load::open_database().map_err(|e| db(e.into()))?);
    for (metric, minutes, until) in vigil_engine::baseline::watermarks(&sig, state).map_err(db)? {
        outln!("  baseline         {metric}: {minutes}-minute buckets folded until {}", exec::iso(until));
    }
    let reloads = store::reloads(state).map_err(db)?;
    let failed: Vec<&store::Reload> = reloads.iter().filter(|r| !r.ok).collect();
    outln!("  reloads          {} ok, {} failed", reloads.len() - failed.len(), failed.len());
    if let Some(last) = reloads.iter().rev().find(|r| r.ok) {
        outln!("    last ok        {} rule set {}", last.at, last.revision.as_deref().unwrap_or("?"));
    }
    for r in &failed {
        outln!("    failed at {}:", r.at);
        for line in r.error.as_deref().unwrap_or("").lines() {
            outln!("      {line}");
        }
    }
    Ok(())
}

pub(super) fn lifecycle_step(state: &Path, step: &StepArgs, resolve: bool) -> CliResult {
    let StepArgs { id, by, note, at } = step;
    let (id, by, note) = (*id, by.as_str(), note.as_deref());
    let at = match at {
        Some(t) => exec::iso(parse_time(t, "--at")?),
        None => exec::iso(chrono::Utc::now().timestamp() * 1_000_000),
    };
    match vigil_engine::store::step(state, id, resolve, by, &at, note, None) {
        Ok(()) => {
            outln!("finding {id} {} by {by} at {at}", if resolve { "resolved" } else { "acknowledged" });
            Ok(())
        }
        Err(vigil_engine::store::StepError::Db(e)) => Err(CliError::Eval(format!("error: {}: {e}", state.display()))),
        Err(e) => Err(input_err(e.to_string())),
    }
}
