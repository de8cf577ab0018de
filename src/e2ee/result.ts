/**
 * Errors of the E2EE endpoints as plain data, so they cross the Durable Object RPC boundary intact (a thrown
 * MatrixError would arrive as a generic Error). Pure code and DO code throw {@link E2eeError}; DO RPC methods
 * return {@link Outcome}; routes turn a failed outcome back into a MatrixError with {@link unwrap}.
 */
import { MatrixError, type ErrorCode } from "../http/errors";

export interface Failure {
  status: number;
  errcode: ErrorCode;
  error: string;
  /** M_WRONG_ROOM_KEYS_VERSION carries the current version. */
  current_version?: string;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; failure: Failure };

export class E2eeError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: ErrorCode,
    message: string,
    readonly extra: { current_version?: string } = {},
  ) {
    super(message);
    this.name = "E2eeError";
  }

  failure(): Failure {
    return { status: this.status, errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const invalidSignature = (msg = "Invalid signature") => new E2eeError(400, "M_INVALID_SIGNATURE", msg);
export const invalidParam = (msg: string) => new E2eeError(400, "M_INVALID_PARAM", msg);
export const badJson = (msg: string) => new E2eeError(400, "M_BAD_JSON", msg);
export const notFound = (msg: string) => new E2eeError(404, "M_NOT_FOUND", msg);

/** Runs `fn`, turning an {@link E2eeError} into a failed outcome (anything else propagates). */
export function attempt<T>(fn: () => T): Outcome<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof E2eeError) return { ok: false, failure: e.failure() };
    throw e;
  }
}

/** The value of a successful outcome, or the failure thrown as a MatrixError. */
export function unwrap<T>(o: Outcome<T>): T {
  if (o.ok) return o.value;
  const { status, errcode, error, ...extra } = o.failure;
  throw new MatrixError(status, errcode, error, extra);
}
