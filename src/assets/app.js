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
    ["Health", s.clusterHealth ? "healthy" : "Kubernetes API unreachable"],
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

// ---- pictures: who led when, and the last hour (SVG built as DOM nodes) ----
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

function secs(s) {
  return (s < 10 ? s.toFixed(1) : String(Math.round(s))) + " s";
}

function shorten(s, n) {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

// The time window drawn: the last hour, or less when less was seen (at
// least a minute), ending now.
function timeWindow(tl, now) {
  let first = now;
  for (const s of tl.spans) first = Math.min(first, s.start);
  if (tl.series.length) first = Math.min(first, tl.series[0].end - tl.bucketSeconds);
  let t0 = Math.max(now - tl.windowSeconds, first - 2);
  if (now - t0 < 60) t0 = now - 60;
  return [t0, now];
}

function axis(x, t0, t1, y, x0, x1) {
  const g = svg("g", {class: "axis-times"}, svg("line", {class: "axis", x1: x0, x2: x1, y1: y, y2: y}));
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (t1 - t0) * i / 4;
    g.append(svg("text", {class: "tick", x: x(t), y: y + 14, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle"},
                 clock(t)));
  }
  return g;
}

function renderLanes(tl, selfId, now) {
  const box = $("lanes");
  const [t0, t1] = timeWindow(tl, now);
  const spans = tl.spans.filter((s) => (s.end === null ? t1 : s.end) >= t0);
  const lanes = [];
  for (const s of spans) if (!lanes.includes(s.leader)) lanes.push(s.leader);
  if (!lanes.length) {
    box.replaceChildren(el("div", {class: "empty"}, "no leader seen yet"));
    return;
  }
  const W = 1000, LABEL = 170, LANE = 30, TOP = 4, H = TOP + lanes.length * LANE + 24;
  const x = (t) => LABEL + (Math.max(t, t0) - t0) / (t1 - t0) * (W - LABEL - 8);
  const laneY = (leader) => TOP + lanes.indexOf(leader) * LANE;
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "leadership lanes",
                           "data-lanes": lanes.length, "data-spans": spans.length});
  for (const id of lanes) {
    const y = laneY(id);
    root.append(svg("g", {class: "lane", "data-lane": id}, svg("title", {}, id),
      svg("rect", {class: "lane-bg", x: LABEL, y: y + 2, width: W - LABEL - 8, height: LANE - 4}),
      svg("text", {class: "lane-label", x: 4, y: y + LANE / 2 + 4}, shorten(id, 22) + (id === selfId ? " (this)" : ""))));
  }
  for (const s of spans) {
    const end = s.end === null ? t1 : s.end, y = laneY(s.leader);
    if (s.gapSeconds !== null && s.start >= t0 && s.gapSeconds > 0)
      root.append(svg("rect", {class: "gap", x: x(s.start - s.gapSeconds), y: TOP,
                               width: Math.max(1, x(s.start) - x(s.start - s.gapSeconds)), height: lanes.length * LANE}));
    const cls = "span" + (s.leader === selfId ? " self" : "") + (s.end === null ? " open" : "");
    root.append(svg("rect", {class: cls, x: x(s.start), y: y + 6, width: Math.max(2, x(end) - x(s.start)),
                             height: LANE - 12, "data-leader": s.leader, "data-how": s.how, "data-token": s.fencingToken},
      svg("title", {}, `${s.leader} · token ${s.fencingToken} · ${clock(s.start)} – ` +
                       (s.end === null ? "now" : clock(s.end)) + ` · ${s.how}` +
                       (s.gapSeconds !== null ? ` after ${secs(s.gapSeconds)} without a leader` : "") +
                       (s.ended ? ` · ${s.ended}` : ""))));
  }
  // Markers last, so they stay on top: each change of leader, its kind and
  // the leaderless time before it.
  for (const s of spans) {
    if (s.how === "first" || s.start < t0) continue;
    const y = laneY(s.leader), mx = x(s.start);
    root.append(svg("line", {class: "marker " + s.how, x1: mx, x2: mx, y1: TOP, y2: TOP + lanes.length * LANE}));
    const left = mx > W - 130;   // near now: the label goes before the marker
    root.append(svg("text", {class: "marker-label " + s.how, "data-how": s.how, "data-leader": s.leader,
                             x: left ? mx - 4 : mx + 4, "text-anchor": left ? "end" : "start", y: y + LANE / 2 + 4},
                    s.how + " " + secs(s.gapSeconds || 0)));
  }
  root.append(axis(x, t0, t1, TOP + lanes.length * LANE + 4, LABEL, W - 8));
  box.replaceChildren(root);
}

// A small line chart of one value per bucket; bands where this replica led.
function chart(tl, now, lines, yUnit, label) {
  const [t0, t1] = timeWindow(tl, now);
  const pts = tl.series.filter((b) => b.end >= t0);
  const W = 480, H = 170, L = 44, R = 8, T = 8, B = 22;
  const x = (t) => L + (Math.max(t, t0) - t0) / (t1 - t0) * (W - L - R);
  let ymax = 0;
  for (const b of pts) for (const ln of lines) if (b[ln.key] !== null) ymax = Math.max(ymax, b[ln.key]);
  ymax = ymax > 0 ? ymax * 1.15 : 1;
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, "data-points": pts.length});
  for (const b of pts)
    if (b.leading)
      root.append(svg("rect", {class: "led", x: x(b.end - tl.bucketSeconds), y: T,
                               width: Math.max(1, x(b.end) - x(b.end - tl.bucketSeconds)), height: H - T - B}));
  for (const ln of lines) {
    const p = pts.filter((b) => b[ln.key] !== null).map((b) => `${x(b.end).toFixed(1)},${y(b[ln.key]).toFixed(1)}`);
    if (p.length === 1) p.push(p[0].replace(/^[^,]*/, (v) => String(Number(v) + 2)));
    if (p.length) root.append(svg("polyline", {class: "line " + ln.cls, points: p.join(" "), "data-key": ln.key}));
  }
  for (const b of pts)
    if (b.errors)
      root.append(svg("circle", {class: "err", cx: x(b.end), cy: T + 3, r: 3},
                      svg("title", {}, `${b.errors} of ${b.ops} round trips failed before ${clock(b.end)}`)));
  root.append(svg("line", {class: "axis", x1: L, x2: L, y1: T, y2: H - B}));
  root.append(svg("text", {class: "tick", x: L - 4, y: T + 10, "text-anchor": "end"}, ymax.toFixed(ymax < 10 ? 1 : 0)));
  root.append(svg("text", {class: "tick", x: L - 4, y: H - B, "text-anchor": "end"}, "0"));
  root.append(svg("text", {class: "tick", x: L - 4, y: T + 24, "text-anchor": "end"}, yUnit));
  root.append(svg("text", {class: "tick", x: L, y: H - 6}, clock(t0)));
  root.append(svg("text", {class: "tick", x: W - R, y: H - 6, "text-anchor": "end"}, clock(t1)));
  if (!pts.length)
    root.append(svg("text", {class: "tick", x: W / 2, y: H / 2, "text-anchor": "middle"},
                    `collecting: a point every ${tl.bucketSeconds} s`));
  return root;
}

function renderSeries(tl, now) {
  const last = tl.series.length ? tl.series[tl.series.length - 1] : null;
  const errors = tl.series.reduce((n, b) => n + b.errors, 0);
  $("latency-chart").replaceChildren(chart(tl, now, [{key: "maxMs", cls: "latency"}], "ms", "lease round trip"));
  $("latency-note").textContent = last && last.maxMs !== null
    ? `(last ${last.maxMs.toFixed(1)} ms, mean ${last.meanMs.toFixed(1)} ms; ${errors} failed in the window)` : "";
  $("health-chart").replaceChildren(chart(tl, now, [{key: "total", cls: "total"}, {key: "healthy", cls: "healthy"}],
                                          "count", "workload health"));
  $("health-note").textContent = !last ? "" : last.total === null ? "(no workload manager)"
    : `(${last.healthy} of ${last.total} now)`;
}

function renderPictures(d) {
  const now = Date.now() / 1000;
  renderLanes(d.timeline, d.status.leaderID, now);
  renderSeries(d.timeline, now);
}

// Moves the values that change by themselves, without rebuilding the page.
function tick() {
  for (const e of document.querySelectorAll(".uptime[data-since]"))
    e.textContent = duration((Date.now() - Date.parse(e.dataset.since)) / 1000);
  for (const e of document.querySelectorAll(".age[data-since]"))
    e.textContent = age(e.dataset.since);
  if (last) renderPictures(last);   // the window's end is now
}

function render(d) {
  renderStatus(d.status, d.store);
  renderWorkloads(d.workloads, d.status.workloadSummary);
  renderPods(d.pods);
  renderTimeline(d.history);
  renderPictures(d);
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
