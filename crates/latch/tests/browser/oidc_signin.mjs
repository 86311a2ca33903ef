// Signs in to the latch dashboard through a real OpenID Provider in headless
// Chromium, as a person would: "Sign in with corp" on /ui/login, the
// provider's login page, back to latch's callback, on to the dashboard.
// Along the way the provider's redirect back (code + state) is captured
// before it reaches latch and replayed in two other browsers — one with its
// own sign-in under way, one with none — which must be refused; then the
// browser that started the sign-in finishes it.
// Usage: node oidc_signin.mjs BASE_URL LOGIN
import { chromium } from "playwright-core";

const [base, login] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const problems = [];
const step = (what) => console.log(`step: ${what}`);
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  // latch's pages must raise no console error (a CSP violation shows there).
  page.on("console", (m) => { if (m.type() === "error" && page.url().startsWith(base)) problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  return page;
}
const expectText = async (page, text) => {
  const body = await page.textContent("body");
  if (!body.includes(text)) throw new Error(`expected ${JSON.stringify(text)} on ${page.url()}:\n${body}`);
};
const isCallback = (url) => String(url).includes("/ui/oidc/corp/callback");

step("start at the dashboard, sign in at the provider");
const a = await newPage();
await a.goto(`${base}/ui/login`);
await Promise.all([a.waitForURL((u) => !u.href.startsWith(base)), a.click("text=Sign in with corp")]);
if (!a.url().includes("/interaction/")) throw new Error(`not at the provider's login page: ${a.url()}`);
// Hold the provider's redirect back to latch: the browser submits the
// provider's login form; the submission and the provider's resume step run
// through this browser's own request context (same cookies), without
// following the last redirect, so the callback URL is captured undelivered.
// (Playwright's routes do not see redirects, hence not the callback itself.)
let captured;
const isLoginPost = (url) => /\/interaction\/[^/]+\/login$/.test(String(url));
await a.route(isLoginPost, async (route) => {
  const resp = await route.fetch({ maxRedirects: 0 });
  const resume = new URL(resp.headers()["location"], route.request().url()).href;
  const back = await a.context().request.get(resume, { maxRedirects: 0 });
  captured = new URL(back.headers()["location"], resume).href;
  await route.fulfill({ status: 200, contentType: "text/html", body: "<p>held</p>" });
});
await a.fill("input[name=login]", login);
await Promise.all([a.waitForURL((u) => isLoginPost(u)), a.click("button")]);
await expectText(a, "held");
if (!captured || !isCallback(captured) || !captured.includes("code=")) throw new Error(`no callback: ${captured}`);
await a.unroute(isLoginPost);

step("replay in a browser with its own sign-in under way");
const b = await newPage();
await b.goto(`${base}/ui/login`);
await Promise.all([b.waitForURL((u) => !u.href.startsWith(base)), b.click("text=Sign in with corp")]);
await b.goto(captured);
await b.waitForURL((u) => u.pathname === "/ui/login");
await expectText(b, "not started in this browser");

step("replay in a browser without any sign-in");
const c = await newPage();
await c.goto(captured);
await c.waitForURL((u) => u.pathname === "/ui/login");
await expectText(c, "not started in this browser");
await c.goto(`${base}/ui/oncall`);
if (!c.url().endsWith("/ui/login")) throw new Error(`the replaying browser is signed in: ${c.url()}`);

step("the browser that started it finishes it");
await a.goto(captured);
await a.waitForURL((u) => u.pathname === "/ui/oncall");
await expectText(a, `user:${login}`);
await expectText(a, "Pending approvals");

step("the same callback again, in the same browser");
await a.goto(captured);
await a.waitForURL((u) => u.pathname === "/ui/login");
await expectText(a, "refused (state)");

await browser.close();
if (problems.length) throw new Error(`console errors: ${problems.join("\n")}`);
console.log(JSON.stringify({ ok: true, callback: captured.split("?")[0] }));
