// A typed JSON-RPC API: each method's name, parameter schema (zod) and result type, declared
// once; the method table a server answers from, and the typed `call` of its clients.

import type { z } from "zod";
import { ErrorCode, RpcError } from "./message.js";
import type { Caller, MethodEntry, MethodTable } from "./peer.js";

/** One method: its params' schema, and (as a type only) what it answers. */
export interface MethodSpec<P extends z.ZodType = z.ZodType, R = unknown> {
  readonly params: P;
  /** Never set: carries the result type. */
  readonly result?: R;
}

export type Api = Record<string, MethodSpec>;

/** Declares a method answering `R`: `method<SnapshotRow>()(z.object({ snapshot: z.string() }))`. */
export const method =
  <R>() =>
  <P extends z.ZodType>(params: P): MethodSpec<P, R> => ({ params });

export type MethodNameOf<A extends Api> = keyof A & string;
/** What a caller passes (defaults may be left out). */
export type ParamsIn<A extends Api, M extends keyof A> = z.input<A[M]["params"]>;
/** What a handler gets, checked and with defaults filled in. */
export type ParamsOut<A extends Api, M extends keyof A> = z.output<A[M]["params"]>;
export type ResultIn<A extends Api, M extends keyof A> =
  A[M] extends MethodSpec<z.ZodType, infer R> ? R : never;

/** One handler per method of `A`, typed by its schema and result. */
export type Handlers<A extends Api, C extends Caller = Caller> = {
  [M in keyof A]: (params: ParamsOut<A, M>, caller: C) => Promise<ResultIn<A, M>> | ResultIn<A, M>;
};

/** Params may be left out when every one of them is optional. */
export type ParamsArg<A extends Api, M extends keyof A> =
  Record<never, never> extends ParamsIn<A, M>
    ? [params?: ParamsIn<A, M>]
    : [params: ParamsIn<A, M>];

/** The typed client of an API: the only way its methods are called. */
export interface Client<A extends Api> {
  call<M extends MethodNameOf<A>>(method: M, ...params: ParamsArg<A, M>): Promise<ResultIn<A, M>>;
}

/** `issue.path` as a parameter name: "snapshot", "record.writers.0", or "params". */
const where = (path: ReadonlyArray<PropertyKey>) =>
  path.length === 0 ? "params" : path.map(String).join(".");

/** Checks `params` against `schema`; a mismatch is an `invalidParams` error naming the parameter. */
export function parseParams<P extends z.ZodType>(
  method: string,
  schema: P,
  params: unknown,
): z.output<P> {
  const r = schema.safeParse(params);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new RpcError(
    `invalid params of ${method}: ${where(issue?.path ?? [])}: ${issue?.message ?? "invalid"}`,
    "EINVAL",
    ErrorCode.invalidParams,
  );
}

/** The method table a server answers `api` from: an entry per method, each checking its params. */
export function methodTable<A extends Api, C extends Caller>(
  api: A,
  handlers: Handlers<A, C>,
): MethodTable<C> {
  const table = new Map<string, MethodEntry<C>>();
  for (const name of Object.keys(api)) {
    const spec = api[name]!;
    const run = handlers[name as keyof A];
    table.set(name, {
      parse: (params) => parseParams(name, spec.params, params),
      run: run as MethodEntry<C>["run"],
    });
  }
  return table;
}

/** A typed client over any way of sending a request (a socket, or a table in this process). */
export function client<A extends Api>(
  send: (method: string, params: object) => Promise<unknown>,
): Client<A> {
  return {
    call: (method, ...params) => send(method, params[0] ?? {}) as Promise<never>,
  };
}
