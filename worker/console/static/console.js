// support-router console: plain DOM, no build step. Every string from the server (and so
// from Kafka) goes into the page as text (textContent), never as markup.
"use strict";

const ROUTES = ["escalate", "auto_resolve", "more_info"];
const SERIES = [...ROUTES, "dead_letter"];
const HEADS = ["intent", "urgency", "sentiment", "action"];
const RECENT = 20;
// late: the id of a try that got no answer in time; ownSeen: this page's recent own
// results from the stream, for one that arrives before the try's answer is read.
// me: who is logged in (/api/session): user, role, csrf; user null without a login.
const state = { config: null, me: null, tab: "live", late: null, ownSeen: new Map(), escalations: [], deadLetters: [] };
const RANK = { viewer: 1, agent: 2, operator: 3 };
const may = (role) => Boolean(state.me) && RANK[state.me.role] >= RANK[role];

// Every POST carries the session's CSRF token; the server refuses one without it.
function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.me && state.me.csrf) headers["X-CSRF-Token"] = state.me.csrf;
  return fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const pct = (p) => `${(100 * p).toFixed(1)}%`;
const ms = (v) => (v === null || v === undefined ? "—" : `${Math.round(v)} ms`);
const clock = (t) => (t ? new Date(t).toLocaleTimeString() : "");

// ---- try a message -------------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  const text = $("text").value;
  const button = $("submit");
  button.disabled = true;
  const started = performance.now();
  const waitS = state.config ? state.config.answer_timeout_s : 10;
  const tick = setInterval(() => {
    const s = ((performance.now() - started) / 1000).toFixed(1);
    $("pending").textContent = `sent; waiting for a worker (${s} s of ${waitS} s)`;
  }, 100);
  $("result").replaceChildren();
  $("result").dataset.status = "waiting";
  state.late = null;
  try {
    const response = await post("/api/try", { text });
    const body = await response.json();
    renderAnswer(body, response.status);
  } catch (err) {
    renderAnswer({ status: "error", error: String(err) }, 0);
  } finally {
    clearInterval(tick);
    $("pending").textContent = "";
    button.disabled = false;
  }
}

function renderAnswer(body, httpStatus) {
  const box = $("result");
  box.dataset.status = body.status;
  box.dataset.messageId = body.message_id || "";
  if (body.status === "routed") return renderRouted(body.view);
  if (body.status === "dead_letter") return renderDeadLetter(body.view);
  if (body.status === "no_answer") {
    const already = state.ownSeen.get(body.message_id);
    if (already) return already.kind === "dead_letter" ? renderDeadLetter(already.view) : renderRouted(already.view);
    state.late = body.message_id;
    const g = body.group;
    const why = !g || g.members === null
      ? "The console could not read the workers' consumer group."
      : g.members === 0
        ? `The consumer group "${g.group}" has no members: no worker is running.`
        : `The consumer group "${g.group}" has ${g.members} member(s), ${g.lag ?? "?"} records behind.`;
    box.replaceChildren(
      el("div", { class: "banner warn", id: "no-answer" },
        el("b", { text: `No worker answered within ${body.waited_s} s.` }), " ", why,
        el("div", { class: "small", text: `Message ${body.message_id} is on the inbound topic; ` +
          "its result shows here if a worker commits it later." })));
    return;
  }
  box.replaceChildren(el("div", { class: "banner error", id: "error" },
    el("b", { text: `Not sent (HTTP ${httpStatus}): ` }), body.error || "unknown error"));
}

function renderRouted(v) {
  const box = $("result");
  box.dataset.status = "routed";
  box.dataset.messageId = v.message_id;
  $("model").textContent = `model: ${v.model.name} ${v.model.version}`;
  const t = v.timing;
  const banner = el("div", { class: `banner route-${v.route}` },
    el("div", {},
      el("span", { class: "route", id: "result-route", text: v.route }),
      " · action ", el("b", { id: "result-action", text: v.action }),
      " · reason ", el("b", { id: "result-reason", text: v.reason })),
    el("div", { class: "facts" },
      el("span", {}, "end-to-end ", el("b", { id: "latency-e2e", text: ms(t.end_to_end_ms) }),
        el("span", { class: "muted", text: " (Kafka in → committed out)" })),
      el("span", {}, "inference ", el("b", { id: "latency-inference", text: ms(t.inference_ms) })),
      el("span", {}, "batch ", el("b", { id: "batch-size", text: String(t.batch_size) })),
      el("span", {}, "queued ", el("b", { text: ms(t.queue_ms) }))),
    el("div", { class: "facts muted" },
      el("span", { id: "result-model", text: `${v.model.name} ${v.model.version}` }),
      el("span", { text: `policy ${v.policy}` }),
      v.unfamiliarity === null ? null : el("span", { text: `unfamiliarity ${v.unfamiliarity.toFixed(2)}` }),
      v.truncated ? el("span", { text: "text truncated to the model's length" }) : null,
      el("span", { text: v.message_id })));
  const heads = el("div", { class: "heads" });
  if (v.heads) {
    for (const name of HEADS.filter((h) => h in v.heads).concat(Object.keys(v.heads).filter((h) => !HEADS.includes(h)))) {
      heads.append(renderHead(name, v.heads[name]));
    }
  } else {
    heads.append(el("p", { class: "muted", id: "no-predictions",
      text: "No predictions: there was no text to classify, so the model was not run." }));
  }
  box.replaceChildren(banner, heads, rawJson(v.raw));
}

function renderHead(name, head) {
  const bars = el("div", { class: "bars" });
  head.probabilities.forEach(([label, p], i) => {
    bars.append(el("div", { class: i === 0 ? "bar top" : "bar", title: `${label}: ${pct(p)}` },
      el("span", { class: "bar-name", text: label }),
      el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: `display:block;width:${(100 * p).toFixed(1)}%` })),
      el("span", { class: "bar-pct", text: pct(p) })));
  });
  return el("div", { class: "head", "data-head": name },
    el("div", { class: "head-name", text: name }),
    el("div", {}, el("span", { class: "head-label", text: head.label }),
      " ", el("span", { class: "head-conf", text: `${pct(head.confidence)} calibrated` })),
    bars);
}

function renderDeadLetter(v) {
  const box = $("result");
  box.dataset.status = "dead_letter";
  box.replaceChildren(
    el("div", { class: "banner dead" },
      el("div", {}, el("span", { class: "route", text: "dead letter" }),
        " · stage ", el("b", { id: "dlq-stage", text: v.stage || "?" }),
        " · ", el("b", { id: "dlq-type", text: v.error_type || "?" })),
      el("div", { id: "dlq-reason", text: v.reason || "" }),
      el("div", { class: "small muted", text: `on the DLQ with the original key, value and headers (${v.message_id || "no message_id"})` })),
    rawJson(v.raw));
}

function rawJson(raw) {
  if (!raw) return null;
  let shown = raw;
  try { shown = JSON.stringify(JSON.parse(raw), null, 2); } catch (_) { /* cut: as it is */ }
  return el("details", { id: "raw" }, el("summary", { text: "raw JSON" }), el("pre", { text: shown }));
}

// ---- the live stream -----------------------------------------------------------------

function connect() {
  const source = new EventSource("/api/events");
  const live = $("stream-state");
  source.onopen = () => { live.textContent = "live"; live.className = "chip state-live"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "chip state-wait"; };
  source.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    state.escalations = snap.escalations;
    state.deadLetters = snap.dead_letters;
    renderFeeds();
    renderStats(snap);
  });
  source.addEventListener("stats", (e) => renderStats(JSON.parse(e.data)));
  source.addEventListener("records", (e) => {
    for (const r of JSON.parse(e.data)) {
      if (r.kind === "dead_letter") state.deadLetters.unshift(r);
      else if (r.route === "escalate") state.escalations.unshift(r);
      if (r.own) {
        state.ownSeen.set(r.message_id, r);
        if (state.ownSeen.size > 50) state.ownSeen.delete(state.ownSeen.keys().next().value);
      }
      // A result that came after the try gave up waiting: show it now.
      if (r.own && r.message_id === state.late) {
        state.late = null;
        if (r.kind === "dead_letter") renderDeadLetter(r.view); else renderRouted(r.view);
      }
    }
    state.escalations.length = Math.min(state.escalations.length, RECENT);
    state.deadLetters.length = Math.min(state.deadLetters.length, RECENT);
    renderFeeds();
  });
}

function renderFeeds() {
  const item = (r) => {
    const text = r.text !== null && r.text !== undefined
      ? el("span", { class: "text", text: r.text || "(empty text)" })
      : el("span", { class: "text hidden", text: "text hidden (start the console with --show-live-text)" });
    const what = r.kind === "dead_letter"
      ? `${r.stage} · ${r.error_type}${r.reason ? `: ${r.reason}` : ""}`
      : `${r.reason}` + (r.labels ? ` · ${HEADS.filter((h) => r.labels[h]).map((h) => r.labels[h][0]).join(" / ")}` : "");
    return el("li", { class: r.own ? "own" : "" },
      el("span", { class: "when", text: clock(r.at_ms) }),
      el("span", { class: "what", text: what }),
      el("span", { class: "muted", text: r.message_id || "" }), text);
  };
  $("escalations").replaceChildren(...state.escalations.map(item));
  $("dead-letters").replaceChildren(...state.deadLetters.map(item));
}

function renderStats(s) {
  const rates = s.series.rates;
  const last = (name) => rates[name][rates[name].length - 1] || 0;
  $("rate-now").textContent = ROUTES.reduce((sum, r) => sum + last(r), 0).toFixed(1);
  $("dlq-now").textContent = last("dead_letter").toFixed(1);
  const low = s.low_confidence;
  $("low-rate").textContent = low.routed ? `${pct(low.low / low.routed)} of ${low.routed}` : "—";
  const g = s.group;
  $("lag").textContent = g && g.lag !== null ? String(g.lag) : "—";
  $("workers").textContent = g && g.members !== null ? `workers: ${g.members} in ${g.group}` : "workers: ?";
  const trouble = s.tap_error || s.kafka_error;
  const banner = $("kafka-error");
  banner.hidden = !trouble;
  banner.textContent = trouble ? `Kafka: ${trouble}` : "";
  drawChart(s.series);
}

function drawChart(series) {
  const svg = $("chart");
  const W = 600, H = 170, pad = 18;
  const n = series.rates.escalate.length;
  const max = Math.max(1, ...SERIES.flatMap((k) => series.rates[k]));
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(1, n - 1);
  const y = (v) => H - pad - (v * (H - 2 * pad)) / max;
  const nodes = [
    make("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: "#d0d4de" }),
    make("line", { x1: pad, y1: pad, x2: W - pad, y2: pad, stroke: "#eef0f6" }),
  ];
  const top = make("text", { x: pad + 2, y: pad - 5, "font-size": 10, fill: "#6b7385" });
  top.textContent = `${max.toFixed(1)} msg/s`;
  const left = make("text", { x: pad, y: H - 4, "font-size": 10, fill: "#6b7385" });
  left.textContent = `−${Math.round((n * series.step_s) / 60)} min`;
  const right = make("text", { x: W - pad, y: H - 4, "font-size": 10, fill: "#6b7385", "text-anchor": "end" });
  right.textContent = "now";
  nodes.push(top, left, right);
  for (const name of SERIES) {
    const points = series.rates[name].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    nodes.push(make("polyline", { points, fill: "none", "stroke-width": 2,
      stroke: getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim() }));
  }
  svg.replaceChildren(...nodes);
}

// ---- tabs ----------------------------------------------------------------------------

function showTab() {
  const wanted = location.hash === "#review" && state.config && state.config.review && may("agent") ? "review" : "live";
  for (const name of ["live", "review"]) {
    $(`tab-${name}`).hidden = name !== wanted;
    $(`tab-${name}-link`).classList.toggle("active", name === wanted);
  }
  state.tab = wanted;
  if (wanted === "review") refreshReview();
  else refreshShadow();
}

// ---- the review page -----------------------------------------------------------------
// The one place the console shows customer text by design (--review). The text is
// untrusted input: it goes into the page with textContent only.

// One key per label, per head, in the head's label order (shown on each button).
const KEYS = { intent: "12345", urgency: "qwe", sentiment: "asd", action: "zxc" };
const AGENT_KEY = "support-router.agent";
const review = { items: [], revision: -1, selected: null, choice: {}, sending: false };

function agentName() {
  try { return localStorage.getItem(AGENT_KEY) || ""; } catch (_) { return ""; }
}

function renderAgent() {
  const name = state.me.user || agentName();
  $("agent-form").hidden = Boolean(name);
  $("agent-bar").hidden = !name;
  $("agent-shown").textContent = name;
  $("agent-change").hidden = Boolean(state.me.user);
}

function saveAgent(event) {
  event.preventDefault();
  const name = $("agent-name").value.trim();
  if (!name) return;
  if (!state.config.agent_keyed && !new RegExp(state.config.agent_id_pattern).test(name)) {
    $("agent-note").textContent = "This console records the name as it is (it has no --agent-key-file), " +
      "so give an agent id: letters, digits, '.', '_', ':', '-'; no spaces, no e-mail address.";
    return;
  }
  $("agent-note").textContent = "";
  try { localStorage.setItem(AGENT_KEY, name); } catch (_) { /* private mode: asked again */ }
  renderAgent();
}

function changeAgent() {
  $("agent-name").value = agentName();
  try { localStorage.removeItem(AGENT_KEY); } catch (_) { /* nothing kept */ }
  renderAgent();
  $("agent-name").focus();
}

async function refreshReview() {
  if (!state.config || !state.config.review) return;
  try {
    const [queue, agreement] = await Promise.all([
      fetch("/api/review/queue?limit=200").then((r) => r.json()),
      fetch("/api/review/agreement").then((r) => r.json()),
    ]);
    renderQueue(queue);
    renderAgreement(agreement);
  } catch (err) {
    $("queue-note").textContent = `The console did not answer: ${err}`;
  }
}

// On the live tab: only the size, for the tab's badge.
async function refreshCount() {
  if (!state.config.review || !may("agent")) return;
  try {
    const q = await (await fetch("/api/review/queue?limit=1")).json();
    $("review-count").textContent = q.size ? String(q.size) : "";
  } catch (_) { /* the next poll tries again */ }
}

function renderQueue(q) {
  $("review-count").textContent = q.size ? String(q.size) : "";
  $("queue-size").textContent = `${q.size} waiting` + (q.size > q.items.length ? `, first ${q.items.length} shown` : "");
  const unreadable = Object.values(q.unreadable || {}).reduce((a, b) => a + b, 0);
  $("queue-note").textContent = [
    q.tap_error ? `The console stopped reading the review topics: ${q.tap_error}` : "",
    unreadable ? `${unreadable} records that are no valid review item or correction were left out.` : "",
    q.dropped ? `${q.dropped} old items dropped (the queue keeps the newest).` : "",
  ].filter(Boolean).join(" ");
  if (q.revision === review.revision) return;
  review.revision = q.revision;
  const before = review.items.findIndex((i) => i.message_id === review.selected);
  review.items = q.items;
  if (!review.items.some((i) => i.message_id === review.selected)) {
    // Answered (here or by another agent) or dropped: the next one in its place.
    const next = review.items[Math.min(Math.max(before, 0), review.items.length - 1)];
    select(next ? next.message_id : null);
  }
  drawQueue();
}

function drawQueue() {
  const list = $("queue");
  list.replaceChildren(...review.items.map((item) => {
    const li = el("li", { class: item.message_id === review.selected ? "selected" : "", "data-id": item.message_id,
      onclick: () => { select(item.message_id); drawQueue(); } },
      el("span", { class: "priority", title: "priority: how much a label would teach the model", text: item.priority.toFixed(2) }),
      el("span", { class: `chip reason-${item.reason}`, text: item.reason.replace("_", " ") }),
      el("span", { class: "muted small", text: [item.heads && item.heads.intent ? item.heads.intent.label : null, item.action]
        .filter(Boolean).map((l) => l.replaceAll("_", " ")).join(" · ") }),
      el("span", { class: "text", text: item.text === null ? "(no text)" : item.text || "(empty text)" }));
    return li;
  }));
  const current = list.querySelector("li.selected");
  if (current) current.scrollIntoView({ block: "nearest" });
}

function selected() {
  return review.items.find((i) => i.message_id === review.selected) || null;
}

function select(messageId) {
  if (messageId !== review.selected) $("review-status").textContent = "";
  review.selected = messageId;
  const item = selected();
  review.choice = {};
  if (item) {
    for (const head of Object.keys(state.config.heads)) {
      review.choice[head] = item.heads && item.heads[head] ? item.heads[head].label : null;
    }
  }
  drawItem();
}

function move(step) {
  const i = review.items.findIndex((x) => x.message_id === review.selected);
  const next = review.items[Math.min(Math.max(i + step, 0), review.items.length - 1)];
  if (next) { select(next.message_id); drawQueue(); }
}

function drawItem() {
  const item = selected();
  $("review-empty").hidden = Boolean(item);
  $("review-item").hidden = !item;
  if (!item) return;
  $("review-item").dataset.messageId = item.message_id;
  $("review-meta").replaceChildren(
    el("span", { class: `chip reason-${item.reason}`, id: "review-reason", text: `queued: ${item.reason.replace("_", " ")}` }),
    el("span", { text: `priority ${item.priority.toFixed(2)}` }),
    el("span", { text: `routed ${item.route} (${item.routing_reason})` }),
    el("span", { text: `${item.model.name} ${item.model.version}` }),
    el("span", { text: clock(item.at_ms) }),
    el("span", { text: item.message_id }));
  const text = $("review-text");
  text.textContent = item.text === null ? "(no text)" : item.text || "(empty text)";
  text.classList.toggle("cut", Boolean(item.text_cut));
  const rows = Object.entries(state.config.heads).map(([head, labels]) => {
    const model = item.heads && item.heads[head];
    const chosen = review.choice[head];
    const keys = KEYS[head] || "";
    const probability = (label) => {
      const pair = model ? model.probabilities.find(([l]) => l === label) : null;
      return pair ? pct(pair[1]) : "";
    };
    const buttons = labels.map((label, i) => el("button", {
      type: "button",
      class: ["label", label === chosen ? "chosen" : "", model && label === model.label ? "model" : ""].join(" ").trim(),
      "data-label": label,
      title: model && label === model.label ? "the model's label" : "",
      onclick: () => choose(head, label),
    }, keys[i] ? el("kbd", { text: keys[i] }) : null, el("span", { text: label.replaceAll("_", " ") }),
    el("span", { class: "p", text: probability(label) })));
    const changed = model ? chosen !== model.label : chosen !== null;
    return el("div", { class: `review-head${changed ? " changed" : ""}`, "data-head": head },
      el("div", { class: "review-head-top" },
        el("span", { class: "head-name", text: head }),
        el("span", { class: "muted small", text: model
          ? `model: ${model.label.replaceAll("_", " ")} ${pct(model.confidence)}` : "model: none" }),
        changed ? el("span", { class: "corrected small", text: "corrected" }) : null),
      el("div", { class: "labels" }, ...buttons));
  });
  $("review-heads").replaceChildren(...rows);
  $("review-submit").disabled = review.sending || Object.values(review.choice).some((v) => v === null);
}

function choose(head, label) {
  if (!selected()) return;
  review.choice[head] = label;
  drawItem();
}

async function sendCorrection(event) {
  if (event) event.preventDefault();
  const item = selected();
  if (!item || review.sending) return;
  const agent = state.me.user || agentName();
  if (!agent) {
    $("review-status").textContent = "Give your name first (above the queue).";
    $("agent-name").focus();
    return;
  }
  if (Object.values(review.choice).some((v) => v === null)) {
    $("review-status").textContent = "Choose a label for every head.";
    return;
  }
  review.sending = true;
  drawItem();
  const status = $("review-status");
  status.textContent = "sending…";
  try {
    // Logged in, the server takes the agent from the session; the name is for no login.
    const body0 = { labels: review.choice, reason: $("review-note").value };
    if (!state.me.user) body0.agent = agent;
    const response = await post(`/api/review/feedback/${encodeURIComponent(item.message_id)}`, body0);
    const body = await response.json();
    if (response.ok || response.status === 409 || response.status === 404) {
      // Sent, or answered or dropped meanwhile: either way it leaves this list.
      const i = review.items.findIndex((x) => x.message_id === item.message_id);
      review.items = review.items.filter((x) => x.message_id !== item.message_id);
      const next = review.items[Math.min(i, review.items.length - 1)];
      $("review-note").value = "";
      select(next ? next.message_id : null);
      drawQueue();
      status.textContent = response.ok
        ? `Sent for ${item.message_id} as ${body.feedback.agent_id} (${state.config.learning_topics.feedback} partition ${body.produced.partition}, offset ${body.produced.offset}).`
        : `Not sent: ${body.error}`;
      refreshReview();
    } else {
      status.textContent = `Not sent (HTTP ${response.status}): ${body.error || "unknown error"}`;
    }
  } catch (err) {
    status.textContent = `Not sent: ${err}`;
  } finally {
    review.sending = false;
    drawItem();
  }
}

function onKey(event) {
  if (state.tab !== "review" || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
  const key = event.key;
  if (key === "j") move(1);
  else if (key === "k") move(-1);
  else if (key === "Enter") sendCorrection(null);
  else if (key === "Escape") select(review.selected);
  else {
    const item = selected();
    const head = Object.keys(KEYS).find((h) => KEYS[h].includes(key.toLowerCase()));
    if (!item || !head || !state.config.heads[head]) return;
    const label = state.config.heads[head][KEYS[head].indexOf(key.toLowerCase())];
    if (label === undefined) return;
    choose(head, label);
  }
  event.preventDefault();
}

// ---- agreement: the model vs the agents; the candidate vs the serving model ----------

function rateCell(tally, title) {
  if (!tally || !tally.n) return el("td", { class: "muted", text: "—" });
  return el("td", { title: title || "" },
    el("span", { class: "meter" }, el("span", { style: `width:${(100 * tally.rate).toFixed(1)}%` })),
    el("b", { text: pct(tally.rate) }), el("span", { class: "muted", text: ` (${tally.n})` }));
}

function weighted(tally) {
  return tally && tally.weighted_rate !== null && tally.weighted_rate !== undefined
    ? `weighted to all traffic (review weights): ${pct(tally.weighted_rate)}` : "";
}

function table(header, rows) {
  return el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ...header.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

function renderAgreement(a) {
  const heads = a.heads;
  if (!a.versions.length) {
    $("agreement-body").replaceChildren(document.createTextNode(
      a.waiting ? `${a.waiting} corrections wait for their review item.` : "No corrections yet."));
    $("agreement-trend").replaceChildren();
    return;
  }
  $("agreement-body").replaceChildren(table(["model version", "corrected", ...heads],
    a.versions.map((v) => el("tr", { "data-version": v.version },
      el("td", { text: v.version }), el("td", { class: "n", text: String(v.n) }),
      ...heads.map((h) => rateCell(v.heads[h], weighted(v.heads[h])))))));
  $("agreement-trend").replaceChildren(table(["hour", "model version", "corrected", ...heads],
    a.trend.map((b) => el("tr", {},
      el("td", { text: new Date(b.start_s * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) }),
      el("td", { text: b.version }), el("td", { class: "n", text: String(b.n) }),
      ...heads.map((h) => rateCell(b.heads[h], weighted(b.heads[h])))))));
}

async function refreshShadow() {
  try {
    renderShadow(await (await fetch("/api/shadow")).json());
  } catch (_) { /* the next poll tries again */ }
}

function renderShadow(s) {
  $("shadow-topic").textContent = s.topic;
  $("shadow-note").textContent = [
    s.dead_letters ? `${s.dead_letters} dead letters of the shadow run.` : "",
    s.unreadable ? `${s.unreadable} records that are no valid shadow result were left out.` : "",
  ].filter(Boolean).join(" ");
  if (!s.candidates.length) {
    $("shadow-body").textContent = "No shadow results yet.";
    return;
  }
  $("shadow-body").replaceChildren(table(["candidate", "results", ...s.compared, "serving", "last"],
    s.candidates.map((c) => el("tr", { "data-version": c.version },
      el("td", { text: `${c.name} ${c.version}` }), el("td", { class: "n", text: String(c.n) }),
      ...s.compared.map((k) => rateCell(c.agree[k])),
      el("td", { class: "small", text: Object.keys(c.serving).join(", ") }),
      el("td", { class: "small", text: clock(c.last_ms) })))));
}

// ---- start ---------------------------------------------------------------------------

// ---- who is here ----------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  $("login-note").textContent = "";
  const response = await post("/api/login", { user: $("login-user").value, password: $("login-password").value });
  $("login-password").value = "";
  if (response.ok) { location.reload(); return; }
  const body = await response.json().catch(() => ({}));
  $("login-note").textContent = response.status === 429
    ? `Too many failed logins: ${body.error}` : body.error || `HTTP ${response.status}`;
}

async function logout() {
  await post("/api/logout", {});
  location.reload();
}

// The session decides what the page offers; the server enforces it on every request.
async function whoAmI() {
  const response = await fetch("/api/session", { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 && body.login) {
    $("login").hidden = false;
    $("login-form").addEventListener("submit", login);
    $("stream-state").textContent = "logged out";
    $("login-user").focus();
    return null;
  }
  if (!response.ok) {
    $("kafka-error").hidden = false;
    $("kafka-error").textContent = `Refused (HTTP ${response.status}): ${body.error || ""}`;
    return null;
  }
  return body;
}

async function start() {
  state.me = await whoAmI();
  if (!state.me) return;
  $("tab-live").hidden = false;
  if (state.me.user) {
    $("me").hidden = false;
    $("me-user").textContent = state.me.user;
    $("me-role").textContent = state.me.role;
    $("logout").hidden = !state.me.logout;
    $("logout").addEventListener("click", logout);
  }
  $("try").hidden = !may("operator");
  const legend = $("legend");
  for (const name of SERIES) {
    legend.append(el("span", {}, el("span", { class: "swatch", style: `background:var(--${name})` }), name.replace("_", " ")));
  }
  $("try-form").addEventListener("submit", submit);
  state.config = await (await fetch("/api/config")).json();
  $("inbound-topic").textContent = state.config.inbound;
  for (const sample of state.config.samples) {
    $("samples").append(el("button", { type: "button", class: "sample", title: sample, text: sample,
      onclick: () => { $("text").value = sample; $("text").focus(); } }));
  }
  $("privacy").textContent = state.config.show_live_text
    ? "Live traffic shows its text (--show-live-text)."
    : "Live traffic shows labels only; its text is hidden (privacy). This console's own messages show theirs.";
  if (state.config.review && may("agent")) {
    $("tab-review-link").hidden = false;
    $("agent-form").addEventListener("submit", saveAgent);
    $("agent-change").addEventListener("click", changeAgent);
    $("review-form").addEventListener("submit", sendCorrection);
    $("agent-name").placeholder = state.config.agent_keyed ? "your name" : "your agent id";
    document.addEventListener("keydown", onKey);
    renderAgent();
  }
  window.addEventListener("hashchange", showTab);
  showTab();
  setInterval(() => {
    if (state.tab === "review") refreshReview();
    else { refreshShadow(); refreshCount(); }
  }, 2000);
  connect();
}

document.addEventListener("DOMContentLoaded", start);
