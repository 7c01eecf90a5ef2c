// The Lab page in chromium (playwright-core): log in on a lab run, see the experiment and its arms
// side by side, fire a defined intervention from the operator's form, see it listed and marked on
// the death timeline. Prints one JSON object of findings; a screenshot goes to the folder given.
// usage: node lab.mjs URL PASSWORD OUTDIR
import { chromium } from "playwright-core";

const [url, password, outdir] = process.argv.slice(2);
const found = { errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (e) => found.errors.push(String(e)));
  await page.goto(url + "/login");
  await page.fill("#password", password);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#lab:not([hidden]) .lab-arm", { timeout: 30000 });
  found.name = await page.textContent("#lab-name");
  found.arms = await page.$$eval(".lab-arm", (els) => els.map((e) => e.dataset.arm));
  await page.waitForFunction(() => window.brainjarLab && window.brainjarLab.arms[0].thoughts >= 2, null, { timeout: 120000 });
  await page.selectOption("#lab-iv", "wipe");
  await page.selectOption("#lab-brain", "wiped/1/SUBJECT");
  await page.click("#lab-fire button[type=submit]");
  await page.waitForSelector("#lab-events li.intervention", { timeout: 60000 });
  found.event = await page.textContent("#lab-events li.intervention span");
  // marked on the death timeline: the chart's last series (interventions) has a point
  found.marked = await page.evaluate(() => {
    const u = window.brainjarCharts && window.brainjarCharts.deaths;
    return !!u && u.data[u.data.length - 1].some((v) => v != null);
  });
  await page.screenshot({ path: `${outdir}/dashboard-lab.png` });
} catch (e) {
  found.failure = String(e);
}
await browser.close();
console.log(JSON.stringify(found));
