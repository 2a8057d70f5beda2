// support-router console: plain DOM, no build step. Every string from the server (and so
// from Kafka) goes into the page as text (textContent), never as markup.
"use strict";

const ROUTES = ["escalate", "auto_resolve", "more_info"];
const SERIES = [...ROUTES, "dead_letter"];
const HEADS = ["intent", "urgency", "sentiment", "action"];
const RECENT = 20;
// late: the id of a try that got no answer in time; ownSeen: this page's recent own
// results from the stream, for one that arrives before the try's answer is read.
const state = { config: null, late: null, ownSeen: new Map(), escalations: [], deadLetters: [] };

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
    const response = await fetch("/api/try", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text }),
    });
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

// ---- start ---------------------------------------------------------------------------

async function start() {
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
  connect();
}

document.addEventListener("DOMContentLoaded", start);
