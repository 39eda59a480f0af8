// Starts the real `bulkhead` binary on a free port with a throwaway data directory.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { Bulkhead } from "../dist/index.js";

export const ADMIN_KEY = "sdk-test-admin-key-0123456789abcdef";

export function binary() {
  const bin =
    process.env.BULKHEAD_BIN ??
    fileURLToPath(new URL("../../../target/debug/bulkhead", import.meta.url));
  if (!existsSync(bin)) {
    throw new Error(`no bulkhead binary at ${bin}: run cargo build -p bulkhead, or set BULKHEAD_BIN`);
  }
  return bin;
}

export async function startServer(env = {}) {
  const dir = await mkdtemp(join(tmpdir(), "bulkhead-sdk-"));
  const child = spawn(binary(), ["serve", "--listen", "127.0.0.1:0", "--data-dir", join(dir, "data")], {
    env: { ...process.env, BULKHEAD_ADMIN_KEY: ADMIN_KEY, BULKHEAD_LOG: "warn", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${log}`)), 20_000);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = /listening on (http\S+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code}):\n${log}`)));
  });
  const admin = new Bulkhead({ url, token: ADMIN_KEY });
  return {
    url,
    admin,
    log: () => log,
    async stop() {
      child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A collection and a tenant with a member key; the tenant's client. */
export async function tenantWithItems(server, id, tier = "free") {
  await server.admin.collections.put("items", {
    fields: {
      title: { type: "text", required: true },
      n: { type: "integer", index: true },
      owner: { type: "string", index: true },
    },
  });
  await server.admin.tenants.create({ id, name: `${id} inc`, tier });
  const { key } = await server.admin.tenants.createKey(id, { name: "app", role: "member" });
  return new Bulkhead({ url: server.url, token: key });
}
