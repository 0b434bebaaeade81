// Dashboard tests in a real browser: playwright-core driving Debian's
// chromium (headless) against real highlander replicas that
// test/system/test_dashboard.py starts.  Every check throws on failure; the
// process exits non-zero with the failed step's name.  Screenshots go to
// $OUT_DIR.
//
// Environment: LEADER_URL FOLLOWER_URL LEADER_ID FOLLOWER_ID FOLLOWER_PID
// LEADER_PID THIRD_URL THIRD_ID THIRD_PID KUBECTL KUBECONFIG NS OUT_DIR
// [CHROMIUM]
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const env = process.env;
const OUT = env.OUT_DIR;
mkdirSync(OUT, { recursive: true });

function kubectlApply(yaml) {
  return execFileSync(env.KUBECTL, ["--kubeconfig", env.KUBECONFIG, "apply", "-f", "-"],
                      { input: yaml, encoding: "utf8" });
}

async function api(url, path) {
  const res = await fetch(url + path);
  assert.equal(res.status, 200, path);
  return (await res.json()).data;
}

async function until(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("timed out: " + what + " (last: " + last + ")");
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});

// Requests to anything but the controller itself, and console errors, are
// failures: the dashboard must work offline under its CSP.
const foreign = [];
const consoleErrors = [];
async function openPage(url, viewport) {
  const ctx = await browser.newContext({ viewport: viewport || { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const origin = new URL(url).origin;
  page.on("request", (r) => { if (!r.url().startsWith(origin)) foreign.push(r.url()); });
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(url + "/");
  return page;
}

const dd = (page, card, key) => page.locator(`#${card} dd[data-key="${key}"]`).textContent();
let step = "start";
const results = [];
async function run(name, fn) {
  step = name;
  const t0 = Date.now();
  await fn();
  results.push(`${name}: ok (${Date.now() - t0} ms)`);
}

try {
  const leader = await openPage(env.LEADER_URL);
  const follower = await openPage(env.FOLLOWER_URL);

  await run("leader view", async () => {
    await leader.locator("#role", { hasText: "LEADER" }).waitFor({ timeout: 5000 });
    assert.equal(await leader.locator("#login").isVisible(), false);  // no token configured
    assert.equal(await dd(leader, "leadership", "This replica"), env.LEADER_ID);
    assert.equal(await dd(leader, "leadership", "Current leader"), env.LEADER_ID);
    assert.match(await dd(leader, "leadership", "Fencing token"), /^[1-9][0-9]*$/);
    assert.equal(await dd(leader, "store", "Type"), "redis");
    assert.equal(await dd(leader, "store", "Connected"), "yes");
    assert.equal(await dd(leader, "cluster", "Ready for traffic"), "yes");
    await leader.locator("#timeline li[data-event=acquired]").first().waitFor({ timeout: 5000 });
    await leader.locator('#workloads tr[data-name="dash-proc"]').waitFor({ timeout: 30000 });
    await leader.locator('#pods tr[data-name="dash-proc-pod"]').waitFor({ timeout: 30000 });
    // Uptime moves by itself, between data changes too (the page ticks it).
    const up1 = await dd(leader, "cluster", "Uptime");
    await leader.waitForTimeout(2200);
    const up2 = await dd(leader, "cluster", "Uptime");
    assert.notEqual(up1, up2);
    await leader.screenshot({ path: `${OUT}/leader.png`, fullPage: true });
  });

  await run("follower view", async () => {
    await follower.locator("#role", { hasText: "FOLLOWER" }).waitFor({ timeout: 5000 });
    assert.equal(await dd(follower, "leadership", "This replica"), env.FOLLOWER_ID);
    assert.equal(await dd(follower, "leadership", "Current leader"), env.LEADER_ID);
    await follower.locator("#timeline li[data-event=observed]").first().waitFor({ timeout: 5000 });
    await follower.screenshot({ path: `${OUT}/follower.png`, fullPage: true });
  });

  await run("workload details", async () => {
    await leader.locator('#workloads tr[data-name="dash-proc"]').click();
    const dlg = leader.locator("#details");
    await dlg.waitFor({ state: "visible", timeout: 3000 });
    const body = JSON.parse(await leader.locator("#details-body").textContent());
    assert.equal(body.name, "dash-proc");
    assert.equal(body.type, "process");
    assert.equal(body.spec.image, "busybox");
    await leader.screenshot({ path: `${OUT}/workload-details.png` });
    await leader.locator("#details button.close").click();
    await dlg.waitFor({ state: "hidden", timeout: 3000 });
  });

  await run("pod details", async () => {
    await leader.locator('#pods tr[data-name="dash-proc-pod"]').click();
    const body = JSON.parse(await leader.locator("#details-body").textContent());
    assert.equal(body.name, "dash-proc-pod");
    assert.equal(body.leaderId, env.LEADER_ID);
    await leader.locator("#details button.close").click();
  });

  await run("hostile values rendered as text", async () => {
    // The replica ids and a resource's error carry markup; none of it runs
    // or becomes elements.
    const pwned = await leader.evaluate(() => window.__pwned);
    assert.equal(pwned, undefined);
    assert.equal(await leader.locator("#replica").textContent(), `replica ${env.LEADER_ID} · tenant default`);
    await leader.locator('#workloads tr[data-name="dash-bad"]').waitFor({ timeout: 30000 });
    const err = await leader.locator('#workloads tr[data-name="dash-bad"] td.wrap').textContent();
    assert.ok(err.includes("<img/src=x/onerror=window.__pwned=3>"), err);
    assert.equal(await leader.locator("main img, main script, header script").count(), 0);
    assert.equal(await follower.evaluate(() => window.__pwned), undefined);
    await leader.screenshot({ path: `${OUT}/hostile.png`, fullPage: true });
  });

  await run("a pod name containing <script> rendered as text", async () => {
    // Kubernetes rejects such names, so the real controller cannot list one:
    // the browser gets the leader's real answer with one pod renamed.
    const page = await (await browser.newContext()).newPage();
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    const evil = "<script>window.__pwned=4</script><img src=x onerror=window.__pwned=5>";
    await page.route("**/api/dashboard", async (route) => {
      const res = await route.fetch({ headers: { ...route.request().headers(), "if-none-match": "" } });
      const doc = await res.json();
      doc.data.pods[0].name = evil;
      doc.data.pods[0].node = "<b>bold</b>";
      await route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(doc) });
    });
    await page.goto(env.LEADER_URL + "/");
    const cell = page.locator("#pods tbody tr").first().locator("td").first();
    await cell.waitFor({ timeout: 5000 });
    await until("the hostile name shown", async () => (await cell.textContent()) === evil, 5000);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator("#pods img, #pods script, #pods b").count(), 0);
    await page.locator("#pods tbody tr").first().click();
    assert.equal(JSON.parse(await page.locator("#details-body").textContent()).name, evil);
    await page.screenshot({ path: `${OUT}/hostile-pod.png` });
    await page.context().close();
  });

  await run("live update without reload", async () => {
    // A new resource: the time from the API knowing it to the page showing
    // it must stay under 2 s, in the same document (no reload).
    await leader.evaluate(() => { window.__sameDocument = true; });
    kubectlApply(`apiVersion: highlander.plexobject.io/v1
kind: WorkloadProcess
metadata: {name: dash-live, namespace: ${env.NS}}
spec: {image: busybox, script: {commands: ["sleep 100"]}}
`);
    await until("the API listing dash-live",
                async () => (await api(env.LEADER_URL, "/api/workloads?view=list")).some((w) => w.name === "dash-live"), 20000);
    const t0 = Date.now();
    await leader.locator('#workloads tr[data-name="dash-live"]').waitFor({ timeout: 5000 });
    const lag = Date.now() - t0;
    assert.ok(lag < 2000, `shown ${lag} ms after the API had it`);
    assert.equal(await leader.evaluate(() => window.__sameDocument), true);
    results.push(`  live update shown ${lag} ms after the API had it`);
  });

  await run("unreachable and back", async () => {
    // A stopped process answers nothing: the page says so, then recovers.
    process.kill(Number(env.FOLLOWER_PID), "SIGSTOP");
    try {
      await follower.locator("#offline").waitFor({ state: "visible", timeout: 8000 });
      assert.equal(await follower.locator("#role").textContent(), "UNREACHABLE");
      await follower.screenshot({ path: `${OUT}/unreachable.png` });
    } finally {
      process.kill(Number(env.FOLLOWER_PID), "SIGCONT");
    }
    await follower.locator("#offline").waitFor({ state: "hidden", timeout: 8000 });
    await follower.locator("#role", { hasText: "FOLLOWER" }).waitFor({ timeout: 5000 });
  });

  await run("360 px wide", async () => {
    const phone = await openPage(env.LEADER_URL, { width: 360, height: 740 });
    await phone.locator('#workloads tr[data-name="dash-proc"]').waitFor({ timeout: 10000 });
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 360, `page is ${width} px wide at 360 px`);
    const box = await phone.locator(".card").first().boundingBox();
    assert.ok(box.width <= 360 && box.x >= 0, JSON.stringify(box));
    await phone.screenshot({ path: `${OUT}/mobile.png`, fullPage: true });
  });

  // The pictures: lanes of who led when, lease round trips and health.
  const attr = (v) => JSON.stringify(v);   // ids go into selectors quoted
  await run("pictures: leader view", async () => {
    const lane = leader.locator(`#lanes g.lane[data-lane=${attr(env.LEADER_ID)}]`);
    await lane.waitFor({ timeout: 5000 });
    assert.equal(await lane.locator(":scope > title").textContent(), env.LEADER_ID);   // full id, as text
    assert.ok((await lane.locator(".lane-label").textContent()).endsWith("(this)"));
    await leader.locator(`#lanes rect.span.self.open[data-leader=${attr(env.LEADER_ID)}]`).waitFor({ timeout: 5000 });
    assert.equal(await leader.locator("#lanes script, #lanes img, #lanes foreignObject").count(), 0);
    // A point every 10 s: wait for the first closed bucket.
    await leader.locator("#latency-chart polyline[data-key=maxMs]").waitFor({ state: "attached", timeout: 25000 });
    await leader.locator("#health-chart polyline[data-key=healthy]").waitFor({ state: "attached", timeout: 5000 });
    await leader.locator("#health-chart polyline[data-key=total]").waitFor({ state: "attached", timeout: 5000 });
    assert.ok((await leader.locator("#latency-chart rect.led").count()) >= 1, "the leader's buckets are marked");
    // The notes say what the controller's own series says.
    await until("the health note matching /api/timeline", async () => {
      const tl = await api(env.LEADER_URL, "/api/timeline");
      const b = tl.series[tl.series.length - 1];
      return b.total > 0 && (await leader.locator("#health-note").textContent()) === `(${b.healthy} of ${b.total} now)`;
    }, 15000);
    await until("the latency note", async () =>
      /^\(last [0-9.]+ ms, mean [0-9.]+ ms; 0 failed in the window\)$/.test(await leader.locator("#latency-note").textContent()), 5000);
    await leader.locator("#lanes").scrollIntoViewIfNeeded();
    await leader.screenshot({ path: `${OUT}/pictures.png`, fullPage: true });
  });

  await run("pictures: follower view", async () => {
    const span = follower.locator(`#lanes rect.span.open[data-leader=${attr(env.LEADER_ID)}]`);
    await span.waitFor({ timeout: 5000 });
    assert.equal(await span.getAttribute("data-how"), "first");   // led before this replica came
    assert.equal(await follower.locator("#lanes rect.span.self").count(), 0);
    await follower.locator("#latency-chart polyline[data-key=maxMs]").waitFor({ state: "attached", timeout: 25000 });
    assert.equal(await follower.locator("#latency-chart rect.led").count(), 0, "a follower never led");
  });

  const replicas = [{ id: env.FOLLOWER_ID, url: env.FOLLOWER_URL, pid: env.FOLLOWER_PID, page: follower },
                    { id: env.THIRD_ID, url: env.THIRD_URL, pid: env.THIRD_PID, page: await openPage(env.THIRD_URL) }];
  const leaderAmong = async (list) => {
    for (const r of list) if ((await api(r.url, "/api/status")).isLeader) return r;
    return null;
  };
  const marker = async (r, how) => {
    const m = r.page.locator(`#lanes text.marker-label[data-how=${how}][data-leader=${attr(r.id)}]`);
    await m.waitFor({ timeout: 10000 });
    const label = await m.textContent();
    const match = label.match(new RegExp(`^${how} ([0-9.]+) s$`));
    assert.ok(match, label);
    await r.page.locator("#role", { hasText: "LEADER" }).waitFor({ timeout: 5000 });
    await r.page.locator(`#lanes rect.span.self.open[data-leader=${attr(r.id)}]`).waitFor({ timeout: 5000 });
    return Number(match[1]);
  };
  let next;
  await run("handover seen live", async () => {
    await replicas[1].page.locator(`#lanes g.lane[data-lane=${attr(env.LEADER_ID)}]`).waitFor({ timeout: 5000 });
    process.kill(Number(env.LEADER_PID), "SIGTERM");   // releases the lease
    next = await until("a new leader", () => leaderAmong(replicas), 10000);
    const gap = await marker(next, "handover");
    assert.ok(gap < 3, `handover took ${gap} s`);
    // The other replica saw it too, as a handover between the two others.
    const other = replicas.find((r) => r !== next);
    await other.page.locator(`#lanes rect.span[data-how=handover][data-leader=${attr(next.id)}]`).waitFor({ timeout: 5000 });
    await next.page.locator("#lanes").scrollIntoViewIfNeeded();
    await next.page.screenshot({ path: `${OUT}/handover.png`, fullPage: true });
    results.push(`  handover to ${next.id} in ${gap} s`);
  });

  await run("failover seen live", async () => {
    const last = replicas.find((r) => r !== next);
    process.kill(Number(next.pid), "SIGKILL");         // no release: the lease must run out
    await until("the last replica leading", async () => (await leaderAmong([last])) === last, 15000);
    const gap = await marker(last, "failover");
    assert.ok(gap > 0 && gap < 10, `failover took ${gap} s`);
    // Three leaders seen by the last one: the first, the one it handed to, itself.
    assert.equal(await last.page.locator("#lanes svg").getAttribute("data-lanes"), "3");
    await last.page.locator("#lanes").scrollIntoViewIfNeeded();
    await last.page.screenshot({ path: `${OUT}/failover.png`, fullPage: true });
    results.push(`  failover to ${last.id} in ${gap} s`);
  });

  await run("no foreign requests, no console errors", async () => {
    assert.deepEqual(foreign, []);
    // Fetches that time out while the follower is stopped are expected.
    const errs = consoleErrors.filter((e) => !/Failed to load resource|TimeoutError|signal timed out/.test(e));
    assert.deepEqual(errs, []);
  });
} catch (e) {
  await browser.close();
  console.error(`FAILED ${step}: ${e.stack || e}`);
  process.exit(1);
}
await browser.close();
console.log(results.join("\n"));
console.log("dashboard: all checks passed; screenshots in " + OUT);
