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

function renderChannel(root, ch, plot) {
  setField(root, "name", ch.name);
  setField(root, "drug", ch.drug || "no program");
  setField(root, "concentration", ch.concentration ? ch.concentration + " in " + ch.diluent : "");
  const flags = [];
  if (ch.hold) flags.push("safety hold"); if (ch.estopped) flags.push("emergency stopped");
  if (ch.uncertain) flags.push("delivery uncertain"); if (!ch.comms_ok) flags.push("pump comms lost");
  setField(root, "state", ch.state + (flags.length ? " \u2014 " + flags.join(", ") : ""));
  root.querySelector('[data-f="dose"]').dataset.value = ch.dose == null ? "" : String(ch.dose);
  setField(root, "dose", ch.dose == null ? "\u2014" : fmt(ch.dose, 4) + " " + (ch.dose_unit || ""));
  root.querySelector('[data-f="rate"]').dataset.value = ch.rate_ml_h == null ? "" : String(ch.rate_ml_h);
  setField(root, "rate", fmt(ch.rate_ml_h, 3) + " mL/h");
  setField(root, "infused", ch.infused_ml == null ? "\u2014" : fmt(ch.infused_ml, 2) + " mL");
  setField(root, "given", ch.drug_given == null ? "\u2014" : fmt(ch.drug_given, 4) + " " + (ch.amount_unit || ""));
  setField(root, "empty", ch.minutes_to_empty == null ? (ch.remaining_ml == null ? "\u2014" : fmt(ch.remaining_ml, 1) + " mL left") : minutes(ch.minutes_to_empty));
  setField(root, "plan", ch.plan || "none known");
  setField(root, "handover", ch.next_handover || "none");
  const list = root.querySelector('[data-f="alarms"]');
  list.replaceChildren();
  for (const a of ch.alarms) {
    const li = document.createElement("li");
    li.className = "alarm " + a.priority + (a.acknowledged ? " ack" : "") + (a.active ? "" : " gone");
    li.dataset.key = a.key; li.dataset.priority = a.priority;
    const extra = [a.acknowledged ? "acknowledged" : "", a.active ? "" : "condition gone"].filter(Boolean).join(", ");
    li.textContent = a.priority.toUpperCase() + " " + a.key + ": " + a.message + (extra ? " [" + extra + "]" : "");
    list.appendChild(li);
  }
  drawPlot(root.querySelector("canvas"), plot, ch.limits, ch.dose_unit);
}

function render(state) {
  lastState = state;
  $("bench").textContent = state.bench;
  const box = $("channels");
  while (box.children.length > state.channels.length) box.lastChild.remove();
  state.channels.forEach((ch, i) => {
    let root = box.children[i];
    if (!root) { root = $("channel-template").content.firstElementChild.cloneNode(true); box.appendChild(root); }
    root.dataset.channel = ch.name;
    renderChannel(root, ch, state.plots[i]);
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
