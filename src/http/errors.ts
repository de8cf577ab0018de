/**
 * Matrix errors: `{"errcode": "M_…", "error": "…"}` with the right HTTP status.
 * https://spec.matrix.org/v1.19/client-server-api/#standard-error-response
 */

export type ErrorCode =
  | "M_FORBIDDEN"
  | "M_UNKNOWN_TOKEN"
  | "M_MISSING_TOKEN"
  | "M_USER_LOCKED"
  | "M_USER_SUSPENDED"
  | "M_BAD_JSON"
  | "M_NOT_JSON"
  | "M_NOT_FOUND"
  | "M_LIMIT_EXCEEDED"
  | "M_UNRECOGNIZED"
  | "M_UNKNOWN"
  | "M_UNAUTHORIZED"
  | "M_USER_DEACTIVATED"
  | "M_USER_IN_USE"
  | "M_INVALID_USERNAME"
  | "M_ROOM_IN_USE"
  | "M_INVALID_ROOM_STATE"
  | "M_THREEPID_IN_USE"
  | "M_THREEPID_NOT_FOUND"
  | "M_SERVER_NOT_TRUSTED"
  | "M_UNSUPPORTED_ROOM_VERSION"
  | "M_INCOMPATIBLE_ROOM_VERSION"
  | "M_BAD_STATE"
  | "M_GUEST_ACCESS_FORBIDDEN"
  | "M_CAPTCHA_NEEDED"
  | "M_MISSING_PARAM"
  | "M_INVALID_PARAM"
  | "M_TOO_LARGE"
  | "M_EXCLUSIVE"
  | "M_RESOURCE_LIMIT_EXCEEDED"
  | "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
  | "M_WEAK_PASSWORD"
  | "M_UNABLE_TO_AUTHORISE_JOIN"
  | "M_UNABLE_TO_GRANT_JOIN"
  | "M_UNKNOWN_POS"
  | "M_NOT_YET_UPLOADED"
  | "M_CANNOT_OVERWRITE_MEDIA"
  | "M_TIMEOUT"
  // End-to-end encryption (keys, cross-signing, key backup)
  | "M_INVALID_SIGNATURE"
  | "M_WRONG_ROOM_KEYS_VERSION";

/** Body of a Matrix error response. Extra fields (`retry_after_ms`, UIA flows, …) ride along. */
export interface MatrixErrorBody {
  errcode: ErrorCode;
  error: string;
  [extra: string]: unknown;
}

export class MatrixError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: ErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "MatrixError";
  }

  body(): MatrixErrorBody {
    return { ...this.extra, errcode: this.errcode, error: this.message };
  }

  toResponse(headers?: HeadersInit): Response {
    const h = new Headers(headers);
    h.set("content-type", "application/json");
    return new Response(JSON.stringify(this.body()), { status: this.status, headers: h });
  }
}

export const forbidden = (msg: string) => new MatrixError(403, "M_FORBIDDEN", msg);
export const notFound = (msg: string) => new MatrixError(404, "M_NOT_FOUND", msg);
export const unrecognized = (msg = "Unrecognized request") => new MatrixError(404, "M_UNRECOGNIZED", msg);
export const methodNotAllowed = () => new MatrixError(405, "M_UNRECOGNIZED", "Method not allowed for this endpoint");
export const badJson = (msg: string) => new MatrixError(400, "M_BAD_JSON", msg);
export const notJson = (msg = "Content not JSON.") => new MatrixError(400, "M_NOT_JSON", msg);
export const missingParam = (msg: string) => new MatrixError(400, "M_MISSING_PARAM", msg);
export const invalidParam = (msg: string) => new MatrixError(400, "M_INVALID_PARAM", msg);
export const tooLarge = (msg: string) => new MatrixError(413, "M_TOO_LARGE", msg);
export const unauthorized = (msg: string) => new MatrixError(401, "M_UNAUTHORIZED", msg);
export const missingToken = () => new MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
export const unknownToken = (softLogout = false) =>
  new MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown or expired access token", { soft_logout: softLogout });
export const limitExceeded = (retryAfterMs: number) =>
  new MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", { retry_after_ms: retryAfterMs });
export const unsupportedRoomVersion = (version: string) =>
  new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", `Room version ${JSON.stringify(version)} is not supported`);
export const unknown = (msg: string, status = 500) => new MatrixError(status, "M_UNKNOWN", msg);
