//! `vigil actions`: the runbook actions' outbox and log from the command line: list,
//! show (with every attempt), approve, reject, replay the dead-letter list, and the
//! kill switches. It works on the state database, so a running `vigil serve` picks
//! the decisions up at its next delivery pass.

use super::*;
use vigil_engine::outbox::{self, ActionQuery, Decision, KillSwitch, Status};

pub(super) fn actions_command(state: &Path, action: ActionsCommand) -> CliResult {
    if !state.exists() {
        return Err(input_err(format!("no state database `{}` (vigil serve writes it)", state.display())));
    }
    let db = |e: vigil_engine::store::StateError| CliError::Eval(format!("error: {}: {e}", state.display()));
    let now = || exec::iso(chrono::Utc::now().timestamp_micros());
    match action {
        ActionsCommand::List { status, finding, action, format } => {
            let statuses = match status {
                Some(s) => Some(
                    s.split(',')
                        .map(|w| {
                            Status::parse(w.trim()).ok_or_else(|| {
                                let all: Vec<&str> = outbox::STATUSES.iter().map(|s| s.name()).collect();
                                input_err(format!("--status: `{w}` is not an action status ({})", all.join(", ")))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            let q = ActionQuery { statuses, findings: finding.map(|f| vec![f]), action, ..ActionQuery::default() };
            let rows = outbox::list(state, &q).map_err(db)?;
            match format {
                Format::Table => {
                    outln!(
                        "{:>5}  {:<17}  {:<8}  {:>7}  {:<8}  {:<8}  {:<22}  {:<24}  {:<20}  {:>3}",
                        "id",
                        "status",
                        "mode",
                        "finding",
                        "tenant",
                        "site",
                        "action",
                        "target",
                        "due",
                        "try"
                    );
                    for a in &rows {
                        outln!(
                            "{:>5}  {:<17}  {:<8}  {:>7}  {:<8}  {:<8}  {:<22}  {:<24}  {:<20}  {:>3}",
                            a.id,
                            a.status.name(),
                            a.plan.mode.name(),
                            a.plan.finding_id,
                            a.plan.tenant_id,
                            a.plan.site_id,
                            a.plan.action,
                            a.plan.target,
                            exec::iso(a.plan.due_us),
                            a.attempts
                        );
                    }
                    outln!("{} action(s)", rows.len());
                }
                Format::Json | Format::Jsonl => {
                    for a in &rows {
                        outln!("{}", serde_json::to_string(a).unwrap_or_default());
                    }
                }
            }
            Ok(())
        }
        ActionsCommand::Show { id } => {
            let q = ActionQuery { ids: Some(vec![id]), ..ActionQuery::default() };
            let a = outbox::list(state, &q).map_err(db)?.into_iter().next().ok_or_else(|| input_err(format!("no action {id}")))?;
            outln!("action {}: {} -> {} ({}, {})", a.id, a.plan.action, a.plan.target, a.plan.kind.name(), a.plan.mode.name());
            outln!("status:   {}", a.status);
            outln!("finding:  {} (epoch {}), tenant {}, site {}", a.plan.finding_id, a.plan.epoch, a.plan.tenant_id, a.plan.site_id);
            outln!("runbook:  {} step {}", a.plan.runbook, a.plan.step);
            outln!("key:      {}", a.plan.key);
            outln!("due:      {}", exec::iso(a.plan.due_us));
            if let Some(role) = &a.plan.approval {
                outln!("approval: {role}{}", a.decided_by.as_ref().map(|w| format!(", decided by {w}")).unwrap_or_default());
            }
            outln!("payload:  {} (sha256 {})", a.plan.payload, a.plan.payload_hash);
            outln!("\nlog:");
            for e in outbox::log(state, id).map_err(db)? {
                let extra = [e.code.map(|c| format!("HTTP {c}")), e.took_ms.map(|t| format!("{t} ms")), e.who.map(|w| format!("by {w}"))]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                outln!(
                    "  {}  {:<18} {}{}",
                    e.at,
                    e.event,
                    e.detail.unwrap_or_default(),
                    if extra.is_empty() { String::new() } else { format!(" ({extra})") }
                );
            }
            Ok(())
        }
        ActionsCommand::Approve(d) | ActionsCommand::Reject(d) | ActionsCommand::Replay(d) if d.note.trim().is_empty() => {
            Err(input_err("--note must say why"))
        }
        ActionsCommand::Approve(d) => decide(state, d, Decision::Approve),
        ActionsCommand::Reject(d) => decide(state, d, Decision::Reject),
        ActionsCommand::Replay(d) => decide(state, d, Decision::Replay),
        ActionsCommand::Kill { tenant, by, note, off } => {
            if note.trim().is_empty() {
                return Err(input_err("--note must say why"));
            }
            let scope = tenant.unwrap_or_else(|| "*".into());
            outbox::set_switch(state, &KillSwitch { scope: scope.clone(), killed: !off, by, at: now() }).map_err(db)?;
            outln!(
                "kill switch {} {}",
                if scope == "*" { "(global)".to_string() } else { format!("of tenant {scope}") },
                if off { "released" } else { "on" }
            );
            Ok(())
        }
    }
}

fn decide(state: &Path, d: DecideArgs, decision: Decision) -> CliResult {
    let at = exec::iso(chrono::Utc::now().timestamp_micros());
    match outbox::decide(state, d.id, decision, &d.by, d.note.trim(), &at, chrono::Utc::now().timestamp_micros()) {
        Ok(a) => {
            outln!("action {} is {} ({} by {})", a.id, a.status, decision.name(), d.by);
            Ok(())
        }
        Err(e @ (outbox::DecideError::NotFound(_) | outbox::DecideError::Refused { .. })) => Err(input_err(format!("error: {e}"))),
        Err(e) => Err(CliError::Eval(format!("error: {e}"))),
    }
}
