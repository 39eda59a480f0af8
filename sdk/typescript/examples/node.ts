// The README's tour as code: type-checked against the SDK by `npm run build`
// (tsconfig.examples.json), so the documented usage keeps compiling.
import { Bulkhead, NotFoundError, type BulkLine } from "../src/index.js";

type Order = { title: string; total?: number; owner?: string };

export async function tour(url: string, adminKey: string): Promise<void> {
  const platform = new Bulkhead({ url, token: adminKey });
  await platform.collections.put("orders", {
    fields: { title: { type: "text", required: true }, total: { type: "integer", index: true } },
  });
  await platform.tenants.create({ id: "acme", name: "Acme", tier: "free" });
  const { key } = await platform.tenants.createKey("acme", { name: "app", role: "member" });

  const acme = new Bulkhead({ url, token: key });
  const orders = acme.records<Order>("orders");
  const order = await orders.create({ title: "First", total: 30 });
  const changed = await orders.patch(order.id, { total: 35 }, { ifMatch: order.version });
  const total: number | undefined = changed.total;
  void total;
  try {
    await orders.get("missing");
  } catch (e) {
    if (e instanceof NotFoundError) console.log(e.code, e.requestId);
  }
  for await (const o of orders.list({ filter: "total > 10", sort: "-total" })) console.log(o.title, o.version);

  async function* lines(): AsyncGenerator<BulkLine> {
    yield { title: "a" };
    yield { op: "delete", id: "old-1" };
  }
  const report = await orders.bulk(lines());
  console.log(report.created, report.failed);
  await orders.aggregate({ metrics: [{ op: "count" }, { op: "sum", field: "total" }] });
  const { token } = await acme.tokens.mint({ collections: ["orders"], actions: ["read"], rule: 'owner = "u42"' });
  const browser = acme.withToken(token).records<Order>("orders");
  for await (const event of browser.watch({ filter: "total > 100" })) {
    if (event.type === "created" || event.type === "updated") console.log(event.record.title);
    if (event.type === "deleted") console.log("gone", event.id);
    if (event.type === "resync") break;
  }
}
