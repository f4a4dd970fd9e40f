// The dashboard page: one EventSource, reconnected with backoff, rendering the bench's
// state. Read-only: there is no control on this page and no request that changes anything.
"use strict";
const $ = (id) => document.getElementById(id);
const STALE_AFTER_MS = 12000;  // the server sends at least a keep-alive every 5 s
let lastMessage = 0, lastState = null, source = null, backoff = 500;

function fmt(v, digits) { return v == null ? "\u2014" : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits }); }
function minutes(m) {
  if (m == null) return "\u2014";
  if (m < 1) return "< 1 min";
  const h = Math.floor(Math.round(m) / 60), r = Math.round(m) % 60;
  return h ? h + " h " + String(r).padStart(2, "0") + " min" : r + " min";
}
function clinical(s) {
  const t = Math.round(s), h = Math.floor(t / 3600), m = Math.floor(t % 3600 / 60), x = t % 60;
  return h + ":" + String(m).padStart(2, "0") + ":" + String(x).padStart(2, "0");
}
function setField(root, name, text) { const el = root.querySelector('[data-f="' + name + '"]'); if (el) el.textContent = text; }

function scopeText(scope) {
  if (!scope) return "bench";
  return scope.startsWith("drug:") ? "drug " + scope.slice(5) : "channel " + scope;
}

// One alarm list: on a bench of several channels each alarm says what it is about.
function renderAlarms(list, alarms, withScope, sayNone) {
  list.replaceChildren();
  if (sayNone && !alarms.length) {
    const li = document.createElement("li"); li.className = "none"; li.textContent = "no alarm";
    list.appendChild(li);
  }
  for (const a of alarms) {
    const li = document.createElement("li");
    li.className = "alarm " + a.priority + (a.acknowledged ? " ack" : "") + (a.active ? "" : " gone");
    li.dataset.key = a.key; li.dataset.priority = a.priority; li.dataset.scope = a.scope || "";
    const extra = [a.acknowledged ? "acknowledged" : "", a.active ? "" : "condition gone"].filter(Boolean).join(", ");
    const where = withScope ? " [" + scopeText(a.scope) + "]" : "";
    li.textContent = a.priority.toUpperCase() + " " + a.key + where + ": " + a.message + (extra ? " [" + extra + "]" : "");
    list.appendChild(li);
  }
}

function renderChannel(root, ch, plot, several) {
  setField(root, "name", several ? "channel " + ch.name : ch.name);
  setField(root, "drug", ch.drug || "no program");
  setField(root, "concentration", ch.concentration ? ch.concentration + " in " + ch.diluent : "");
  const role = root.querySelector('[data-f="role"]');
  role.hidden = !several || !ch.role;
  role.textContent = (ch.role || "").toUpperCase(); role.dataset.role = ch.role || "";
  const relay = root.querySelector('[data-f="relay"]');
  relay.hidden = !ch.relay; relay.textContent = ch.relay || "";
  const flags = [];
  if (ch.hold) flags.push("safety hold"); if (ch.estopped) flags.push("emergency stopped");
  if (ch.uncertain) flags.push("delivery uncertain"); if (!ch.comms_ok) flags.push("pump comms lost");
  setField(root, "state", ch.state + (flags.length ? " \u2014 " + flags.join(", ") : ""));
  root.querySelector('[data-f="dose"]').dataset.value = ch.dose == null ? "" : String(ch.dose);
  setField(root, "dose", ch.dose == null ? "\u2014" : fmt(ch.dose, 4) + " " + (ch.dose_unit || ""));
  root.querySelector('[data-f="rate"]').dataset.value = ch.rate_ml_h == null ? "" : String(ch.rate_ml_h);
  setField(root, "rate", fmt(ch.rate_ml_h, 3) + " mL/h");
  // a primed channel's counter includes the prime, which went to waste
  setField(root, "infused-label", several ? "volume pumped (prime included)" : "volume given");
  setField(root, "infused", ch.infused_ml == null ? "\u2014" : fmt(ch.infused_ml, 2) + " mL");
  setField(root, "given", ch.drug_given == null ? "\u2014" : fmt(ch.drug_given, 4) + " " + (ch.amount_unit || ""));
  const kind = ch.container_kind || "syringe";
  setField(root, "container-label", kind + " (" + ch.syringe + ")" + (ch.primed ? ", primed" : ""));
  setField(root, "left", ch.remaining_ml == null ? "\u2014" : fmt(ch.remaining_ml, 1) + " mL left");
  setField(root, "empty-label", kind + " empty in");
  setField(root, "empty", ch.minutes_to_empty == null ? (ch.remaining_ml == null || several ? "\u2014" : fmt(ch.remaining_ml, 1) + " mL left") : minutes(ch.minutes_to_empty));
  setField(root, "plan", ch.plan || "none known");
  setField(root, "handover", ch.next_handover || "none");
  renderAlarms(root.querySelector('[data-f="alarms"]'), several ? [] : ch.alarms, false, false);
  root.dataset.worst = ch.worst_alarm || "";
  if (!several) drawPlot(root.querySelector("canvas"), plot, ch.limits, ch.dose_unit);
}

function renderDrug(root, drug, state) {
  setField(root, "drug", drug.drug);
  // "norepinephrine (Adult ICU, ...)": the drug is the heading already
  setField(root, "what", drug.what.startsWith(drug.drug + " ") ? drug.what.slice(drug.drug.length + 1) : drug.what);
  const total = root.querySelector('[data-f="total"]');
  total.dataset.value = drug.dose == null ? "" : String(drug.dose);
  total.textContent = drug.dose == null ? "\u2014" : fmt(drug.dose, 4) + " " + (drug.dose_unit || "");
  const unit = drug.amount_unit || "";
  setField(root, "per-hour", drug.amount_per_h == null ? "\u2014" : fmt(drug.amount_per_h, 4) + " " + unit + "/h");
  setField(root, "given", drug.given == null ? "\u2014" : fmt(drug.given, 4) + " " + unit);
  setField(root, "cap", drug.cap_amount == null ? "no cap" : fmt(drug.given_in_cap_window, 4) + " / " + fmt(drug.cap_amount, 4) + " " + unit + " in " + fmt(drug.cap_window_h, 2) + " h");
  setField(root, "channels", drug.channels.join(", "));
  setField(root, "next-handover", drug.next_handover || "none due");
  root.dataset.worst = drug.worst_alarm || "";
  // the drug's total over its channels: the plot of its first channel (same history)
  const i = state.channels.findIndex((c) => c.id === drug.channels[0]);
  const ch = state.channels[i] || {};
  drawPlot(root.querySelector("canvas"), state.plots[i], ch.limits, drug.dose_unit);
}

// Cards from a template, one per item, kept in order (a redraw never rebuilds the page).
function cards(box, template, items, key, render) {
  while (box.children.length > items.length) box.lastChild.remove();
  items.forEach((item, i) => {
    let root = box.children[i];
    if (!root) { root = $(template).content.firstElementChild.cloneNode(true); box.appendChild(root); }
    root.dataset.key = key(item);
    render(root, item, i);
  });
}

function render(state) {
  lastState = state;
  $("bench").textContent = state.bench;
  // a one-pump bench looks as it always has: one card, its alarms and plot inside it
  const several = state.channels.length > 1;
  document.body.classList.toggle("several", several);
  $("bench-alarms").hidden = !several;
  if (several) renderAlarms($("alarm-list"), state.alarms, true, true);
  const handover = $("handover");
  handover.hidden = !state.handover;
  setField(handover, "handover-text", state.handover ? state.handover.text : "");
  cards($("drugs"), "drug-template", several ? state.drugs : [], (d) => d.drug, (root, d) => { root.dataset.drug = d.drug; renderDrug(root, d, state); });
  cards($("channels"), "channel-template", state.channels, (c) => c.name, (root, ch, i) => {
    root.dataset.channel = ch.name; renderChannel(root, ch, state.plots[i], several);
  });
  const journal = $("journal");
  journal.replaceChildren();
  for (const line of state.journal.slice().reverse()) {
    const li = document.createElement("li"); li.dataset.kind = line.kind; li.dataset.id = line.id;
    const t = document.createElement("span"); t.className = "t"; t.textContent = clinical(line.clinical);
    li.append(t, line.text); journal.appendChild(li);
  }
  showLink();
}

function showLink() {
  const link = $("link"), banner = $("stale-banner");
  const quiet = Date.now() - lastMessage > STALE_AFTER_MS;
  let problem = null;
  if (!source || quiet) problem = "no data from the dashboard server" + (lastMessage ? " for " + Math.round((Date.now() - lastMessage) / 1000) + " s" : "") + ": reconnecting";
  else if (lastState && !lastState.link.live) {
    const since = lastState.link.stale_since ? Math.round(lastState.now - lastState.link.stale_since) : 0;
    problem = "safety process not reachable for " + since + " s (" + lastState.link.problem + "): values below are the last known, reconnecting";
  }
  document.body.classList.toggle("stale", problem !== null);
  link.className = "link " + (problem ? "stale" : "live");
  link.dataset.live = problem ? "false" : "true";
  link.textContent = problem ? "STALE" : "LIVE";
  banner.hidden = problem === null;
  banner.textContent = problem || "";
}

function connect() {
  source = new EventSource("/events");
  source.addEventListener("state", (e) => { lastMessage = Date.now(); backoff = 500; render(JSON.parse(e.data)); });
  source.addEventListener("ping", () => { lastMessage = Date.now(); });
  source.onopen = () => { lastMessage = Date.now(); };
  source.onerror = () => {
    source.close(); source = null; showLink();
    setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
  };
}
setInterval(showLink, 1000);
connect();
