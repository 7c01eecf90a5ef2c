// Drives Debian's chromium through the dashboard (playwright-core from npm, pinned in
// package-lock.json): log in, three brains streaming, a death and its resurrection, an operator
// action, log out. Prints one JSON object of findings; screenshots go to the folder given.
// usage: node dashboard.mjs URL PASSWORD OUTDIR [VIEWER_PASSWORD (user vera)]
import { chromium } from "playwright-core";

const [url, password, outdir, viewerPassword] = process.argv.slice(2);
const found = { errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What a visitor would see wrong on a chart: time labels that run into each other, a right
// axis too narrow for its widest label, a legend for a GPU the machine lacks. uPlot draws axes
// on a canvas, so the labels are measured with the chart's own font.
async function chartFaults(page) {
  return page.evaluate(() => {
    const faults = [];
    const ctx = document.createElement("canvas").getContext("2d");
    for (const [name, u] of Object.entries(window.brainjarCharts || {})) {
      u.axes.forEach((ax, i) => {
        if (!ax._values || !ax._splits) return;
        ctx.font = ax.font[0] || "12px sans-serif";
        // a label may have several lines (uPlot draws each): its width is its widest line's
        const widths = ax._values.map((v) => Math.max(...String(v ?? "").split("\n").map((l) => ctx.measureText(l).width)));
        if (i === 0) {
          const xs = ax._splits.map((s) => u.valToPos(s, "x"));
          for (let k = 1; k < xs.length; k++)
            if (xs[k] - xs[k - 1] < (widths[k] + widths[k - 1]) / 2 + 4) faults.push(`${name}: x labels ${ax._values[k - 1]} and ${ax._values[k]} collide`);
        } else if (Math.max(0, ...widths) + 6 > ax._size) {
          faults.push(`${name}: axis ${i} is ${ax._size} px for labels of ${Math.ceil(Math.max(...widths))} px`);
        }
      });
    }
    const legend = [...document.querySelectorAll(".u-legend .u-series")].map((e) => e.textContent.trim());
    return { faults, legend };
  });
}

// Boxes: the death counter inside its panel, the veil off while a brain is alive.
async function panelFaults(page) {
  return page.evaluate(() => {
    const faults = [];
    for (const el of document.querySelectorAll(".brain")) {
      const b = el.getBoundingClientRect(), n = el.querySelector(".death-count .n").getBoundingClientRect();
      if (n.left < b.left || n.right > b.right || n.top < b.top || n.bottom > b.bottom) faults.push(`${el.dataset.brain}: counter outside its panel`);
      const veil = getComputedStyle(el.querySelector(".veil")).opacity;
      if (!el.classList.contains("dead") && !el.classList.contains("dying") && Number(veil) > 0.05)
        faults.push(`${el.dataset.brain}: veil (opacity ${veil}) over a living brain's words`);
    }
    return faults;
  });
}
try {
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 }, deviceScaleFactor: 1 });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => found.errors.push(String(e)));
  // 401s are expected (the wrong password, /api/me after logout); anything else is a fault.
  page.on("console", (m) => { if (m.type() === "error" && !m.text().includes("status of 401")) found.errors.push(m.text()); });

  await page.goto(url + "/");
  found.login_redirect = new URL(page.url()).pathname;
  await page.waitForSelector("#login-form");
  await page.fill("#password", "wrong password");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("error").textContent.length > 0);
  found.wrong_password_message = await page.textContent("#error");
  await page.fill("#password", password);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector('.brain[data-brain="GOD"]', { timeout: 20000 });
  found.panels = await page.$$eval(".brain", (els) => els.map((e) => e.dataset.brain));

  // Streaming: each brain's live text changes many times.
  const changes = {}, last = {};
  const t0 = Date.now();
  while (Date.now() - t0 < 20000) {
    const now = await page.$$eval(".brain", (els) => els.map((e) => [e.dataset.brain, e.querySelector(".now .text").textContent]));
    for (const [id, text] of now) {
      if (last[id] !== undefined && last[id] !== text) changes[id] = (changes[id] || 0) + 1;
      last[id] = text;
    }
    if (Object.keys(changes).length === 3 && Object.values(changes).every((n) => n >= 5)) break;
    await sleep(100);
  }
  found.stream_changes = changes;
  // While text streams, the jar and the speed say so (within the 250 ms refresh).
  found.alive_readings = await page.$$eval(".brain:not(.dead)", (els) => els.map((e) => [e.dataset.brain,
    e.querySelector(".state").textContent, e.querySelector(".jar-text").textContent, e.querySelector(".speed").textContent]));
  found.panel_faults = await panelFaults(page);

  // A death (the panel goes dark) and its resurrection (it comes back with a new life).
  const dead = await page.waitForSelector(".brain.dead", { timeout: 150000 });
  const deadId = await dead.evaluate((e) => e.dataset.brain);
  found.death = { brain: deadId, veil: await dead.evaluate((e) => e.querySelector(".veil-title").textContent),
                  cause: await dead.evaluate((e) => e.querySelector(".veil-sub").textContent) };
  found.death_faults = await panelFaults(page); // the counter's bump is running now
  await sleep(400);
  found.dead_readings = await dead.evaluate((e) => e.classList.contains("dead") ?
    [e.querySelector(".jar-text").textContent, e.querySelector(".speed").textContent] : null);
  await page.screenshot({ path: `${outdir}/dashboard-death.png` });
  await page.waitForFunction((id) => !document.querySelector(`.brain[data-brain="${id}"]`).classList.contains("dead"),
                             deadId, { timeout: 30000 });
  found.resurrected = { brain: deadId, life: await page.textContent(`.brain[data-brain="${deadId}"] .life`) };
  found.reborn_faults = await panelFaults(page); // the new life is announced: not over its words

  // Operator actions: pause GOD from its panel, see it paused, resume; say something to SUBJECT.
  found.ops_visible = await page.isVisible('.brain[data-brain="SUBJECT"] button[data-act="pause"]');
  // A brain paused while dead stays dead until resumed: pause SUBJECT (it watches nobody, so it
  // lives longest) while it thinks; if it dies in between, resume and try again.
  const sel = '.brain[data-brain="SUBJECT"]';
  for (let i = 0; i < 5 && !found.paused; i++) {
    await page.waitForFunction((s) => document.querySelector(s + " .state").textContent === "thinking", sel, { timeout: 60000 });
    await page.click(sel + ' button[data-act="pause"]');
    found.paused = await page.waitForFunction((s) => document.querySelector(s + " .state").textContent === "paused",
                                              sel, { timeout: 8000 }).then(() => true, () => false);
    if (!found.paused) await page.click(sel + ' button[data-act="resume"]');
  }
  if (!found.paused) throw new Error("SUBJECT never showed as paused");
  await page.screenshot({ path: `${outdir}/dashboard-paused.png` });
  await page.click(sel + ' button[data-act="resume"]');
  await page.waitForFunction((s) => document.querySelector(s + " .state").textContent !== "paused", sel, { timeout: 20000 });
  found.resumed = true;
  await page.fill('.brain[data-brain="SUBJECT"] input[name=say]', "<b>hello</b> from the browser");
  await page.click('.brain[data-brain="SUBJECT"] form.ops button[type=submit]');
  await page.waitForFunction(() => document.getElementById("toast").textContent.includes("say SUBJECT: accepted; it hears the words"), null,
                             { timeout: 10000 });
  await page.waitForFunction(() => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes("<b>hello</b>")),
                             null, { timeout: 10000 });
  found.said = true;
  found.html_injected = await page.$$eval("#log b, .brain b", (els) => els.length);
  found.charts = await page.$$eval(".uplot", (els) => els.length);
  await sleep(1500);
  await page.screenshot({ path: `${outdir}/dashboard.png`, fullPage: true });
  found.charts_1600 = await chartFaults(page);
  await page.setViewportSize({ width: 1400, height: 900 });
  await sleep(800);
  await page.screenshot({ path: `${outdir}/dashboard-1400.png` });
  found.charts_1400 = await chartFaults(page);

  // Phone and kiosk views.
  const phone = await ctx.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(url + "/");
  await phone.waitForSelector('.brain[data-brain="GOD"]');
  await sleep(2500);
  found.phone_overflow = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await phone.screenshot({ path: `${outdir}/dashboard-phone.png`, fullPage: false });
  await phone.close();
  const kiosk = await ctx.newPage();
  await kiosk.setViewportSize({ width: 1920, height: 1080 });
  await kiosk.goto(url + "/?kiosk=1");
  await kiosk.waitForSelector('.brain[data-brain="GOD"]');
  await sleep(3000);
  found.kiosk_controls_visible = await kiosk.isVisible('.brain button[data-act="kill"]');
  found.kiosk_charts = await chartFaults(kiosk);
  await kiosk.screenshot({ path: `${outdir}/dashboard-kiosk.png` });
  await kiosk.close();

  // Log out: back to the login page, and the session is gone on the server.
  await page.click("#logout");
  await page.waitForURL(/\/login/, { timeout: 10000 });
  found.after_logout = new URL(page.url()).pathname;
  found.me_after_logout = await page.evaluate(async () => (await fetch("/api/me")).status);

  // A viewer sees everything but no operator controls; and a 4K gallery screen in kiosk mode.
  if (viewerPassword) {
    await page.fill("#username", "vera");
    await page.fill("#password", viewerPassword);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector('.brain[data-brain="GOD"]', { timeout: 20000 });
    await sleep(1000);
    found.viewer_role = await page.textContent("#who");
    found.viewer_controls_visible = await page.isVisible('.brain button[data-act="kill"]');
    const big = await ctx.newPage();
    await big.setViewportSize({ width: 3840, height: 2160 });
    await big.goto(url + "/?kiosk=1");
    await big.waitForSelector('.brain[data-brain="GOD"]');
    await sleep(3000);
    found.kiosk_4k_overflow = await big.evaluate(() => document.documentElement.scrollHeight > window.innerHeight + 1);
    found.kiosk_4k_charts = await chartFaults(big);
    await big.screenshot({ path: `${outdir}/dashboard-kiosk-4k.png` });
    await big.close();
  }
} catch (e) {
  found.failure = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(found));
