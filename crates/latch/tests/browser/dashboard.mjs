// Drives headless Chromium through the latch dashboard as an approver would:
// sign in, see the pending request, approve it, see the grant, revoke it.
// Saves a screenshot of each dashboard; fails on any console error (a CSP
// violation shows there). Usage: node dashboard.mjs BASE_URL USER PASSWORD REQUEST_ID OUT_DIR
import { chromium } from "playwright-core";

const [base, user, password, requestId, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const problems = [];
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
page.on("pageerror", (e) => problems.push(String(e)));
const step = (what) => console.log(`step: ${what}`);
const expectText = async (text) => {
  const body = await page.textContent("body");
  if (!body.includes(text)) throw new Error(`expected ${JSON.stringify(text)} on ${page.url()}:\n${body}`);
};

step("sign in");
await page.goto(`${base}/ui/login`);
await page.fill("input[name=user]", user);
await page.fill("input[name=password]", password);
await Promise.all([page.waitForNavigation(), page.click("form.login button")]);
await expectText("Pending approvals");
await expectText(requestId);

step("approve");
const row = page.locator("tr", { hasText: requestId });
await row.locator("input[name=text]").first().fill("looks right");
await Promise.all([page.waitForNavigation(), row.locator("button", { hasText: "Approve" }).click()]);
await expectText(`approved ${requestId}`);
await expectText("Active grants");
const grantRow = page.locator("tr", { hasText: "grt_" }).first();
const grantId = (await grantRow.locator("td").first().textContent()).trim();
await page.screenshot({ path: `${out}/oncall.png`, fullPage: true });

step("executive and debug");
await page.goto(`${base}/ui/executive`);
await expectText("Privileged access granted per day");
await expectText("Service levels, last 30 days");
await page.screenshot({ path: `${out}/executive.png`, fullPage: true });
await page.goto(`${base}/ui/debug`);
await expectText("Audit chain verified");
await page.screenshot({ path: `${out}/debug.png`, fullPage: true });

step("revoke");
await page.goto(`${base}/ui/oncall`);
await Promise.all([page.waitForNavigation(), page.locator("tr", { hasText: grantId }).locator("button", { hasText: "Revoke" }).click()]);
await expectText(`revoked ${grantId}`);
if ((await page.locator("tr", { hasText: grantId }).count()) !== 0) throw new Error("the revoked grant is still listed");

await browser.close();
if (problems.length) throw new Error(`console errors: ${problems.join("\n")}`);
console.log(JSON.stringify({ ok: true, grant: grantId }));
