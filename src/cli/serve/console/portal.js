// Vigil client portal: the reports a client's token may read, and a summary of its
// findings. Plain script, no build step; the same session API as the console.
"use strict";

async function show(s) {
  session.csrf = s.csrf;
  $("login").hidden = true;
  $("portal").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${s.principal.name} · ${s.principal.tenants.join(", ")}`;
  try {
    const sum = await api("GET", "/api/v1/portal/summary");
    const rows = Object.entries(sum.tenants).map(([t, v]) => {
      const cats = Object.entries(v.by_category).map(([c, sev]) => `${c}: ${Object.entries(sev).map(([k, n]) => `${n} ${k.toLowerCase()}`).join(", ")}`).join("; ");
      return el("tr", {}, el("td", {}, t), el("td", {}, v.findings), el("td", {}, v.open), el("td", {}, cats));
    });
    $("summary").replaceChildren(...rows);
    $("summary-empty").hidden = rows.length > 0;
    const r = await api("GET", "/api/v1/reports");
    const list = r.reports.map((m) => el("tr", { "data-report": m.id },
      el("td", {}, m.from === m.to ? m.from : `${m.from} to ${m.to}`), el("td", {}, m.kind),
      el("td", {}, m.site ? `${m.tenant} / ${m.site}` : m.tenant),
      el("td", {}, m.no_exceptions ? "no exceptions" : m.findings),
      el("td", {}, el("a", { href: `/api/v1/reports/${encodeURIComponent(m.id)}/pdf` }, "PDF"), " · ",
        el("a", { href: `/api/v1/reports/${encodeURIComponent(m.id)}/html` }, "HTML"))));
    $("reports").replaceChildren(...list);
    $("reports-empty").hidden = list.length > 0;
  } catch (e) {
    $("error").textContent = e.message;
  }
}

function showLogin() {
  $("portal").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("token").focus();
}

document.addEventListener("DOMContentLoaded", async () => {
  wireSession(show, showLogin);
  try { show(await api("GET", "/api/v1/session")); } catch (_) { showLogin(); }
});
