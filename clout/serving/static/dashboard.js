// The live dashboard: polls the read API (same origin) every few seconds while the tab is visible.
// Every value from the API goes into the page as text (textContent), never as HTML.
"use strict";

const POLL_SECONDS = Number(new URLSearchParams(location.search).get("poll")) || 3;
const BOARD_SIZE = 25;
const INFLATED_GAP = 15; // raw - clean score points from which a row is marked inflated
const state = {window: "latest", platform: "", user: null, detector: "", paused: false};
let lastUpdate = null;
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = (value, digits = 1) => (value === null || value === undefined ? "–"
  : Number.isInteger(value) ? String(value) : Number(value).toFixed(digits));
const enc = encodeURIComponent;

async function api(path) {
  const response = await fetch(path, {cache: "no-store", headers: {Accept: "application/json"}});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `${response.status} ${path}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

async function optional(path) {
  try {
    return await api(path);
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

// --- state in the URL (#user=u3&window=latest&platform=x), so a view can be shared or bookmarked ---

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.user = params.get("user") || state.user;
  state.window = params.get("window") || state.window;
  state.platform = params.get("platform") || "";
  state.detector = params.get("detector") || "";
}

function writeHash() {
  const params = new URLSearchParams();
  if (state.user) params.set("user", state.user);
  if (state.window !== "latest") params.set("window", state.window);
  if (state.platform) params.set("platform", state.platform);
  if (state.detector) params.set("detector", state.detector);
  history.replaceState(null, "", `#${params}`);
}

function userLink(user) {
  return el("a", {href: `#user=${enc(user)}`, class: user === state.user ? "user selected" : "user",
                  onclick: (event) => { event.preventDefault(); selectUser(user); }}, user);
}

function selectUser(user) {
  state.user = user;
  $("user-input").value = user;
  writeHash();
  refresh();
}

// --- rendering -----------------------------------------------------------------------------------

function bar(value, className) {
  const width = Math.max(0, Math.min(100, Number(value) || 0));
  return el("div", {class: `bar ${className}`}, el("span", {style: `width:${width}%`}), fmt(value));
}

function renderRaw(board) {
  const rows = board.entries.map((e) => {
    const inflated = e.gap !== null && e.gap >= INFLATED_GAP;
    return el("tr", {class: inflated ? "inflated" : ""},
      el("td", {}, e.rank), el("td", {}, userLink(e.user), e.flag_score !== null ? el("span", {class: "flag-mark", title: `flag score ${fmt(e.flag_score, 2)}`}, "⚑") : null),
      el("td", {}, bar(e.score, "raw")), el("td", {}, bar(e.clean_score, "clean")),
      el("td", {class: "gap"}, e.gap === null ? "–" : (e.gap > 0 ? "+" : "") + fmt(e.gap)),
      el("td", {}, e.clean_rank === null ? "–" : e.clean_rank));
  });
  $("raw-board").tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(6, "no influence scores in this window yet")]));
  $("raw-scope").textContent = board.platform ? `platform ${board.platform}` : "all platforms";
}

function renderClean(board) {
  const rows = board.entries.map((e) => el("tr", {class: e.gap !== null && e.gap >= INFLATED_GAP ? "inflated" : ""},
    el("td", {}, e.rank), el("td", {}, userLink(e.user)), el("td", {}, bar(e.clean_score, "clean")),
    el("td", {}, fmt(e.score)), el("td", {}, e.score_rank === null ? "–" : e.score_rank)));
  $("clean-board").tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(5, "no clean scores in this window yet")]));
}

function emptyRow(columns, text) {
  return el("tr", {}, el("td", {colspan: columns, class: "muted"}, text));
}

function renderFlags(flagged) {
  const filters = ["", "burst", "bot", "lockstep", "microcluster", "account"].map((name) =>
    el("button", {type: "button", class: name === state.detector ? "chip on" : "chip",
                  onclick: () => { state.detector = name; writeHash(); refresh(); }}, name || "all"));
  $("detector-filter").replaceChildren(...filters);
  $("flag-count").textContent = `${flagged.page.total} in this window`;
  const rows = flagged.entries.flatMap((entry) => {
    const flags = entry.flags.length ? entry.flags : [{detector: state.detector || "?", score: entry.score, reasons: []}];
    return flags.map((flag, i) => el("tr", {},
      el("td", {}, i === 0 ? userLink(entry.user) : ""), el("td", {}, el("span", {class: `detector ${flag.detector}`}, flag.detector)),
      el("td", {}, fmt(flag.score, 2)),
      el("td", {class: "reasons"}, flag.reasons.length ? flag.reasons.join("; ") : "(reasons expired)")));
  });
  $("flag-table").tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(4, "no flagged accounts")]));
}

function renderGroups(list) {
  $("group-count").textContent = `${list.page.total} in this window`;
  const cards = list.groups.map((entry) => {
    const g = entry.group;
    return el("div", {class: "group"},
      el("div", {class: "group-head"}, el("strong", {}, entry.id), ` ${entry.size} members`,
         g ? ` · synchrony ${fmt(g.synchrony, 2)} · score ${fmt(g.score, 2)}` : " · (record expired)"),
      g ? el("div", {}, "members: ", ...g.members.flatMap((m) => [userLink(m), " "])) : null,
      g && g.targets.length ? el("div", {}, "targets: ", ...g.targets.flatMap((t) => [userLink(t), " "])) : null);
  });
  $("group-list").replaceChildren(...(cards.length ? cards : [el("p", {class: "muted"}, "no coordination groups")]));
}

function renderUser(view, history) {
  if (!state.user) return;
  $("user-hint").textContent = state.user;
  if (!view) {
    $("user-detail").replaceChildren(el("p", {class: "muted"}, `no influence recorded for ${state.user}`));
    $("history-chart").replaceChildren();
    return;
  }
  const inf = view.influence, parts = inf.parts || {};
  const flags = view.flags.map((f) => el("li", {}, el("span", {class: `detector ${f.detector}`}, f.detector),
    ` ${fmt(f.score, 2)} · ${f.reasons.join("; ")}`));
  $("user-detail").replaceChildren(
    el("div", {class: "user-figures"},
      figure("score", fmt(inf.score)), figure("clean", fmt(inf.clean_score)),
      figure("long-term", fmt(longTerm(view.long_term))), figure("rank", inf.rank ?? "–"),
      figure("percentile", fmt(inf.percentile)), figure("platform", inf.platform ?? "–")),
    el("div", {class: "parts"}, ...["reach", "amplification", "network"].map((name) =>
      el("div", {}, el("span", {class: "part-name"}, name), bar(100 * (parts[name] ?? 0), "part")))),
    flags.length ? el("ul", {class: "user-flags"}, ...flags) : el("p", {class: "muted"}, "no live flags"));
  const points = history ? history.points : [];
  lineChart($("history-chart"), [
    {name: "raw score", className: "raw", points: points.map((p) => ({x: p.end, y: p.score}))},
    {name: "clean score", className: "clean", points: points.map((p) => ({x: p.end, y: p.clean_score}))},
  ], {label: `score history of ${state.user}`});
}

function figure(name, value) {
  return el("div", {class: "figure"}, el("span", {class: "figure-value"}, value), el("span", {class: "figure-name"}, name));
}

function longTerm(value) {
  if (value === null || value === undefined) return null;
  return typeof value === "object" ? value.score ?? null : value;
}

function renderStatus(fresh, windowInfo) {
  const info = windowInfo || (fresh && fresh.window);
  if (!info) return;
  $("window-label").textContent = `window ${timeLabel(info.start)} – ${timeLabel(info.end)} UTC`;
  $("final-badge").textContent = info.final ? "closed" : "open";
  $("final-badge").className = info.final ? "badge closed" : "badge open";
  const age = fresh && fresh.age_seconds;
  $("freshness").textContent = age === null || age === undefined ? "" : `· newest results ${ago(age)} old`;
  $("freshness").className = age !== null && age > 600 ? "stale" : "";
}

function renderWindows(list) {
  const select = $("window-select");
  const options = [el("option", {value: "latest"}, "latest (follow)"),
    ...list.windows.map((w) => el("option", {value: w.id}, `${timeLabel(w.start)} – ${timeLabel(w.end)}${w.final ? "" : " (open)"}`))];
  select.replaceChildren(...options);
  select.value = state.window;
}

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// --- the poll loop -------------------------------------------------------------------------------

async function refresh() {
  const w = enc(state.window);
  const platform = state.platform ? `&platform=${enc(state.platform)}` : "";
  const detector = state.detector ? `&detector=${enc(state.detector)}` : "";
  try {
    const [fresh, windows, raw, clean, flagged, groups, view, history] = await Promise.all([
      api("/v1/freshness"), api("/v1/windows?limit=48"),
      api(`/v1/windows/${w}/leaderboard?board=score&limit=${BOARD_SIZE}${platform}`),
      api(`/v1/windows/${w}/leaderboard?board=clean&limit=${BOARD_SIZE}`),
      api(`/v1/windows/${w}/flagged?limit=50${detector}`), api(`/v1/windows/${w}/groups?limit=20`),
      state.user ? optional(`/v1/users/${enc(state.user)}`) : null,
      state.user ? optional(`/v1/users/${enc(state.user)}/history`) : null,
    ]);
    renderWindows(windows);
    renderStatus(fresh, raw.window);
    renderRaw(raw);
    renderClean(clean);
    renderFlags(flagged);
    renderGroups(groups);
    renderUser(view, history);
    lastUpdate = Date.now();
    $("error").textContent = "";
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("error").textContent = `${error.message} · `;
  }
}

function tick() {
  if (lastUpdate) $("updated").textContent = `· updated ${ago((Date.now() - lastUpdate) / 1000)} ago`;
  if (!state.paused && !document.hidden) refresh();
}

function start() {
  readHash();
  $("poll-seconds").textContent = POLL_SECONDS;
  $("platform").value = state.platform;
  $("user-input").value = state.user || "";
  $("window-select").addEventListener("change", (event) => { state.window = event.target.value; writeHash(); refresh(); });
  $("platform").addEventListener("change", (event) => { state.platform = event.target.value.trim(); writeHash(); refresh(); });
  $("user-input").addEventListener("change", (event) => selectUser(event.target.value.trim()));
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "resume" : "pause";
  });
  refresh();
  timer = setInterval(tick, POLL_SECONDS * 1000);
}

window.addEventListener("DOMContentLoaded", start);
window.addEventListener("hashchange", () => { readHash(); refresh(); });
