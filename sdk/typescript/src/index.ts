// The Bulkhead client for TypeScript and JavaScript (Node 18+, browsers, Deno, Bun): one
// `fetch`, no dependency. Errors are typed by status (see errors.ts); 429 and 503 are retried
// after the server's Retry-After (the server refuses those before applying anything).

import { BulkheadError, TransportError, UnavailableError, errorFor } from "./errors.js";
import { SseParser } from "./sse.js";

export * from "./errors.js";
export { SseParser } from "./sse.js";
export type { SseEvent } from "./sse.js";

/** The fields every record has, beside its own. */
export interface SystemFields {
  id: string;
  created_at: string;
  updated_at: string;
  version: number;
}

/** A record: its fields (typed by `T`) and the system fields. */
export type BulkheadRecord<T extends object = Record<string, unknown>> = T & SystemFields;

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface ClientOptions {
  /** The server, such as `https://bulkhead.example.com`. */
  url: string;
  /** A platform key, a tenant key, a JWT, or a tenant token (`bkt_…`, for browsers). */
  token: string;
  /** The tenant to act on, for credentials that may reach several (`Bulkhead-Tenant`). */
  tenant?: string;
  /** Times a request refused with 429 or 503 is sent again (default 4). */
  maxRetries?: number;
  /** Another `fetch` (tests, proxies); the global one by default. */
  fetch?: typeof fetch;
}

export interface CreateTenant {
  id: string;
  name: string;
  tier: string;
  labels?: Record<string, string>;
}

export interface Tenant {
  id: string;
  name: string;
  tier: string;
  status: string;
  labels: Record<string, string>;
  created_at: string;
  updated_at: string;
  placement: Record<string, unknown>;
}

export interface TenantUpdate {
  name?: string;
  tier?: string;
  status?: "active" | "suspended";
  labels?: Record<string, string>;
}

export interface FieldSpec {
  type: "string" | "text" | "integer" | "float" | "boolean" | "timestamp" | "json";
  required?: boolean;
  unique?: boolean;
  index?: boolean;
  default?: unknown;
}

export interface CollectionSpec {
  fields: Record<string, FieldSpec>;
}

export interface TierSpec {
  isolation: "pool" | "bridge" | "silo";
  domains?: string[];
  description?: string;
  monthly_price?: string;
  limits?: {
    query_time_ms?: number;
    query_rows_examined?: number;
    bulk_max_bytes?: number;
    requests_per_second?: number;
    request_burst?: number;
    max_concurrent_requests?: number;
    max_domain_connections?: number;
    max_records?: number;
    max_bytes?: number;
  };
  [setting: string]: unknown;
}

export interface ListQuery {
  /** A filter in the query language, such as `n > 5 && title starts_with "A"`. */
  filter?: string;
  /** Comma-separated fields, `-` for descending: `-created_at,title`. */
  sort?: string;
  /** Full-text search. */
  q?: string;
  /** Comma-separated fields to return (projection). */
  fields?: string;
  /** Records per page (the server's default when absent). */
  limit?: number;
  cursor?: string;
}

export interface AggregateRequest {
  filter?: string;
  group_by?: string[];
  bucket?: { field: string; interval: "minute" | "hour" | "day" | "week" | "month" };
  metrics?: { op: "count" | "sum" | "avg" | "min" | "max"; field?: string }[];
  limit?: number;
  cursor?: string;
}

export interface BulkLineResult {
  /** The line's number in the whole source (1-based). */
  line: number;
  status: number;
  id?: string;
  version?: number;
  error?: { code: string; message: string };
}

export interface BulkReport {
  created: number;
  updated: number;
  deleted: number;
  failed: number;
  /** Lines that failed (every line with `results: "all"`), numbered in the whole source. */
  results: BulkLineResult[];
}

/** One line of a bulk ingest: a record to create, or an operation. */
export type BulkLine =
  | Record<string, unknown>
  | { op: "create"; id?: string; record: Record<string, unknown> }
  | { op: "upsert"; id: string; record: Record<string, unknown> }
  | { op: "delete"; id: string };

export interface MintToken {
  /** Collections the token may touch (all the parent may, when absent). */
  collections?: string[];
  actions: ("read" | "create" | "update" | "delete" | "aggregate" | "export")[];
  /** A record rule ANDed with the parent's, such as `owner = "u42"`. */
  rule?: string;
  /** Seconds (default 600, at most 86400). */
  expires_in?: number;
}

export interface MintedToken {
  token: string;
  tenant: string;
  expires_at: string;
}

/** An event of a change feed, as the caller may see it. */
export type FeedEvent<T extends object = Record<string, unknown>> =
  | { type: "ready"; position: string }
  | { type: "created" | "updated"; position: string; record: BulkheadRecord<T> }
  | { type: "deleted"; position: string; id: string }
  /** Events were lost or cannot be described: reload what you hold, then go on. */
  | { type: "resync"; position: string; reason: string };

export interface WatchOptions {
  filter?: string;
  /** Resume after this position (an event's `position`). */
  after?: string;
  /** Stops the feed. Breaking out of `for await` stops it too. */
  signal?: AbortSignal;
  /** Reconnect (resuming) when the connection drops or the server restarts (default true). */
  reconnect?: boolean;
}

type Query = Record<string, string | number | undefined>;

interface Call {
  method: string;
  path: string[];
  query?: Query;
  body?: unknown;
  raw?: string;
  contentType?: string;
  ifMatch?: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });

export class Bulkhead {
  readonly url: string;
  private readonly token: string;
  private readonly tenant: string | undefined;
  private readonly maxRetries: number;
  private readonly fetch: typeof fetch;

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.token = options.token;
    this.tenant = options.tenant;
    this.maxRetries = options.maxRetries ?? 4;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** The same client acting on `tenant` (for platform admins and users of several tenants). */
  forTenant(tenant: string): Bulkhead {
    return new Bulkhead({
      url: this.url,
      token: this.token,
      tenant,
      maxRetries: this.maxRetries,
      fetch: this.fetch,
    });
  }

  /** The same client with another credential (such as a tenant token). */
  withToken(token: string): Bulkhead {
    return new Bulkhead({
      url: this.url,
      token,
      tenant: this.tenant,
      maxRetries: this.maxRetries,
      fetch: this.fetch,
    });
  }

  private href(path: string[], query?: Query): string {
    const url = new URL(`${this.url}/${path.map(encodeURIComponent).join("/")}`);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    // `records:bulk` and friends: the colon is part of the route, not an escape.
    return url.toString().replace(/%3A/g, ":");
  }

  /** Sends a request, retrying 429 and 503; the answer when it is 2xx, else the error. */
  private async send(call: Call): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json", ...call.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (this.tenant) headers["bulkhead-tenant"] = this.tenant;
    let body: string | undefined = call.raw;
    if (call.body !== undefined) {
      body = JSON.stringify(call.body);
      headers["content-type"] = "application/json";
    } else if (call.raw !== undefined) {
      headers["content-type"] = call.contentType ?? "application/json";
    }
    if (call.ifMatch !== undefined) headers["if-match"] = `"${call.ifMatch}"`;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetch(this.href(call.path, call.query), {
          method: call.method,
          headers,
          body,
          signal: call.signal,
        });
      } catch (e) {
        if (call.signal?.aborted) throw e;
        throw new TransportError(0, "transport", `no answer from ${this.url}: ${String(e)}`);
      }
      if (response.ok) return response;
      const retryAfter = Number(response.headers.get("retry-after") ?? "");
      const wait = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined;
      const error = errorFor(response.status, await response.json().catch(() => undefined), wait);
      if ((response.status === 429 || response.status === 503) && attempt < this.maxRetries) {
        const ms = Math.min(30_000, (wait ?? 1) * 1000 * 2 ** Math.min(attempt, 4));
        await sleep(ms, call.signal);
        continue;
      }
      throw error;
    }
  }

  private async json<R>(call: Call): Promise<R> {
    const response = await this.send(call);
    if (response.status === 204) return undefined as R;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as R;
  }

  /** Every item of a paged listing, page after page. */
  private async *pages<R>(path: string[], query: Query): AsyncGenerator<R> {
    let cursor: string | undefined;
    do {
      const page: Page<R> = await this.json({
        method: "GET",
        path,
        query: { ...query, cursor },
      });
      yield* page.items;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  // Platform: tenants, collections, tiers.

  readonly tenants = {
    create: (tenant: CreateTenant) =>
      this.json<Tenant>({ method: "POST", path: ["v1", "tenants"], body: tenant }),
    get: (id: string) => this.json<Tenant>({ method: "GET", path: ["v1", "tenants", id] }),
    list: (query: { tier?: string; status?: string; limit?: number } = {}) =>
      this.pages<Tenant>(["v1", "tenants"], query),
    update: (id: string, update: TenantUpdate) =>
      this.json<Tenant>({ method: "PATCH", path: ["v1", "tenants", id], body: update }),
    delete: (id: string) =>
      this.json<void>({ method: "DELETE", path: ["v1", "tenants", id] }),
    createKey: (id: string, key: { name: string; role: "owner" | "admin" | "member" | "viewer"; expires_in?: number }) =>
      this.json<{ key: string; id: string; name: string; role: string }>({
        method: "POST",
        path: ["v1", "tenants", id, "keys"],
        body: key,
      }),
    revokeKey: (id: string, keyId: string) =>
      this.json<void>({ method: "DELETE", path: ["v1", "tenants", id, "keys", keyId] }),
  };

  readonly collections = {
    /** Creates or changes a collection; the change rolls out in the background (202). */
    put: (name: string, spec: CollectionSpec) =>
      this.json<Record<string, unknown>>({ method: "PUT", path: ["v1", "collections", name], body: spec }),
    get: (name: string) =>
      this.json<Record<string, unknown>>({ method: "GET", path: ["v1", "collections", name] }),
    list: () =>
      this.json<Page<Record<string, unknown>>>({ method: "GET", path: ["v1", "collections"] }),
  };

  readonly tiers = {
    /** Creates or replaces a tier (isolation, limits, ceiling, …). */
    put: (name: string, spec: TierSpec) =>
      this.json<Record<string, unknown>>({ method: "PUT", path: ["v1", "tiers", name], body: spec }),
    list: () =>
      this.json<Page<Record<string, unknown>>>({ method: "GET", path: ["v1", "tiers"] }),
  };

  /** Tenant tokens: short-lived, narrowed credentials to hand to a browser. */
  readonly tokens = {
    mint: (request: MintToken) =>
      this.json<MintedToken>({ method: "POST", path: ["v1", "tokens"], body: request }),
  };

  /** The records of one collection, for this client's tenant. */
  records<T extends object = Record<string, unknown>>(collection: string): Records<T> {
    return new Records<T>(this, collection);
  }

  /** @internal */
  _json<R>(call: Call): Promise<R> {
    return this.json<R>(call);
  }

  /** @internal */
  _send(call: Call): Promise<Response> {
    return this.send(call);
  }

  /** @internal */
  _pages<R>(path: string[], query: Query): AsyncGenerator<R> {
    return this.pages<R>(path, query);
  }
}

export class Records<T extends object> {
  constructor(
    private readonly client: Bulkhead,
    readonly collection: string,
  ) {}

  private path(...rest: string[]): string[] {
    return ["v1", "collections", this.collection, ...rest];
  }

  create(record: Partial<SystemFields> & T): Promise<BulkheadRecord<T>> {
    return this.client._json({ method: "POST", path: this.path("records"), body: record });
  }

  get(id: string): Promise<BulkheadRecord<T>> {
    return this.client._json({ method: "GET", path: this.path("records", id) });
  }

  /** Replaces every field; with `ifMatch`, only while the record is at that version. */
  replace(id: string, record: T, options: { ifMatch?: number } = {}): Promise<BulkheadRecord<T>> {
    return this.client._json({
      method: "PUT",
      path: this.path("records", id),
      body: record,
      ifMatch: options.ifMatch,
    });
  }

  /** Changes some fields (`null` removes an optional one). */
  patch(id: string, patch: Partial<T>, options: { ifMatch?: number } = {}): Promise<BulkheadRecord<T>> {
    return this.client._json({
      method: "PATCH",
      path: this.path("records", id),
      body: patch,
      ifMatch: options.ifMatch,
    });
  }

  delete(id: string, options: { ifMatch?: number } = {}): Promise<void> {
    return this.client._json({
      method: "DELETE",
      path: this.path("records", id),
      ifMatch: options.ifMatch,
    });
  }

  /** One page of a listing. */
  page(query: ListQuery = {}): Promise<Page<BulkheadRecord<T>>> {
    return this.client._json({ method: "GET", path: this.path("records"), query: { ...query } });
  }

  /** Every matching record, page after page (`for await (const r of records.list(…))`). */
  list(query: Omit<ListQuery, "cursor"> = {}): AsyncGenerator<BulkheadRecord<T>> {
    return this.client._pages(this.path("records"), { ...query });
  }

  /** Groups and metrics (count, sum, avg, min, max), with time buckets. */
  aggregate(request: AggregateRequest): Promise<Record<string, unknown>> {
    return this.client._json({ method: "POST", path: this.path("aggregate"), body: request });
  }

  /**
   * Ingests lines from any (async) iterable — a generator, a stream of parsed lines — in
   * requests of `batch` lines, so memory stays flat. Failed lines are reported with their
   * number in the whole source; the others are kept.
   */
  async bulk(
    source: Iterable<BulkLine> | AsyncIterable<BulkLine>,
    options: { batch?: number; results?: "errors" | "all" } = {},
  ): Promise<BulkReport> {
    const batch = Math.max(1, options.batch ?? 1000);
    const results = options.results ?? "errors";
    const total: BulkReport = { created: 0, updated: 0, deleted: 0, failed: 0, results: [] };
    let lines: string[] = [];
    let offset = 0;
    const flush = async () => {
      if (lines.length === 0) return;
      const report: BulkReport = await this.client._json({
        method: "POST",
        path: this.path("records:bulk"),
        query: { results },
        raw: lines.join("\n") + "\n",
        contentType: "application/x-ndjson",
      });
      total.created += report.created;
      total.updated += report.updated;
      total.deleted += report.deleted;
      total.failed += report.failed;
      for (const r of report.results) total.results.push({ ...r, line: r.line + offset });
      offset += lines.length;
      lines = [];
    };
    for await (const line of source as AsyncIterable<BulkLine>) {
      lines.push(JSON.stringify(line));
      if (lines.length >= batch) await flush();
    }
    await flush();
    return total;
  }

  /** Every record the credential may export, streamed in id order. */
  async *export(options: { filter?: string; signal?: AbortSignal } = {}): AsyncGenerator<BulkheadRecord<T>> {
    const response = await this.client._send({
      method: "GET",
      path: this.path("records:export"),
      query: { filter: options.filter },
      signal: options.signal,
    });
    let buffer = "";
    for await (const text of textChunks(response)) {
      buffer += text;
      let end: number;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (!line) continue;
        const value = JSON.parse(line);
        if (value && typeof value === "object" && "error" in value && !("id" in value)) {
          // The line carries the status the refusal would have had (the response's own
          // status went out with the first page).
          const status = typeof value.error?.status === "number" ? value.error.status : 500;
          throw errorFor(status, value, undefined);
        }
        yield value;
      }
    }
  }

  /**
   * The collection's changes as they happen (server-sent events), each record as this
   * credential may see it. Reconnects on its own, resuming after the last event; a
   * `resync` event means: reload, then apply what follows. Access that ends (a revoked key,
   * a deleted tenant) ends the iteration with its error.
   */
  async *watch(options: WatchOptions = {}): AsyncGenerator<FeedEvent<T>> {
    let after = options.after;
    const reconnect = options.reconnect ?? true;
    for (;;) {
      const controller = new AbortController();
      const stop = () => controller.abort(options.signal?.reason);
      options.signal?.addEventListener("abort", stop);
      try {
        let response: Response;
        try {
          response = await this.client._send({
            method: "GET",
            path: this.path("records:watch"),
            query: { filter: options.filter },
            headers: after ? { accept: "text/event-stream", "last-event-id": after } : { accept: "text/event-stream" },
            signal: controller.signal,
          });
        } catch (e) {
          if (reconnect && e instanceof TransportError && !options.signal?.aborted) {
            await sleep(1000, options.signal);
            continue;
          }
          throw e;
        }
        const parser = new SseParser();
        try {
          for await (const text of textChunks(response)) {
            for (const raw of parser.push(text)) {
              if (raw.id) after = raw.id;
              const data = JSON.parse(raw.data);
              const position = raw.id ?? after ?? "";
              switch (raw.event) {
                case "ready":
                  yield { type: "ready", position };
                  break;
                case "created":
                case "updated":
                  yield { type: raw.event, position, record: data };
                  break;
                case "deleted":
                  yield { type: "deleted", position, id: data.id };
                  break;
                case "resync":
                  yield { type: "resync", position, reason: data.reason };
                  break;
                case "closed": {
                  const code: string = data?.error?.code ?? "closed";
                  if (code === "server_closing" && reconnect) break;
                  throw closedError(data);
                }
              }
            }
          }
        } catch (e) {
          if (e instanceof BulkheadError || options.signal?.aborted) throw e;
          // The connection dropped: resume after the last event.
        }
        if (!reconnect || options.signal?.aborted) return;
        await sleep(1000, options.signal);
      } finally {
        options.signal?.removeEventListener("abort", stop);
        controller.abort();
      }
    }
  }
}

/** The error a `closed` event carries, typed by its code. */
function closedError(data: { error?: { code?: string; status?: number } }): BulkheadError {
  const code = data?.error?.code ?? "closed";
  // The server says the status (older servers did not: then it is told by the code).
  const status =
    typeof data?.error?.status === "number"
      ? data.error.status
      : code === "invalid_credentials" || code === "unauthenticated"
      ? 401
      : code.endsWith("_not_found")
        ? 404
        : code === "server_closing"
          ? 503
          : code === "forbidden" || code.startsWith("action_")
            ? 403
            : 400;
  const error = errorFor(status, data, undefined);
  return status === 503 ? new UnavailableError(503, code, error.message, error.requestId) : error;
}

/** A response body as text, chunk by chunk. */
async function* textChunks(response: Response): AsyncGenerator<string> {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield decoder.decode(value, { stream: true });
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  } finally {
    reader.releaseLock();
  }
}
