// Drives the console of a running `tokenmesh up --demo --access-token-ttl 3s`
// in Debian's chromium (playwright-core, no downloaded browser): alice signs
// in, her token is refreshed before it expires, she sees her products and the
// decoded grant, orders (GRANT decides), an admin in another
// browser context revokes her entitlement, and her next order is refused.
// Asserts the page never stored a token and the page's security headers, and
// saves its two screenshots into <screenshot dir> (docs/ keeps the README's). Usage:
//   CHROMIUM=$(which chromium) node test/console.test.mjs <console URL> <screenshot dir>
import assert from "node:assert/strict";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, shots] = process.argv.slice(2);
assert.ok(url && shots, "usage: console.test.mjs <console URL> <screenshot dir>");
const executablePath = process.env.CHROMIUM;
assert.ok(executablePath, "set CHROMIUM to the browser binary (which chromium)");

/** Every wait is bounded: a hung console fails the test, it never hangs CI. */
const DEADLINE_MS = 15_000;

const browser = await chromium.launch({
  executablePath,
  // chromium refuses its sandbox to root (CI runs as root).
  chromiumSandbox: process.getuid?.() !== 0,
});
const problems = [];

async function open(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  context.setDefaultTimeout(DEADLINE_MS);
  const page = await context.newPage();
  // A CSP violation or script error shows as a console error: none allowed.
  page.on("console", (m) => m.type() === "error" && problems.push(`${name}: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`${name}: ${e.message}`));
  const response = await page.goto(url);
  const headers = response.headers();
  const csp = headers["content-security-policy"] ?? "";
  for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(directive), `CSP lacks ${directive}: ${csp}`);
  }
  assert.match(csp, /connect-src 'self' http:\/\/127\.0\.0\.1:\d+ http:\/\/127\.0\.0\.1:\d+ http:\/\/127\.0\.0\.1:\d+;/);
  assert.equal(headers["x-content-type-options"], "nosniff");
  assert.equal(headers["referrer-policy"], "no-referrer");
  await page.waitForSelector("body[data-ready=true]");
  return { context, page };
}

async function signIn(page, user) {
  await page.fill("#username", user);
  await page.fill("#password", `${user}-demo`);
  await page.click("#login-button");
  await page.waitForSelector("#workspace:not([hidden])");
}

/** Nothing a script or a later visit could read a token from. */
async function assertNothingStored({ context, page }, who) {
  const stored = await page.evaluate(() => ({
    local: localStorage.length,
    session: sessionStorage.length,
    cookie: document.cookie,
  }));
  assert.deepEqual(stored, { local: 0, session: 0, cookie: "" }, `${who} stored something`);
  assert.deepEqual(await context.cookies(), [], `${who} has cookies`);
}

const text = (page, selector) => page.locator(selector).innerText();

try {
  const alice = await open("alice");
  await signIn(alice.page, "alice");
  await alice.page.waitForSelector("#product-rows tr");
  // The test's mesh issues 3-second access tokens: the page refreshes its
  // own before they expire (the expiry it shows moves on), without a reload.
  const firstToken = await text(alice.page, "#who");
  await alice.page.waitForFunction(
    (before) => document.getElementById("who").textContent !== before,
    firstToken,
  );
  console.log(`refreshed: ${firstToken} -> ${await text(alice.page, "#who")}`);
  const listed = await alice.page.locator("#product-rows button").evaluateAll((b) => b.map((x) => x.dataset.product));
  assert.deepEqual(listed, ["P-100", "P-101", "P-102"], "alice's products");
  assert.match(await text(alice.page, "#grant-version"), /^Claims version 2: P-100, P-101, P-102 \(until .+\)$/);
  const claims = JSON.parse(await text(alice.page, "#grant-claims"));
  assert.equal(claims.sub, "alice");
  assert.equal(claims.ver, 2);
  assert.deepEqual(claims.grants.map((g) => g.productId), ["P-100", "P-101", "P-102"]);
  await alice.page.screenshot({ path: join(shots, "console-grant.png"), fullPage: true });

  await alice.page.click('#product-rows button[data-product="P-100"]');
  await alice.page.waitForSelector("#order-result:text('decided by')");
  assert.match(await text(alice.page, "#order-result"), /^Order \S+: P-100 × 1, decided by GRANT$/);
  console.log(`alice ordered: ${await text(alice.page, "#order-result")}`);

  // The admin, in a browser of their own.
  const admin = await open("admin");
  await signIn(admin.page, "admin");
  await admin.page.waitForSelector("#admin:not([hidden])");
  assert.equal(await alice.page.locator("#admin").isHidden(), true, "alice sees no admin view");
  await admin.page.fill("#admin-subject", "alice");
  await admin.page.fill("#admin-product", "P-100");
  await admin.page.click("#revoke");
  await admin.page.waitForSelector("#admin-result:text('Revoked')");
  console.log(`admin: ${await text(admin.page, "#admin-result")}`);

  // Orders hears the revocation on its feed within about a second: until it
  // has, alice's grant (issued before it) still decides. Order until refused.
  let accepted = 0;
  const until = Date.now() + DEADLINE_MS;
  for (;;) {
    const before = await alice.page.locator("#order-result").getAttribute("data-sequence");
    await alice.page.click('#product-rows button[data-product="P-100"]');
    await alice.page.waitForFunction(
      (previous) => document.getElementById("order-result").dataset.sequence !== previous,
      before,
    );
    const result = await text(alice.page, "#order-result");
    if (result.includes("refused")) {
      assert.match(result, /^Order for P-100 refused: PermissionDenied: .+/);
      console.log(`alice refused: ${result} (after ${accepted} order(s) placed before Orders heard)`);
      break;
    }
    accepted += 1;
    assert.ok(Date.now() < until, `still accepted after the revocation: ${result}`);
  }
  assert.equal(await alice.page.locator("#order-result.refused").count(), 1);
  await alice.page.screenshot({ path: join(shots, "console-refused.png"), fullPage: true });

  for (const [who, browsed] of [["alice", alice], ["admin", admin]]) {
    await assertNothingStored(browsed, who);
    await browsed.page.click("#logout");
    await browsed.page.waitForSelector("#login:not([hidden])");
    assert.equal(await browsed.page.locator("#workspace").isHidden(), true);
    await assertNothingStored(browsed, who);
  }
  assert.deepEqual(problems, [], "console errors");
  console.log("console test passed");
} finally {
  await browser.close();
}
