/**
 * Pushers (https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3pushersset): validation of
 * `POST /pushers/set` bodies and their D1 storage (migrations/0006_pushers.sql).
 *
 * `http` pushers are delivered to by the user's UserDO (durable-objects/user/push-actions.ts, docs/push.md);
 * `email` pushers are accepted and listed but never sent to (this server sends no mail).
 */
import { MatrixError } from "../http/errors";

export interface Pusher {
  pushkey: string;
  kind: string;
  app_id: string;
  app_display_name: string;
  device_display_name: string;
  profile_tag?: string;
  lang: string;
  data: Record<string, unknown>;
}

export type PusherRequest = { delete: true; app_id: string; pushkey: string } | { delete: false; pusher: Pusher; append: boolean };

const MAX_APP_ID_CHARS = 64;
const MAX_PUSHKEY_BYTES = 512;
const NOTIFY_PATH = "/_matrix/push/v1/notify";

const bad = (msg: string) => new MatrixError(400, "M_INVALID_PARAM", msg);
const missing = (field: string) => new MatrixError(400, "M_MISSING_PARAM", `Missing '${field}'`);

function str(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (v === undefined || v === null) throw missing(field);
  if (typeof v !== "string") throw new MatrixError(400, "M_BAD_JSON", `'${field}' must be a string`);
  return v;
}

/** Parses a `POST /pushers/set` body. */
export function parsePusherRequest(body: Record<string, unknown>): PusherRequest {
  if (!("kind" in body)) throw missing("kind");
  const app_id = str(body, "app_id");
  const pushkey = str(body, "pushkey");
  if ([...app_id].length > MAX_APP_ID_CHARS) throw bad(`app_id is longer than ${MAX_APP_ID_CHARS} characters`);
  if (new TextEncoder().encode(pushkey).length > MAX_PUSHKEY_BYTES) throw bad(`pushkey is longer than ${MAX_PUSHKEY_BYTES} bytes`);
  if (body.kind === null) return { delete: true, app_id, pushkey };

  const kind = str(body, "kind");
  if (kind !== "http" && kind !== "email") throw bad(`Unsupported pusher kind ${JSON.stringify(kind)} (only "http" or "email")`);
  const data = body.data;
  if (data === undefined || data === null) throw missing("data");
  if (typeof data !== "object" || Array.isArray(data)) throw new MatrixError(400, "M_BAD_JSON", "'data' must be an object");
  const d = data as Record<string, unknown>;
  if (kind === "http") {
    if (typeof d.url !== "string") throw missing("data.url");
    let url: URL;
    try {
      url = new URL(d.url);
    } catch {
      throw bad("data.url is not a URL");
    }
    if ((url.protocol !== "https:" && url.protocol !== "http:") || url.pathname !== NOTIFY_PATH) {
      throw bad(`data.url must be an HTTP(S) URL with the path ${NOTIFY_PATH}`);
    }
  }
  if (d.format !== undefined && d.format !== "event_id_only") throw bad('data.format must be "event_id_only" when given');
  const profileTag = body.profile_tag;
  if (profileTag !== undefined && typeof profileTag !== "string") throw new MatrixError(400, "M_BAD_JSON", "'profile_tag' must be a string");
  const append = body.append;
  if (append !== undefined && typeof append !== "boolean") throw new MatrixError(400, "M_BAD_JSON", "'append' must be a boolean");
  return {
    delete: false,
    append: append ?? false,
    pusher: {
      pushkey,
      kind,
      app_id,
      app_display_name: str(body, "app_display_name"),
      device_display_name: str(body, "device_display_name"),
      ...(profileTag !== undefined ? { profile_tag: profileTag } : {}),
      lang: str(body, "lang"),
      data: d,
    },
  };
}

type PusherRow = {
  pushkey: string;
  kind: string;
  app_id: string;
  app_display_name: string;
  device_display_name: string;
  profile_tag: string | null;
  lang: string;
  data: string;
};

export async function listPushers(db: D1Database, userId: string): Promise<Pusher[]> {
  const { results } = await db
    .prepare(
      `SELECT pushkey, kind, app_id, app_display_name, device_display_name, profile_tag, lang, data
       FROM pushers WHERE user_id = ? ORDER BY created_ts, app_id, pushkey`,
    )
    .bind(userId)
    .all<PusherRow>();
  return results.map((r) => ({
    pushkey: r.pushkey,
    kind: r.kind,
    app_id: r.app_id,
    app_display_name: r.app_display_name,
    device_display_name: r.device_display_name,
    ...(r.profile_tag !== null ? { profile_tag: r.profile_tag } : {}),
    lang: r.lang,
    data: JSON.parse(r.data) as Record<string, unknown>,
  }));
}

/** Applies a `POST /pushers/set` for `userId` (from `deviceId`). */
export async function applyPusherRequest(db: D1Database, userId: string, deviceId: string | undefined, req: PusherRequest): Promise<void> {
  if (req.delete) {
    await db.prepare("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?").bind(userId, req.app_id, req.pushkey).run();
    return;
  }
  const p = req.pusher;
  const statements = [
    db
      .prepare(
        `INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, device_id, created_ts)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind, app_display_name = excluded.app_display_name,
           device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag, lang = excluded.lang,
           data = excluded.data, device_id = excluded.device_id`,
      )
      .bind(userId, p.app_id, p.pushkey, p.kind, p.app_display_name, p.device_display_name, p.profile_tag ?? null, p.lang,
        JSON.stringify(p.data), deviceId ?? null, Date.now()),
  ];
  // Without `append`, the pushkey belongs to this user only: other users' pushers for it go.
  if (!req.append) {
    statements.push(
      db.prepare("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?").bind(p.app_id, p.pushkey, userId),
    );
  }
  await db.batch(statements);
}

/** Removes the pushers a device set (the device was deleted). */
export async function deleteDevicePushers(db: D1Database, userId: string, deviceId: string): Promise<void> {
  await db.prepare("DELETE FROM pushers WHERE user_id = ? AND device_id = ?").bind(userId, deviceId).run();
}

// ---------------------------------------------------------------------------------------------------------
// Delivery (docs/push.md): what the user's UserDO reads to send notifications

/** An `http` pusher as delivery needs it: its gateway URL, data and creation time. */
export interface HttpPusher {
  app_id: string;
  pushkey: string;
  url: string;
  data: Record<string, unknown>;
  created_ts: number;
}

/** The user's `http` pushers (email pushers are never delivered to). */
export async function httpPushers(db: D1Database, userId: string): Promise<HttpPusher[]> {
  const { results } = await db
    .prepare("SELECT app_id, pushkey, data, created_ts FROM pushers WHERE user_id = ? AND kind = 'http' ORDER BY created_ts, app_id, pushkey")
    .bind(userId)
    .all<{ app_id: string; pushkey: string; data: string; created_ts: number }>();
  const out: HttpPusher[] = [];
  for (const r of results) {
    const data = JSON.parse(r.data) as Record<string, unknown>;
    if (typeof data.url !== "string") continue;
    out.push({ app_id: r.app_id, pushkey: r.pushkey, url: data.url, data, created_ts: r.created_ts });
  }
  return out;
}

/** Removes one pusher (its gateway rejected the pushkey). */
export async function deletePusher(db: D1Database, userId: string, appId: string, pushkey: string): Promise<void> {
  await db.prepare("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?").bind(userId, appId, pushkey).run();
}
