// Tenants, collections and records through the SDK against the real binary: typed errors,
// isolation, lists over cursors, bulk ingest from a generator, aggregations, exports and
// tenant tokens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import {
  Bulkhead,
  BadRequestError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  PreconditionFailedError,
  UnauthenticatedError,
} from "../dist/index.js";
import { startServer, tenantWithItems } from "./server.mjs";

let server;
let acme;
let globex;

before(async () => {
  server = await startServer();
  acme = await tenantWithItems(server, "acme", "free");
  globex = await tenantWithItems(server, "globex", "premium");
});

after(async () => {
  await server?.stop();
});

test("records: create, read, change and delete, with typed errors", async () => {
  const items = acme.records("items");
  const created = await items.create({ id: "order-1", title: "First", n: 7 });
  assert.equal(created.version, 1);
  assert.equal((await items.get("order-1")).title, "First");
  const patched = await items.patch("order-1", { n: 8 }, { ifMatch: 1 });
  assert.equal(patched.n, 8);
  assert.equal(patched.version, 2);
  await assert.rejects(items.patch("order-1", { n: 9 }, { ifMatch: 1 }), (e) => {
    assert.ok(e instanceof PreconditionFailedError, e);
    assert.equal(e.status, 412);
    assert.equal(e.code, "version_mismatch");
    assert.ok(e.requestId);
    return true;
  });
  await assert.rejects(items.create({ id: "order-1", title: "again" }), ConflictError);
  await assert.rejects(items.create({ title: 5 }), BadRequestError);
  const replaced = await items.replace("order-1", { title: "Replaced" });
  assert.equal(replaced.n, undefined);
  await items.delete("order-1");
  await assert.rejects(items.get("order-1"), (e) => e instanceof NotFoundError && e.code === "record_not_found");
});

test("a neighbour's record is missing, whatever the model", async () => {
  await acme.records("items").create({ id: "secret", title: "acme only" });
  await assert.rejects(globex.records("items").get("secret"), NotFoundError);
  const seen = [];
  for await (const r of globex.records("items").list()) seen.push(r.id);
  assert.ok(!seen.includes("secret"));
  const stranger = new Bulkhead({ url: server.url, token: "bk_nope_nope" });
  await assert.rejects(stranger.records("items").get("secret"), UnauthenticatedError);
});

test("lists iterate over every page; bulk ingests from a generator", async () => {
  const items = globex.records("items");
  async function* lines() {
    for (let i = 1; i <= 2500; i++) {
      yield i === 1234 ? { title: "bad", n: "many" } : { id: `b${String(i).padStart(5, "0")}`, title: `line ${i}`, n: i };
    }
  }
  const report = await items.bulk(lines(), { batch: 1000 });
  assert.equal(report.created, 2499);
  assert.equal(report.failed, 1);
  assert.equal(report.results[0].line, 1234, "the line's number in the whole source");
  const ids = new Set();
  for await (const r of items.list({ filter: "n > 1000", limit: 100, sort: "n" })) ids.add(r.id);
  assert.equal(ids.size, 1499);
  const page = await items.page({ limit: 10 });
  assert.equal(page.items.length, 10);
  assert.ok(page.next_cursor);
  await assert.rejects(items.page({ filter: "n >" }), (e) => e instanceof BadRequestError && e.code === "invalid_filter");
  let exported = 0;
  for await (const r of items.export({ filter: "n <= 100" })) {
    assert.ok(r.n <= 100);
    exported += 1;
  }
  assert.equal(exported, 100);
  const summary = await items.aggregate({ filter: "n <= 10", metrics: [{ op: "count" }, { op: "sum", field: "n" }] });
  assert.match(JSON.stringify(summary), /55/, JSON.stringify(summary));
});

test("tenant tokens for browsers: narrowed to what they were minted for", async () => {
  const items = acme.records("items");
  await items.create({ id: "mine", title: "mine", owner: "u1" });
  await items.create({ id: "theirs", title: "theirs", owner: "u2" });
  const minted = await acme.tokens.mint({ collections: ["items"], actions: ["read"], rule: 'owner = "u1"', expires_in: 300 });
  assert.ok(minted.token.startsWith("bkt_"));
  assert.equal(minted.tenant, "acme");
  const browser = new Bulkhead({ url: server.url, token: minted.token });
  const seen = [];
  for await (const r of browser.records("items").list()) seen.push(r.id);
  assert.deepEqual(seen, ["mine"]);
  await assert.rejects(browser.records("items").get("theirs"), NotFoundError);
  await assert.rejects(browser.records("items").create({ title: "no" }), ForbiddenError);
});

test("platform: tenants listed across pages, updated and deleted", async () => {
  for (let i = 0; i < 5; i++) await server.admin.tenants.create({ id: `t${i}`, name: `t${i}`, tier: "free" });
  const ids = [];
  for await (const t of server.admin.tenants.list({ limit: 2 })) ids.push(t.id);
  for (let i = 0; i < 5; i++) assert.ok(ids.includes(`t${i}`), ids.join(","));
  const renamed = await server.admin.tenants.update("t0", { name: "renamed" });
  assert.equal(renamed.name, "renamed");
  await server.admin.tenants.delete("t0");
  await assert.rejects(server.admin.tenants.get("t0"), NotFoundError);
});
