// The SSE parser: any events, any line ending, cut into chunks anywhere, come out the same.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SseParser } from "../dist/index.js";

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

test("round trips through random chunking and line endings", () => {
  const random = rng(42);
  const pick = (n) => Math.floor(random() * n);
  const text = (n) => Array.from({ length: pick(n) }, () => String.fromCharCode(32 + pick(95))).join("");
  for (let round = 0; round < 500; round++) {
    const ending = ["\n", "\r\n", "\r"][pick(3)];
    const events = [];
    let lastId;
    for (let i = 0; i < pick(6); i++) {
      const id = random() < 0.5 ? `${pick(1000)}-${pick(99)}` : undefined;
      if (id) lastId = id;
      const lines = Array.from({ length: 1 + pick(3) }, () => text(12));
      events.push({ event: ["created", "updated", "deleted", "ready"][pick(4)], id, data: lines.join("\n"), lastId });
    }
    let wire = `: hello${ending}`;
    for (const e of events) {
      wire += `event: ${e.event}${ending}`;
      if (e.id) wire += `id: ${e.id}${ending}`;
      for (const line of e.data.split("\n")) wire += `data: ${line}${ending}`;
      wire += `${ending}:keep-alive${ending}${ending}`;
    }
    const parser = new SseParser();
    const got = [];
    let at = 0;
    while (at < wire.length) {
      const end = Math.min(wire.length, at + 1 + pick(7));
      got.push(...parser.push(wire.slice(at, end)));
      at = end;
    }
    assert.deepEqual(
      got,
      events.map((e) => ({ event: e.event, id: e.lastId, data: e.data })),
      JSON.stringify(wire),
    );
  }
});
