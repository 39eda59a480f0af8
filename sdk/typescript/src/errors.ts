// Every error the server answers has one body: {"error": {"code", "message", "request_id"}}.
// The SDK raises it as a BulkheadError subclass chosen by status, carrying the code (the
// full list is in the repository's docs/errors.md).

export class BulkheadError extends Error {
  /** HTTP status (0: the request never got an answer). */
  readonly status: number;
  /** Stable machine-readable code, such as `record_not_found` or `rate_limited`. */
  readonly code: string;
  /** The server's request id, to find the request in its log and audit. */
  readonly requestId: string | undefined;
  /** Seconds the server asked to wait before retrying (`Retry-After`), if it said. */
  readonly retryAfter: number | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    requestId?: string,
    retryAfter?: number,
  ) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

/** 400: the request is malformed; the message names the problem. */
export class BadRequestError extends BulkheadError {}
/** 401: no credential, or one that is not valid (revoked, expired, unknown). */
export class UnauthenticatedError extends BulkheadError {}
/** 403: the credential may not do this. */
export class ForbiddenError extends BulkheadError {}
/** 404: no such thing — or one the credential may not see (the same answer, on purpose). */
export class NotFoundError extends BulkheadError {}
/** 409: a conflict (an id or unique value taken, a version changed). */
export class ConflictError extends BulkheadError {}
/** 412: `If-Match` names a version the record no longer has. */
export class PreconditionFailedError extends BulkheadError {}
/** 413: the body is over a limit. */
export class PayloadTooLargeError extends BulkheadError {}
/** 422: understood but refused (a query over its budget, an unreachable domain). */
export class UnprocessableError extends BulkheadError {}
/** 429: over a rate or concurrency limit; `retryAfter` says when to try again. */
export class TooManyRequestsError extends BulkheadError {}
/** 503: unavailable for now (busy, a tenant switching placement); retry. */
export class UnavailableError extends BulkheadError {}
/** 507: a storage quota is reached; reads and deletes still work. */
export class QuotaExceededError extends BulkheadError {}
/** 5xx other than 503 and 507. */
export class ServerError extends BulkheadError {}
/** No answer: connection refused or reset, DNS, TLS. */
export class TransportError extends BulkheadError {}

const BY_STATUS: Record<number, typeof BulkheadError> = {
  400: BadRequestError,
  401: UnauthenticatedError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  412: PreconditionFailedError,
  413: PayloadTooLargeError,
  422: UnprocessableError,
  429: TooManyRequestsError,
  503: UnavailableError,
  507: QuotaExceededError,
};

/** The error for an answer with `status` and the server's error body (or none). */
export function errorFor(
  status: number,
  body: unknown,
  retryAfter: number | undefined,
): BulkheadError {
  const detail =
    typeof body === "object" && body !== null && "error" in body
      ? (body as { error: { code?: unknown; message?: unknown; request_id?: unknown } }).error
      : undefined;
  const code = typeof detail?.code === "string" ? detail.code : `http_${status}`;
  const message =
    typeof detail?.message === "string" ? detail.message : `the server answered ${status}`;
  const requestId = typeof detail?.request_id === "string" ? detail.request_id : undefined;
  const Class = BY_STATUS[status] ?? (status >= 500 ? ServerError : BulkheadError);
  return new Class(status, code, message, requestId, retryAfter);
}
