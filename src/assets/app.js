// highlander dashboard: polls /api/dashboard once a second with
// If-None-Match (304 while nothing changed) and rebuilds the page from the
// answer.  Every value from the server is untrusted: text goes into the DOM
// through textContent only, never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const TIMEOUT_MS = 2500;   // a hung controller counts as unreachable
const KINDS = [["process", "Processes"], ["cronJob", "CronJobs"], ["service", "Services"],
               ["persistentSet", "Persistent sets"]];
let etag = null;
let last = null;
let offlineSince = null;
let token = sessionStorage.getItem("highlander-token") || "";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function yesNo(v) {
  return el("span", {class: v ? "yes" : "no"}, v ? "yes" : "no");
}

function text(v) {
  return v === null || v === undefined || v === "" ? "—" : String(v);
}

function when(iso) {
  if (!iso || iso.startsWith("0001-")) return "—";   // Go's zero time: never
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

function duration(seconds) {
  let s = Math.max(0, Math.floor(seconds || 0));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s + "s";
}

// As kubectl prints ages: 45s, 3m12s, 5h4m, 12d.
function age(iso) {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d";
}

function fillList(dl, rows) {
  const items = [];
  for (const [k, v] of rows) {
    items.push(el("dt", {}, k));
    items.push(el("dd", {"data-key": k}, v instanceof Node ? v : text(v)));
  }
  dl.replaceChildren(...items);
}

function showDetails(title, obj) {
  $("details-title").textContent = title;
  $("details-body").textContent = JSON.stringify(obj, null, 2);
  const d = $("details");
  if (!d.open) d.showModal();
}

function clickable(tr, title, obj) {
  tr.tabIndex = 0;
  tr.addEventListener("click", () => showDetails(title, obj));
  tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") showDetails(title, obj); });
  return tr;
}

function renderStatus(s, store) {
  const role = s.isLeader ? "leader" : "follower";
  const badge = $("role");
  badge.dataset.role = role;
  badge.textContent = s.isLeader ? "LEADER" : "FOLLOWER";
  $("replica").textContent = "replica " + s.leaderID + " · tenant " + s.tenant;
  fillList($("leadership"), [
    ["Role", s.isLeader ? "leader" : "follower"],
    ["This replica", s.leaderID],
    ["Current leader", s.currentLeader || "—"],
    ["Last leader", s.lastLeader || "—"],
    ["Leader since", s.isLeader ? when(s.leaderSince) : "—"],
    ["Fencing token", s.fencingToken],
    ["Transitions", s.leadershipTransitions],
    ["Failovers", s.failoverCount],
    ["Last change", s.lastLeadershipChangeReason || "—"],
    ["Last transition", when(s.lastLeaderTransition)],
    ["Controller state", s.state + " (" + s.controllerState + ")"],
  ]);
  fillList($("cluster"), [
    ["Name", s.clusterName],
    ["Health", s.clusterHealth ? "healthy" : "store unreachable"],
    ["Ready for traffic", yesNo(s.readyForTraffic)],
    ["Uptime", el("span", {class: "uptime", "data-since": s.startTime},
                  duration((Date.now() - Date.parse(s.startTime)) / 1000))],
    ["Version", s.version],
  ]);
  fillList($("store"), [
    ["Type", store.type],
    ["Address", store.address],
    ["Connected", yesNo(store.connected)],
    ["Failures", store.failures],
    ["Last error", store.lastError],
  ]);
}

function renderWorkloads(list, summary) {
  const box = $("workloads");
  const parts = [];
  $("wl-summary").textContent = summary && summary.managed
    ? "(" + summary.healthy + " of " + summary.total + " healthy)" : "(not managed by this replica)";
  for (const [kind, label] of KINDS) {
    const rows = list.filter((w) => w.type === kind);
    const body = rows.map((w) => clickable(el("tr", {"data-name": w.name},
      el("td", {}, w.name), el("td", {}, w.namespace), el("td", {}, yesNo(w.active)),
      el("td", {}, yesNo(w.healthy)), el("td", {}, text(w.phase)), el("td", {class: "wrap"}, text(w.lastError))),
      label.replace(/s$/, "") + " " + w.namespace + "/" + w.name, w));
    parts.push(el("div", {class: "kind"}, el("h3", {}, label + " (" + rows.length + ")"),
      rows.length ? el("div", {class: "scroll"}, el("table", {},
        el("thead", {}, el("tr", {}, ...["Name", "Namespace", "Active", "Healthy", "Phase", "Last error"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, ...body))) : el("div", {class: "empty"}, "none")));
  }
  box.replaceChildren(...parts);
}

function renderPods(pods) {
  $("pod-count").textContent = "(" + pods.length + ")";
  const rows = pods.map((p) => clickable(el("tr", {"data-name": p.name},
    el("td", {}, text(p.name)), el("td", {}, text(p.namespace)), el("td", {}, text(p.phase)),
    el("td", {}, text(p.node)),
    p.createdAt ? el("td", {class: "age", "data-since": p.createdAt}, age(p.createdAt)) : el("td", {}, "—"),
    el("td", {}, text(p.leaderId)),
    el("td", {}, text(p.cluster))), "Pod " + p.namespace + "/" + p.name, p));
  if (!rows.length) rows.push(el("tr", {}, el("td", {colspan: "7", class: "empty"}, "no managed pods")));
  document.querySelector("#pods tbody").replaceChildren(...rows);
}

function renderTimeline(history) {
  const items = history.slice().reverse().map((e) => el("li", {"data-event": e.event},
    when(e.time) + " — " + e.event + " — " + text(e.leader) + " (token " + e.fencingToken + ")" +
    (e.reason ? " — " + e.reason : "")));
  if (!items.length) items.push(el("li", {class: "empty"}, "no transitions seen yet"));
  $("timeline").replaceChildren(...items);
}

// Moves the values that change by themselves, without rebuilding the page.
function tick() {
  for (const e of document.querySelectorAll(".uptime[data-since]"))
    e.textContent = duration((Date.now() - Date.parse(e.dataset.since)) / 1000);
  for (const e of document.querySelectorAll(".age[data-since]"))
    e.textContent = age(e.dataset.since);
}

function render(d) {
  renderStatus(d.status, d.store);
  renderWorkloads(d.workloads, d.status.workloadSummary);
  renderPods(d.pods);
  renderTimeline(d.history);
}

function setOffline(isOffline) {
  if (isOffline) {
    if (offlineSince === null) offlineSince = new Date();
    $("offline-since").textContent = "since " + offlineSince.toLocaleTimeString();
    $("offline").hidden = false;
    $("role").dataset.role = "unreachable";
    $("role").textContent = "UNREACHABLE";
  } else {
    offlineSince = null;
    $("offline").hidden = true;
  }
}

async function poll() {
  try {
    const headers = {};
    if (etag) headers["If-None-Match"] = etag;
    if (token) headers["Authorization"] = "Bearer " + token;
    const res = await fetch("/api/dashboard", {headers, cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS)});
    if (res.status === 401) {
      setOffline(false);
      $("login").hidden = false;
    } else if (res.status === 304 && last) {
      setOffline(false);
      tick();   // unchanged data (the page keeps its focus); uptime and ages still move
    } else if (res.ok) {
      const doc = await res.json();
      etag = res.headers.get("ETag");
      last = doc.data;
      setOffline(false);
      $("login").hidden = true;
      render(last);
    } else {
      throw new Error("HTTP " + res.status);
    }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    etag = null;
    setOffline(true);
  }
  setTimeout(poll, POLL_MS);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value;
  sessionStorage.setItem("highlander-token", token);
  etag = null;
});

poll();
