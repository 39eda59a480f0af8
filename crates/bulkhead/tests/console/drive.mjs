// Drives the operator console in the system's Chromium, headless, as an operator would.
// Run by crates/bulkhead/tests/console.rs, which starts the server and passes:
//   BULKHEAD_URL, ADMIN_KEY, OPERATOR_KEY, CHROMIUM (the browser), SCREENSHOTS (a directory),
//   MODE (`walk`: the whole tour with its checks; `first-paint`: time the tenants page).
// Exits non-zero with the reason on the first check that fails.

import puppeteer from 'puppeteer-core';
import { mkdirSync } from 'node:fs';

const url = process.env.BULKHEAD_URL;
const adminKey = process.env.ADMIN_KEY;
const operatorKey = process.env.OPERATOR_KEY;
const shots = process.env.SCREENSHOTS;
const mode = process.env.MODE || 'walk';
mkdirSync(shots, { recursive: true });

const problems = [];
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1360,900'],
  defaultViewport: { width: 1360, height: 900 },
});

const began = Date.now();
function step(name) {
  console.log(`${((Date.now() - began) / 1000).toFixed(1)} s: ${name}`);
}

function check(ok, message) {
  if (!ok) throw new Error(`check failed: ${message}`);
}

async function text(page, selector) {
  return page.$eval(selector, (el) => el.textContent);
}

async function waitText(page, selector, wanted, timeout = 30000) {
  await page.waitForFunction(
    (sel, w) => [...document.querySelectorAll(sel)].some((el) => el.textContent.includes(w)),
    { timeout, polling: 100 },
    selector,
    wanted,
  );
}

async function shot(page, name) {
  await new Promise((r) => setTimeout(r, 300));
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function open() {
  const page = await browser.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return page;
}

async function signIn(page, key, role) {
  const response = await page.goto(`${url}/console`, { waitUntil: 'domcontentloaded' });
  const csp = response.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'"), `the page has a strict CSP (got ${JSON.stringify(csp)})`);
  await page.waitForSelector('[data-testid=signin]');
  await page.type('[data-testid=key]', key);
  await page.click('[data-testid=signin] button[type=submit]');
  await waitText(page, '[data-testid=role]', role);
}

async function goHash(page, hash) {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
}

async function walk() {
  const tenant = 'console-acme';
  const page = await open();

  step('Signing in with a wrong key is refused in words, and keeps the sign-in form.');
  // Signing in with a wrong key is refused in words, and keeps the sign-in form.
  await page.goto(`${url}/console`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('[data-testid=signin]');
  await page.type('[data-testid=key]', 'bk_not_a_key');
  await page.click('[data-testid=signin] button[type=submit]');
  await page.waitForSelector('[data-testid=signin] [data-testid=error], [data-testid=signin] [data-testid=refused]');

  step('The admin signs in: the overview draws its charts.');
  // The admin signs in: the overview draws its charts.
  await signIn(page, adminKey, 'admin');
  await page.waitForSelector('main svg.chart');

  step('Creates a tenant from the tenants page, and lands on its page.');
  // Creates a tenant from the tenants page, and lands on its page.
  await goHash(page, '#/tenants');
  await page.waitForSelector('[data-testid=create-tenant]');
  const poolTier = await page.$$eval('[data-testid=create-tenant] select[name=tier] option', (options) => {
    const pool = options.find((o) => o.textContent.includes('(pool)'));
    return pool ? pool.value : options[0].value;
  });
  await page.type('[data-testid=create-tenant] input[name=id]', tenant);
  await page.type('[data-testid=create-tenant] input[name=name]', 'Acme from the console');
  await page.select('[data-testid=create-tenant] select[name=tier]', poolTier);
  await page.click('[data-testid=create-tenant] button[type=submit]');
  await waitText(page, '[data-testid=tenant-facts]', tenant);

  step('Some records to move, written through the API as the admin naming the tenant.');
  // Some records to move, written through the API as the admin naming the tenant.
  const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ op: 'create', record: { title: `note ${i}`, n: i } })).join('\n');
  const bulk = await fetch(`${url}/v1/collections/notes/records:bulk`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'bulkhead-tenant': tenant, 'content-type': 'application/x-ndjson' },
    body: `${lines}\n`,
  });
  check(bulk.ok, `seeding records answered ${bulk.status}: ${await bulk.text()}`);

  step('A few neighbours on every tier, with some traffic, for the lists and charts.');
  for (const [id, tier, n] of [['globex', 'standard', 800], ['initech', 'premium', 1500], ['umbrella', 'free', 300], ['hooli', 'free', 50]]) {
    const made = await fetch(`${url}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      // One name is markup: the console must show it as text and never run it.
      body: JSON.stringify({ id, name: id === 'hooli' ? '<img src=x onerror="window.__pwned=1">Hooli' : `${id[0].toUpperCase()}${id.slice(1)}`, tier }),
    });
    check(made.status === 201, `creating ${id} answered ${made.status}`);
    const body = Array.from({ length: n }, (_, i) => JSON.stringify({ op: 'create', record: { title: `${id} ${i}`, n: i } })).join('\n');
    const wrote = await fetch(`${url}/v1/collections/notes/records:bulk`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'bulkhead-tenant': id, 'content-type': 'application/x-ndjson' },
      body: `${body}\n`,
    });
    check(wrote.ok, `seeding ${id} answered ${wrote.status}`);
  }
  const sampled = await fetch(`${url}/v1/usage/storage`, { method: 'POST', headers: { authorization: `Bearer ${adminKey}` } });
  check(sampled.ok, `sampling storage answered ${sampled.status}`);

  step('The tenants page finds it by search, server side.');
  // The tenants page finds it by search, server side.
  await goHash(page, `#/tenants?q=${encodeURIComponent('CONSOLE-ac')}`);
  await page.waitForSelector('[data-testid=tenants]');
  const rows = await page.$$eval('[data-testid=tenants] tbody tr', (trs) => trs.map((tr) => tr.dataset.id));
  check(rows.length === 1 && rows[0] === tenant, `searching 'CONSOLE-ac' lists only ${tenant} (got ${rows})`);
  await goHash(page, '#/tenants?tier=premium');
  await page.waitForSelector('[data-testid=tenants]');
  const premium = await page.$$eval('[data-testid=tenants] tbody tr', (trs) => trs.map((tr) => tr.dataset.id));
  check(premium.join() === 'initech', `filtering by tier premium lists initech alone (got ${premium})`);
  await goHash(page, '#/tenants');
  await page.waitForSelector('[data-testid=tenants]');
  const all = await page.$$eval('[data-testid=tenants] tbody tr', (trs) => trs.length);
  check(all === 5, `the tenants page lists all 5 tenants (got ${all})`);
  await waitText(page, '[data-testid=tenants] td', '<img src=x');
  check((await page.$('[data-testid=tenants] img')) === null, 'a tenant name is shown as text, not markup');
  check((await page.evaluate(() => window.__pwned)) === undefined, 'no script from a tenant name ran');
  await shot(page, 'tenants');

  step("Starts a live move to a silo from the tenant's page and watches it finish on the moves page.");
  // Starts a live move to a silo from the tenant's page and watches it finish on the moves page.
  await goHash(page, `#/tenants/${tenant}`);
  await page.waitForSelector('[data-testid=move-isolation]');
  await page.select('[data-testid=move-isolation]', 'silo');
  await page.click('[data-testid=start-move]');
  await page.waitForFunction(() => location.hash.startsWith('#/moves'), { timeout: 10000 });
  await page.waitForSelector('[data-testid=moves]');
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('[data-testid=moves] tbody tr')].some((tr) => tr.textContent.includes(t) && tr.querySelector('[data-testid=move-phase]').textContent === 'done'),
    { timeout: 120000, polling: 250 },
    tenant,
  );
  await shot(page, 'moves');

  step("The tenant's page shows its new placement and the move in its history, keys and members.");
  // The tenant's page shows its new placement and the move in its history, keys and members.
  await goHash(page, `#/tenants/${tenant}`);
  await waitText(page, '[data-testid=tenant-facts]', 'silo');
  await page.waitForSelector('[data-testid=tenant-moves]');
  await page.waitForSelector('[data-testid=keys], [data-testid=keys-empty]');
  await page.waitForSelector('[data-testid=measure-storage]');
  await page.click('[data-testid=measure-storage]');
  await waitText(page, 'main p', 'Stored at the last sample');
  await page.waitForSelector('[data-testid=keys], [data-testid=keys-empty]');
  await shot(page, 'tenant');

  step("The admin reads the tenant's records (an audited read).");
  // The admin reads the tenant's records (an audited read).
  await goHash(page, `#/tenants/${tenant}/records`);
  await page.waitForSelector('[data-testid=records]');
  const recordRows = await page.$$eval('[data-testid=records] tbody tr', (trs) => trs.length);
  check(recordRows === 25, `the records page shows a page of 25 records (got ${recordRows})`);

  step('The audit log has the creation and the move, and the chain verifies.');
  // The audit log has the creation and the move, and the chain verifies.
  await goHash(page, `#/audit?tenant=${tenant}`);
  await page.waitForSelector('[data-testid=audit]');
  await page.waitForSelector('[data-testid=chain-ok]');
  const actions = await page.$$eval('[data-testid=audit] tbody tr td:nth-child(4)', (tds) => tds.map((td) => td.textContent));
  check(actions.includes('tenant.create'), `the audit lists tenant.create (got ${actions})`);
  check(actions.some((a) => a.startsWith('move.')), `the audit lists the move (got ${actions})`);
  await shot(page, 'audit');

  step('A collection change shows as a rollout on the collections page.');
  const changed = await fetch(`${url}/v1/collections/notes`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ fields: { title: { type: 'string', required: true }, n: { type: 'integer' }, tag: { type: 'string' } } }),
  });
  check(changed.ok, `changing the collection answered ${changed.status}`);
  await goHash(page, '#/collections');
  await waitText(page, '[data-testid=rollouts] td', 'notes v2');
  await shot(page, 'collections');

  step('The admin reads of tenant data raised findings; one is acknowledged from its page.');
  await goHash(page, '#/findings');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=findings] button')].some((b) => b.textContent === 'Acknowledge'), { timeout: 20000, polling: 200 });
  const unacknowledged = await page.$$eval('[data-testid=findings] button', (bs) => bs.filter((b) => b.textContent === 'Acknowledge').length);
  await page.$$eval('[data-testid=findings] button', (bs) => bs.find((b) => b.textContent === 'Acknowledge').click());
  await page.waitForFunction(
    (before) => [...document.querySelectorAll('[data-testid=findings] button')].filter((b) => b.textContent === 'Acknowledge').length === before - 1,
    { timeout: 10000, polling: 100 },
    unacknowledged,
  );
  await shot(page, 'findings');

  for (const [hash, selector, name] of [
    ['#/', 'main svg.chart rect', 'overview'],
    ['#/platform', '[data-testid=domains]', 'platform'],
    ['#/costs', '[data-testid=cost-tiers]', 'costs'],
  ]) {
    await goHash(page, hash);
    await page.waitForSelector(selector);
    await shot(page, name);
  }

  step('The key never left the tab as a cookie.');
  // The key never left the tab as a cookie.
  const cookies = await page.cookies();
  check(cookies.length === 0, `the console sets no cookie (got ${JSON.stringify(cookies)})`);

  step('Sign out: the key is forgotten.');
  // Sign out: the key is forgotten.
  await page.click('[data-testid=signout]');
  await page.waitForSelector('[data-testid=signin]');
  const kept = await page.evaluate(() => sessionStorage.length);
  check(kept === 0, 'signing out forgets the key');

  step('The operator: no record page, even by URL, and no keys or members.');
  // The operator: no record page, even by URL, and no keys or members.
  await signIn(page, operatorKey, 'operator');
  await goHash(page, `#/tenants/${tenant}`);
  await page.waitForSelector('[data-testid=tenant-facts]');
  check((await page.$('a[href$="/records"]')) === null, 'the operator is offered no records link');
  check((await page.$('[data-testid=keys]')) === null, 'the operator sees no keys');
  await goHash(page, `#/tenants/${tenant}/records`);
  await page.waitForSelector('[data-testid=refused]');
  check((await page.$('[data-testid=records]')) === null, 'the operator sees no record page');
  await shot(page, 'operator-records-refused');
  step("Nor through the API from the page, with the operator's own key.");
  // Nor through the API from the page, with the operator's own key.
  const direct = await page.evaluate(async (key, t) => {
    const r = await fetch('/v1/collections/notes/records', { headers: { authorization: `Bearer ${key}`, 'bulkhead-tenant': t } });
    return r.status;
  }, operatorKey, tenant);
  check(direct === 403, `the API refuses the operator the tenant's records (got ${direct})`);

  step('The operator is offered no deletion, but suspends and resumes the tenant.');
  await goHash(page, `#/tenants/${tenant}`);
  await page.waitForSelector('[data-testid=suspend]');
  check((await page.$('[data-testid=delete]')) === null, 'the operator is offered no deletion');
  await page.click('[data-testid=suspend]');
  await waitText(page, '[data-testid=tenant-facts]', 'suspended');
  await page.click('[data-testid=suspend]');
  await waitText(page, '[data-testid=tenant-facts]', 'active');
  await page.click('[data-testid=signout]');
  await page.waitForSelector('[data-testid=signin]');

  step('The admin deletes the tenant, confirming by its id.');
  await signIn(page, adminKey, 'admin');
  await goHash(page, `#/tenants/${tenant}`);
  await page.waitForSelector('[data-testid=delete]');
  await page.click('[data-testid=delete]');
  await page.waitForSelector('[data-testid=confirm-input]');
  await page.type('[data-testid=confirm-input]', 'not-the-id');
  await page.click('[data-testid=confirm-ok]');
  const stillThere = await fetch(`${url}/v1/tenants/${tenant}`, { headers: { authorization: `Bearer ${adminKey}` } });
  check(stillThere.status === 200, 'a wrong confirmation deletes nothing');
  await page.click('[data-testid=delete]');
  await page.waitForSelector('[data-testid=confirm-input]');
  await page.type('[data-testid=confirm-input]', tenant);
  await page.click('[data-testid=confirm-ok]');
  await page.waitForFunction(() => location.hash === '#/tenants', { timeout: 10000 });
  const gone = await fetch(`${url}/v1/tenants/${tenant}`, { headers: { authorization: `Bearer ${adminKey}` } });
  check(gone.status === 404, `the deleted tenant is gone (got ${gone.status})`);

  const csp = problems.filter((p) => /Content Security Policy|Refused to/i.test(p));
  check(csp.length === 0, `no CSP violation: ${csp.join('; ')}`);
  const errors = problems.filter((p) => !/Failed to load resource/.test(p));
  check(errors.length === 0, `no script errors: ${errors.join('; ')}`);
  console.log('walk: ok');
}

async function firstPaint() {
  const page = await open();
  await signIn(page, adminKey, 'admin');
  for (const [name, hash] of [['first_paint', '#/tenants'], ['filtered_paint', '#/tenants?q=t099&status=active']]) {
    const times = [];
    for (let i = 0; i < 5; i += 1) {
      await page.goto('about:blank');
      const started = Date.now();
      await page.goto(`${url}/console${hash}`, { waitUntil: 'domcontentloaded' });
      await page.waitForSelector('[data-testid=tenants] tbody tr');
      times.push(Date.now() - started);
    }
    times.sort((a, b) => a - b);
    console.log(`${name}_ms=${JSON.stringify(times)} median=${times[2]} (${hash})`);
  }
  await shot(page, 'tenants-10000');
}

try {
  if (mode === 'walk') await walk();
  else await firstPaint();
} catch (error) {
  console.error(error.stack || String(error));
  for (const [i, page] of (await browser.pages()).entries()) {
    await page.screenshot({ path: `${shots}/failure-${i}.png`, fullPage: true }).catch(() => {});
    console.error(`page ${i} at ${page.url()}:\n${await page.evaluate(() => document.body.innerText).catch(() => '?')}`);
  }
  if (problems.length) console.error(`browser said:\n${problems.join('\n')}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
