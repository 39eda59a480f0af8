// 429 and 503 are retried after the server's Retry-After; without retries the typed error
// carries it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { Bulkhead, TooManyRequestsError } from "../dist/index.js";
import { startServer } from "./server.mjs";

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

test("requests over a tier's rate wait it out, once per Retry-After", async () => {
  await server.admin.collections.put("items", { fields: { title: { type: "text", required: true } } });
  await server.admin.tiers.put("slow", { isolation: "pool", limits: { requests_per_second: 1, request_burst: 1 } });
  await server.admin.tenants.create({ id: "slowco", name: "Slow", tier: "slow" });
  const { key } = await server.admin.tenants.createKey("slowco", { name: "app", role: "member" });
  const patient = new Bulkhead({ url: server.url, token: key });
  const started = Date.now();
  for (let i = 0; i < 3; i++) await patient.records("items").create({ title: `t${i}` });
  assert.ok(Date.now() - started >= 1000, "the second and third waited for the rate");
  let count = 0;
  for await (const _ of patient.records("items").list()) count += 1;
  assert.equal(count, 3, "each write once");

  const hasty = new Bulkhead({ url: server.url, token: key, maxRetries: 0 });
  await hasty.records("items").page().catch(() => {});
  await assert.rejects(hasty.records("items").page(), (e) => {
    assert.ok(e instanceof TooManyRequestsError, e);
    assert.equal(e.code, "rate_limited");
    assert.equal(e.retryAfter, 1);
    return true;
  });
});
