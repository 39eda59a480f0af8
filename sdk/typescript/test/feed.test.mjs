// The change feed through the SDK: a browser's tenant token sees only what its rule lets it
// see, a record changed out of it arrives as deleted, and a feed resumes after a position.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { Bulkhead, UnauthenticatedError } from "../dist/index.js";
import { startServer, tenantWithItems } from "./server.mjs";

let server;
let acme;

before(async () => {
  server = await startServer();
  acme = await tenantWithItems(server, "acme", "standard");
});

after(async () => {
  await server?.stop();
});

/** Reads events until one names record `until`; returns [type, id] pairs (ready skipped). */
async function until(feed, id) {
  const seen = [];
  for (;;) {
    let timer;
    const { value, done } = await Promise.race([
      feed.next(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no event for ${id}: ${JSON.stringify(seen)}`)), 20_000);
      }),
    ]).finally(() => clearTimeout(timer));
    if (done) throw new Error(`the feed ended: ${JSON.stringify(seen)}`);
    if (value.type === "ready") continue;
    const name = value.type === "deleted" ? value.id : value.record?.id;
    seen.push([value.type, name]);
    if (name === id) return seen;
  }
}

test("a tenant token's feed keeps to its rule", async () => {
  const { token } = await acme.tokens.mint({ collections: ["items"], actions: ["read"], rule: 'owner = "u1"' });
  const browser = new Bulkhead({ url: server.url, token });
  const controller = new AbortController();
  const feed = browser.records("items").watch({ signal: controller.signal });
  const first = await feed.next();
  assert.equal(first.value.type, "ready");
  const items = acme.records("items");
  await items.create({ id: "a", title: "a", owner: "u1" });
  await items.create({ id: "b", title: "b", owner: "u2" });
  await items.patch("a", { n: 1 });
  await items.patch("a", { owner: "u2" });
  await items.delete("b");
  await items.create({ id: "end", title: "end", owner: "u1" });
  assert.deepEqual(await until(feed, "end"), [
    ["created", "a"],
    ["updated", "a"],
    ["deleted", "a"],
    ["created", "end"],
  ]);
  controller.abort();
  await assert.rejects(feed.next());
});

test("a feed resumes after a position; access that ends ends it", async () => {
  const items = acme.records("items");
  const feed = items.watch();
  assert.equal((await feed.next()).value.type, "ready");
  await items.create({ id: "r1", title: "one" });
  const one = (await feed.next()).value;
  assert.equal(one.type, "created");
  await feed.return(undefined);
  await items.create({ id: "r2", title: "two" });
  await items.delete("r1");
  const resumed = items.watch({ after: one.position });
  assert.deepEqual(await until(resumed, "r1"), [
    ["created", "r2"],
    ["deleted", "r1"],
  ]);
  await resumed.return(undefined);

  // A key revoked while its feed is open: the iteration ends with the typed error.
  const { key, id } = await server.admin.tenants.createKey("acme", { name: "short", role: "member" });
  const doomed = new Bulkhead({ url: server.url, token: key }).records("items").watch();
  assert.equal((await doomed.next()).value.type, "ready");
  await server.admin.tenants.revokeKey("acme", id);
  await assert.rejects(doomed.next(), (e) => e instanceof UnauthenticatedError && e.code === "invalid_credentials");
});
