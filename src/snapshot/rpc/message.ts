// JSON-RPC 2.0 messages: what a line on the control socket may be, and the errors it answers.
// It reads any text without throwing; it sends nothing and knows no method.

/** The error codes of JSON-RPC 2.0, and the one shadowfs uses for a method that failed. */
export const ErrorCode = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  /** A method ran and failed; `data.code` holds its POSIX code (EBUSY, ENOENT, …). */
  failed: -32000,
} as const;

export type Id = string | number | null;

export interface ErrorObject {
  code: number;
  message: string;
  data?: { code?: string };
}

/**
 * An error that travels over the socket: its JSON-RPC code, and the POSIX code of what went
 * wrong (`EINVAL` for a bad parameter), so that the caller can show it as its own.
 */
export class RpcError extends Error {
  constructor(
    message: string,
    /** The POSIX code ("EIO" when the other side did not say). */
    readonly code: string,
    readonly rpcCode: number = ErrorCode.failed,
  ) {
    super(message);
    this.name = "RpcError";
  }

  toObject(): ErrorObject {
    return { code: this.rpcCode, message: this.message, data: { code: this.code } };
  }
}

/** What one line turned out to be. */
export type Incoming =
  /** A call: `id` undefined makes it a notification, which gets no answer. */
  | { kind: "request"; id: Id | undefined; method: string; params: unknown }
  | { kind: "response"; id: Id; result: unknown; error: ErrorObject | undefined }
  /** Not a usable message; `id` is the request's when it had a usable one (else null). */
  | { kind: "invalid"; id: Id; error: ErrorObject };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const isId = (v: unknown): v is Id =>
  typeof v === "string" || v === null || (typeof v === "number" && Number.isFinite(v));

const invalid = (id: Id, code: number, message: string): Incoming => ({
  kind: "invalid",
  id,
  error: { code, message },
});

const errorObject = (v: unknown): ErrorObject => {
  if (!isObject(v)) return { code: ErrorCode.internalError, message: "malformed error" };
  const data = isObject(v.data) && typeof v.data.code === "string" ? { code: v.data.code } : {};
  return {
    code: typeof v.code === "number" ? v.code : ErrorCode.internalError,
    message: typeof v.message === "string" ? v.message : "error",
    data,
  };
};

/** Classifies one line. Own properties only are read; nothing in it is trusted. */
export function parseMessage(line: string): Incoming {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    return invalid(null, ErrorCode.parseError, "parse error: not JSON");
  }
  if (Array.isArray(msg))
    return invalid(null, ErrorCode.invalidRequest, "invalid request: batches are not supported");
  if (!isObject(msg))
    return invalid(null, ErrorCode.invalidRequest, "invalid request: not an object");
  const has = (key: string) => Object.hasOwn(msg, key);
  const id = has("id") ? msg.id : undefined;
  if (id !== undefined && !isId(id))
    return invalid(
      null,
      ErrorCode.invalidRequest,
      "invalid request: id must be a string, a number or null",
    );
  if (msg.jsonrpc !== "2.0")
    return invalid(id ?? null, ErrorCode.invalidRequest, 'invalid request: jsonrpc must be "2.0"');
  if (!has("method") && (has("result") || has("error")) && id !== undefined) {
    if (has("result") === has("error"))
      return invalid(id, ErrorCode.invalidRequest, "invalid response: result and error both");
    return {
      kind: "response",
      id,
      result: has("result") ? msg.result : undefined,
      error: has("error") ? errorObject(msg.error) : undefined,
    };
  }
  if (!has("method"))
    return invalid(id ?? null, ErrorCode.invalidRequest, "invalid request: no method");
  if (typeof msg.method !== "string")
    return invalid(
      id ?? null,
      ErrorCode.invalidRequest,
      "invalid request: method must be a string",
    );
  const params = has("params") ? msg.params : undefined;
  if (params !== undefined && typeof params !== "object")
    return invalid(
      id ?? null,
      ErrorCode.invalidRequest,
      "invalid request: params must be an object",
    );
  if (params === null)
    return invalid(
      id ?? null,
      ErrorCode.invalidRequest,
      "invalid request: params must be an object",
    );
  return { kind: "request", id, method: msg.method, params };
}

/** The error object of anything a method threw (a POSIX code when it carries one). */
export function errorOf(e: unknown): ErrorObject {
  if (e instanceof RpcError) return e.toObject();
  const own = e instanceof Error ? (e as { code?: unknown }).code : undefined;
  const code = typeof own === "string" ? own : "EIO";
  const message = e instanceof Error ? e.message : String(e);
  return { code: ErrorCode.failed, message, data: { code } };
}

/** The error a caller sees for an error answer. */
export const fromErrorObject = (e: ErrorObject): RpcError =>
  new RpcError(e.message, e.data?.code ?? "EIO", e.code);
