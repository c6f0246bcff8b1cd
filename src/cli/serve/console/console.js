// Vigil operations console. Plain script, no build step: it talks to /api/v1 with
// the session cookie and follows the live feed (Server-Sent Events); nothing polls.
"use strict";

const SEVERITIES = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1 };
// Shapes tell severities apart without colour.
const GLYPH = { CRITICAL: "■", HIGH: "▲", MEDIUM: "●", LOW: "○" };

const state = {
  principal: null,
  findings: new Map(), // id -> finding (open ones shown)
  pending: new Map(), // raised while the operator was busy: id -> finding
  order: [], // ids as shown
  selected: null, // id
  panel: null, // detail of the open panel
  source: null,
  actionsOn: true, // false when the service runs without --actions
  storms: [],
  serverOffset: 0, // server clock minus local clock (ms)
};

// ---- time ----
function serverNow() { return Date.now() + state.serverOffset; }
function syncClock(iso) { if (iso) state.serverOffset = Date.parse(iso) - Date.now(); }
function fmtTime(iso) { return iso ? iso.replace("T", " ").replace("Z", " UTC") : "—"; }
function fmtLeft(ms) {
  const neg = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (neg) return h > 0 ? `overdue ${h}h ${String(m).padStart(2, "0")}m` : `overdue ${m}m`;
  return h > 0 ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${String(sec).padStart(2, "0")}s`;
}

// ---- filters (kept in the URL) ----
function filters() {
  const p = new URLSearchParams(location.search);
  return { severity: p.get("severity") || "", tenant: p.get("tenant") || "", site: p.get("site") || "", q: p.get("q") || "" };
}
function writeFilters() {
  const p = new URLSearchParams();
  for (const k of ["severity", "tenant", "site", "q"]) {
    const v = $("f-" + k).value.trim();
    if (v) p.set(k, v);
  }
  const qs = p.toString();
  history.replaceState(null, "", qs ? "?" + qs : location.pathname);
  render();
}
function readFilters() {
  const f = filters();
  for (const k of ["severity", "tenant", "site", "q"]) $("f-" + k).value = f[k];
}
function matches(f, flt) {
  if (flt.severity && f.severity !== flt.severity) return false;
  if (flt.tenant && f.tenant_id !== flt.tenant) return false;
  if (flt.site && f.site_id !== flt.site) return false;
  if (flt.q) {
    const hay = `${f.finding_type} ${f.title} ${f.guard_id || ""} ${f.site_id}`.toLowerCase();
    if (!hay.includes(flt.q.toLowerCase())) return false;
  }
  return true;
}

// Most urgent first: severity, then the escalation deadline nearest.
function urgency(a, b) {
  return (SEVERITIES[b.severity] || 0) - (SEVERITIES[a.severity] || 0)
    || (a.escalation_due || "~").localeCompare(b.escalation_due || "~")
    || a.id - b.id;
}

// ---- busy: the operator has a panel open or is typing ----
function busy() {
  const a = document.activeElement;
  const typing = a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
  return !$("panel").hidden || typing;
}

// ---- rendering ----
function sevBadge(sev) {
  return el("span", { class: "sev", dataset: { sev } }, `${GLYPH[sev] || "?"} ${sev}`);
}

function render() {
  const flt = filters();
  const list = [...state.findings.values()].filter((f) => f.status !== "RESOLVED" && matches(f, flt));
  if (!busy()) list.sort(urgency);
  else {
    // Keep the order the operator is looking at; updated rows stay in place.
    const pos = new Map(state.order.map((id, i) => [id, i]));
    list.sort((a, b) => (pos.get(a.id) ?? 1e9) - (pos.get(b.id) ?? 1e9) || urgency(a, b));
  }
  state.order = list.map((f) => f.id);
  // A stale feed is Vigil's own problem, not a silent site: its own banner.
  const stale = [...state.findings.values()].filter((f) => f.finding_type === "FEED_STALE" && f.holding && f.status !== "RESOLVED");
  $("feed-banner").hidden = stale.length === 0;
  $("feed-text").textContent = stale.map((f) => `tenant ${f.tenant_id}: no rows since ${fmtTime(f.evidence && f.evidence.last_received)}.`).join(" ");
  const rows = $("rows");
  rows.replaceChildren(...list.map(row));
  $("empty").hidden = list.length > 0;
  $("count").textContent = `${list.length} open`;
  const n = state.pending.size;
  $("new-bar").dataset.count = String(n);
  $("show-new").textContent = `${n} new — show (n)`;
  tick();
}

function row(f) {
  const cls = [f.id === state.selected ? "selected" : "", f.silenced_by ? "muted" : ""].join(" ").trim();
  const tr = el("tr", { dataset: { id: String(f.id), sev: f.severity }, class: cls, tabindex: "-1" },
    el("td", { class: "c-sev" }, sevBadge(f.severity)),
    el("td", { class: "c-type" }, el("div", { class: "type" }, f.finding_type), el("div", { class: "title" }, f.title)),
    el("td", { class: "c-where" }, `${f.tenant_id} / ${f.site_id}`),
    el("td", { class: "c-guard" }, f.guard_id || "—"),
    el("td", { class: "c-status" }, el("span", { class: "status", dataset: { status: f.status } }, f.status),
      f.silenced_by ? el("span", { class: "silenced", title: `silence #${f.silenced_by} until ${fmtTime(f.silenced_until)}` }, " · silenced") : "",
      f.late ? el("span", { class: "silenced", title: "raised at a past tick from rows that arrived after it ran" }, " · late") : "",
      f.holding ? "" : el("span", { class: "cleared" }, " no longer holds")),
    el("td", { class: "c-due", dataset: { due: f.escalation_due || "" } }, "—"));
  tr.addEventListener("click", () => { select(f.id); openPanel(f.id); });
  return tr;
}

// Countdowns move every second locally; nothing is fetched.
function tick() {
  const now = serverNow();
  $("clock").textContent = new Date(now).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  for (const td of document.querySelectorAll("td.c-due")) {
    const due = td.dataset.due;
    if (!due) continue;
    const left = Date.parse(due) - now;
    td.textContent = fmtLeft(left);
    td.classList.toggle("overdue", left < 0);
  }
  if (state.panel && state.panel.escalation_due) {
    const left = Date.parse(state.panel.escalation_due) - now;
    $("p-due").textContent = `${fmtTime(state.panel.escalation_due)} (${fmtLeft(left)})`;
  }
}

function select(id) {
  state.selected = id;
  for (const tr of $("rows").children) tr.classList.toggle("selected", tr.dataset.id === String(id));
  const tr = document.querySelector(`tr[data-id="${id}"]`);
  if (tr) tr.scrollIntoView({ block: "nearest" });
}

function move(delta) {
  if (!state.order.length) return;
  let i = state.order.indexOf(state.selected);
  i = i < 0 ? 0 : Math.max(0, Math.min(state.order.length - 1, i + delta));
  select(state.order[i]);
  if (!$("panel").hidden) openPanel(state.order[i]);
}

// ---- the panel ----
// `refresh`: the finding changed while its panel is open; a panel closed meanwhile stays closed.
async function openPanel(id, refresh) {
  $("p-error").textContent = "";
  try {
    const d = await api("GET", `/api/v1/findings/${id}`);
    if (refresh && (!state.panel || state.panel.id !== id || $("panel").hidden)) return;
    state.panel = d;
    fillPanel(d);
    $("panel").hidden = false;
  } catch (e) {
    $("p-error").textContent = e.message;
  }
}

function fillPanel(d) {
  $("p-sev").replaceChildren(sevBadge(d.severity));
  $("p-title").textContent = d.title;
  $("p-type").textContent = `${d.finding_type} (${d.category})`;
  $("p-site").textContent = `${d.tenant_id} / ${d.site_id}`;
  $("p-guard").textContent = d.guard_id || "—";
  $("p-status").textContent = d.status + (d.holding ? "" : " — no longer holds") + (d.inhibited_by ? ` — inhibited by ${d.inhibited_by}` : "")
    + (d.silenced_by ? ` — silenced (#${d.silenced_by}) until ${fmtTime(d.silenced_until)}` : "");
  $("s-preview").textContent = "";
  $("s-error").textContent = "";
  $("s-scope").querySelector('option[value="guard"]').disabled = !d.guard_id;
  $("s-scope").querySelector('option[value="tenant"]').disabled = !(state.principal && state.principal.role === "admin");
  $("p-seen").textContent = `${fmtTime(d.first_seen)} → ${fmtTime(d.last_seen)} (${d.occurrences}×)`;
  const ev = d.evidence && typeof d.evidence === "object" ? Object.entries(d.evidence) : [];
  $("p-evidence").replaceChildren(...ev.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "object" ? JSON.stringify(v) : v))));
  const rb = d.runbook_detail;
  $("p-runbook-title").textContent = rb ? `Runbook: ${rb.title} (escalate after ${rb.escalate_after_minutes} min)` : `Runbook ${d.runbook}`;
  const steps = rb ? rb.steps : [];
  $("p-steps").replaceChildren(...steps.map((s, i) => {
    const id = `step-${d.id}-${i}`;
    return el("li", {}, el("input", { type: "checkbox", id }), el("label", { for: id }, s));
  }));
  $("p-history").replaceChildren(...(d.history || []).map((h) =>
    el("li", { dataset: { event: h.event } }, el("time", {}, fmtTime(h.at)), " ", el("strong", {}, h.event),
      h.who ? ` by ${h.who}` : "", h.detail ? ` — ${h.detail}` : "")));
  $("p-provenance").textContent = JSON.stringify(d.provenance, null, 2);
  loadActions(d.id);
  const open = d.status !== "RESOLVED";
  $("p-ack").disabled = d.status !== "NEW";
  $("p-resolve").disabled = !open;
  tick();
}

function closePanel() {
  $("panel").hidden = true;
  state.panel = null;
  if (document.activeElement) document.activeElement.blur();
  flushIfIdle();
}

async function act(resolve) {
  const d = state.panel;
  if (!d) return;
  const note = $("p-note").value.trim();
  if (!note) {
    $("p-error").textContent = "A note is required.";
    $("p-note").focus();
    return;
  }
  $("p-error").textContent = "";
  try {
    const updated = await api("POST", `/api/v1/findings/${d.id}/${resolve ? "resolve" : "acknowledge"}`, { note, version: d.version });
    $("p-note").value = "";
    state.panel = updated;
    fillPanel(updated);
    upsert(updated, true);
  } catch (e) {
    $("p-error").textContent = e.status === 409 ? `${e.message}. The panel shows it as it is now.` : e.message;
    if (e.status === 409) openPanel(d.id);
  }
}

// ---- runbook actions ----
function actionLine(a) {
  const badge = el("span", { class: "astatus", dataset: { status: a.status } }, a.status.replace("_", " "));
  const meta = [a.mode, `due ${fmtTime(a.due)}`, a.attempts ? `${a.attempts} attempt(s)` : "", a.decided_by ? `decided by ${a.decided_by}` : "",
    a.status === "awaiting_approval" && a.deadline ? `decide by ${fmtTime(a.deadline)}` : ""].filter(Boolean).join(" · ");
  return [badge, el("span", { class: "what" }, `${a.action} → ${a.target}`), el("div", { class: "meta" }, meta)];
}

async function loadActions(findingId) {
  if (!state.actionsOn) return;
  try {
    const r = await api("GET", `/api/v1/actions?finding=${findingId}`);
    if (!state.panel || state.panel.id !== findingId) return;
    const canAct = state.principal && state.principal.role !== "viewer";
    const items = r.actions.slice().reverse().map((a) => {
      const li = el("li", { dataset: { action: a.id, status: a.status } }, ...actionLine(a));
      if (canAct && (a.status === "awaiting_approval" || a.status === "dead" || a.status === "suppressed")) {
        const buttons = el("div", { class: "buttons" });
        const decisions = a.status === "awaiting_approval" ? [["approve", "Approve"], ["reject", "Reject"]] : [["replay", "Replay"]];
        for (const [d, label] of decisions) {
          const b = el("button", { type: "button", dataset: { decision: d } }, label);
          b.addEventListener("click", () => decideAction(a, d));
          buttons.append(b);
        }
        li.append(buttons);
      }
      return li;
    });
    $("p-actions").replaceChildren(...items);
    $("p-actions-box").hidden = items.length === 0;
  } catch (e) {
    if (e.status === 404) { state.actionsOn = false; $("p-actions-box").hidden = true; return; }
    $("pa-error").textContent = e.message;
  }
}

async function decideAction(a, decision) {
  const note = $("p-note").value.trim();
  $("pa-error").textContent = "";
  if (!note) {
    $("pa-error").textContent = "A note is required (write it in the Note box below).";
    $("p-note").focus();
    return;
  }
  try {
    await api("POST", `/api/v1/actions/${a.id}/${decision}`, { note });
    $("p-note").value = "";
    openPanel(a.finding_id, true);
  } catch (e) {
    $("pa-error").textContent = e.message;
  }
}

async function showActions() {
  $("actions-error").textContent = "";
  const q = new URLSearchParams();
  if ($("a-status").value) q.set("status", $("a-status").value);
  if ($("a-action").value.trim()) q.set("action", $("a-action").value.trim());
  try {
    const r = await api("GET", `/api/v1/actions?${q}`);
    const rows = r.actions.map((a) => {
      const tr = el("tr", { dataset: { action: a.id } }, el("td", {}, `#${a.id}`),
        el("td", {}, el("span", { class: "astatus", dataset: { status: a.status } }, a.status.replace("_", " "))),
        el("td", {}, `${a.action} → ${a.target}`), el("td", {}, `#${a.finding_id} ${a.tenant_id}/${a.site_id}`),
        el("td", {}, a.mode), el("td", {}, fmtTime(a.due)), el("td", {}, a.attempts));
      tr.addEventListener("click", () => { $("actions").close(); openPanel(a.finding_id); });
      return tr;
    });
    $("action-rows").replaceChildren(...rows);
    showStorms(r.storms);
    showKill(r.switches);
    if (!$("actions").open) $("actions").showModal();
  } catch (e) {
    if (e.status === 404) { state.actionsOn = false; $("open-actions").hidden = true; return; }
    $("actions-error").textContent = e.message;
  }
}

function showStorms(storms) {
  state.storms = storms || [];
  $("storm-banner").hidden = state.storms.length === 0;
  $("storm-text").textContent = state.storms.map((s) =>
    `${s.findings} findings raised ${s.site ? `at site ${s.tenant}/${s.site}` : `at tenant ${s.tenant}`} since ${fmtTime(s.since)}.`).join(" ");
}

function showKill(sw) {
  if (!sw) return;
  const on = (sw.thrown || []).filter((s) => s.killed).map((s) => s.scope === "*" ? `global (by ${s.by})` : `tenant ${s.scope} (by ${s.by})`);
  if (sw.configured_global) on.push("global (configured)");
  for (const t of sw.configured_tenants || []) on.push(`tenant ${t} (configured)`);
  $("kill-banner").hidden = on.length === 0;
  $("kill-text").textContent = on.join(", ") + ".";
}

async function refreshActionState() {
  if (!state.actionsOn) return;
  try {
    const r = await api("GET", "/api/v1/actions?limit=1");
    $("open-actions").hidden = false;
    showStorms(r.storms);
    showKill(r.switches);
  } catch (e) {
    if (e.status === 404) { state.actionsOn = false; $("open-actions").hidden = true; }
  }
}

// ---- silences ----
function silenceMatcher() {
  const d = state.panel;
  const m = { tenant_id: d.tenant_id };
  switch ($("s-scope").value) {
    case "type-site": m.finding_type = d.finding_type; m.site_id = d.site_id; break;
    case "guard": m.guard_id = d.guard_id; break;
    case "site": m.site_id = d.site_id; break;
    default: break;
  }
  return m;
}

async function previewSilence() {
  $("s-error").textContent = "";
  try {
    const p = await api("POST", "/api/v1/silences/preview", silenceMatcher());
    const types = [...new Set(p.findings.map((f) => f.finding_type))].join(", ");
    $("s-preview").textContent = `Would mute ${p.count} open finding(s) now (${p.matches})${types ? ": " + types : ""}.`;
  } catch (e) {
    $("s-error").textContent = e.message;
  }
}

async function createSilence() {
  $("s-error").textContent = "";
  const reason = $("s-reason").value.trim();
  if (!reason) { $("s-error").textContent = "A reason is required."; $("s-reason").focus(); return; }
  try {
    const r = await api("POST", "/api/v1/silences", { ...silenceMatcher(), reason, duration: $("s-duration").value });
    $("s-reason").value = "";
    $("s-preview").textContent = `Silence #${r.silence.id} until ${fmtTime(r.silence.expires_at)}: ${r.muted.length} finding(s) muted.`;
    openPanel(state.panel.id);
  } catch (e) {
    $("s-error").textContent = e.message;
  }
}

async function showSilences() {
  $("silences-error").textContent = "";
  try {
    const r = await api("GET", "/api/v1/silences");
    const rows = r.silences.map((s) => {
      const what = [s.finding_type, s.site_id && `site ${s.site_id}`, s.guard_id && `guard ${s.guard_id}`].filter(Boolean).join(", ") || "every finding";
      const until = s.active ? fmtTime(s.expires_at) : `${s.ended_how || "expired"} ${fmtTime(s.ended_at || s.expires_at)}`;
      const actions = el("td", { class: "actions" });
      if (s.active && state.principal.role !== "viewer") {
        const extend = el("button", { type: "button" }, "+1h");
        extend.addEventListener("click", () => changeSilence("PATCH", s, { expires_at: new Date(Date.parse(s.expires_at) + 3600e3).toISOString().replace(/\.\d+Z$/, "Z") }));
        const lift = el("button", { type: "button" }, "Lift");
        lift.addEventListener("click", () => changeSilence("DELETE", s));
        const edit = el("button", { type: "button" }, "Edit reason");
        actions.append(extend, " ", edit, " ", lift);
        edit.addEventListener("click", () => {
          // The reason cell becomes an input; Enter saves, Escape leaves it as it was.
          const input = el("input", { value: s.reason, "aria-label": "New reason" });
          reason.replaceChildren(input);
          input.focus();
          input.addEventListener("keydown", (e) => {
            if (e.key === "Enter") changeSilence("PATCH", s, { reason: input.value });
            if (e.key === "Escape") { e.stopPropagation(); e.preventDefault(); reason.replaceChildren(s.reason); }
          });
        });
      }
      const reason = el("td", { class: "reason" }, s.reason);
      return el("tr", { class: s.active ? "" : "ended" }, el("td", {}, `#${s.id}`), el("td", {}, `${s.tenant_id}: ${what}`),
        el("td", {}, s.owner), reason, el("td", {}, until), actions);
    });
    $("silence-rows").replaceChildren(...rows);
    if (!$("silences").open) $("silences").showModal();
  } catch (e) {
    $("silences-error").textContent = e.message;
  }
}

async function changeSilence(method, s, body) {
  try {
    await api(method, `/api/v1/silences/${s.id}`, body);
    showSilences();
  } catch (e) {
    $("silences-error").textContent = e.message;
  }
}

// ---- the feed ----
function upsert(f, direct) {
  // Findings carry the time of the tick that saw them: the clock never lags behind it
  // (on a virtual clock it moves with the ticks).
  if (f.last_seen && Date.parse(f.last_seen) > serverNow()) syncClock(f.last_seen);
  if (f.status === "RESOLVED") {
    state.findings.delete(f.id);
    state.pending.delete(f.id);
  } else if (state.findings.has(f.id) || direct || !busy()) {
    state.findings.set(f.id, f);
  } else {
    state.pending.set(f.id, f);
  }
  render();
  if (state.panel && state.panel.id === f.id && !direct) openPanel(f.id, true);
}

function flushIfIdle() {
  if (busy() || !state.pending.size) return;
  showPending();
}

function showPending() {
  for (const [id, f] of state.pending) state.findings.set(id, f);
  state.pending.clear();
  render();
}

function connect() {
  if (state.source) state.source.close();
  const src = new EventSource("/api/v1/events");
  state.source = src;
  const conn = $("conn");
  src.onopen = () => { conn.dataset.state = "live"; conn.textContent = "live"; $("stream-banner").hidden = true; };
  src.onerror = () => {
    conn.dataset.state = "down"; conn.textContent = "reconnecting…";
    $("stream-banner").hidden = false;
    if (src.readyState === EventSource.CLOSED) setTimeout(checkSession, 2000);
  };
  src.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    syncClock(s.now);
    state.findings = new Map(s.findings.map((f) => [f.id, f]));
    state.pending.clear();
    showReload(s.last_reload);
    render();
  });
  for (const kind of ["finding.raised", "finding.changed", "finding.cleared", "finding.acknowledged", "finding.resolved"]) {
    src.addEventListener(kind, (e) => upsert(JSON.parse(e.data), false));
  }
  for (const kind of ["silence.created", "silence.changed", "silence.ended"]) {
    src.addEventListener(kind, () => { if ($("silences").open) showSilences(); });
  }
  src.addEventListener("tick", (e) => {
    const t = JSON.parse(e.data);
    syncClock(t.now);
    $("last-tick").textContent = `last tick ${fmtTime(t.at).replace(" UTC", "")} (${t.rules} rules${t.failed ? `, ${t.failed} failed` : ""})`;
  });
  src.addEventListener("action.changed", (e) => {
    const a = JSON.parse(e.data);
    if (state.panel && state.panel.id === a.finding_id) openPanel(a.finding_id, true);
    if ($("actions").open) showActions();
  });
  for (const kind of ["actions.storm", "actions.calm"]) {
    src.addEventListener(kind, (e) => {
      const d = JSON.parse(e.data);
      showStorms(state.storms.filter((s) => s.tenant !== d.tenant).concat(d.storms));
    });
  }
  src.addEventListener("actions.switch", refreshActionState);
  src.addEventListener("reload.ok", (e) => showReload(JSON.parse(e.data)));
  src.addEventListener("reload.failed", (e) => showReload(JSON.parse(e.data)));
}

function showReload(r) {
  const failed = r && !r.ok;
  $("reload-banner").hidden = !failed;
  if (failed) {
    $("reload-diagnostics").textContent = r.diagnostics || "";
    $("reload-revision").textContent = `attempted ${fmtTime(r.at)}`;
  }
}

// ---- session ----
async function checkSession() {
  try {
    const s = await api("GET", "/api/v1/session");
    start(s);
  } catch (_) {
    showLogin();
  }
}

function showLogin() {
  if (state.source) state.source.close();
  $("app").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("open-silences").hidden = true;
  $("open-actions").hidden = true;
  $("who").textContent = "";
  $("token").focus();
}

function start(s) {
  // Clients have the portal, not the console.
  if (s.principal.role === "client") { window.location.assign("/portal"); return; }
  session.csrf = s.csrf;
  state.principal = s.principal;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("open-silences").hidden = false;
  $("who").textContent = `${s.principal.name} · ${s.principal.role} · ${s.principal.tenants.join(", ")}`;
  const canAct = s.principal.role !== "viewer";
  $("p-act").hidden = !canAct;
  $("p-silence").hidden = !canAct;
  readFilters();
  connect();
  state.actionsOn = true;
  refreshActionState();
}

// ---- keyboard ----
function onKey(e) {
  const a = document.activeElement;
  const typing = a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
  if (e.key === "Escape") {
    if ($("help").open) $("help").close();
    else if ($("silences").open) $("silences").close();
    else if ($("actions").open) $("actions").close();
    else if (typing) a.blur();
    else closePanel();
    flushIfIdle();
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey || $("app").hidden) return;
  switch (e.key) {
    case "j": move(1); break;
    case "k": move(-1); break;
    case "Enter": if (state.selected != null) openPanel(state.selected); break;
    case "a": if (state.panel) act(false); else if (state.selected != null) openPanel(state.selected).then(() => $("p-note").focus()); break;
    case "r": if (state.panel) act(true); else if (state.selected != null) openPanel(state.selected).then(() => $("p-note").focus()); break;
    case "/": e.preventDefault(); $("f-q").focus(); break;
    case "n": showPending(); break;
    case "?": $("help").showModal(); break;
    default: return;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wireSession(start, showLogin);
  $("filters").addEventListener("input", writeFilters);
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("show-new").addEventListener("click", showPending);
  $("p-close").addEventListener("click", closePanel);
  $("p-ack").addEventListener("click", () => act(false));
  $("p-resolve").addEventListener("click", () => act(true));
  $("s-preview-btn").addEventListener("click", previewSilence);
  $("s-create").addEventListener("click", createSilence);
  $("s-scope").addEventListener("change", () => { $("s-preview").textContent = ""; });
  $("open-silences").addEventListener("click", showSilences);
  $("open-actions").addEventListener("click", showActions);
  $("actions-filter").addEventListener("input", showActions);
  $("actions-filter").addEventListener("submit", (e) => e.preventDefault());
  document.addEventListener("focusout", () => setTimeout(flushIfIdle, 0));
  document.addEventListener("keydown", onKey);
  setInterval(tick, 1000);
  checkSession();
});
