/**
 * Server-side key backups (https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups):
 *   POST/GET /room_keys/version, GET/PUT/DELETE /room_keys/version/{version},
 *   GET/PUT/DELETE /room_keys/keys[/{roomId}[/{sessionId}]]?version=…
 * Stored in the user's UserDO (durable-objects/user/key-backup.ts).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { invalidParam, missingParam, notFound } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { attempt, unwrap } from "../../e2ee/result";
import { parseAllRoomsBackup, parseBackupKey, parseBackupVersionBody, parseRoomBackup, type BackupKey } from "../../e2ee/backup";
import type { BackupKeyUpload, BackupVersionInfo } from "../../../durable-objects/user/key-backup";

export const roomKeyRoutes = new Hono<AppEnv>();
roomKeyRoutes.use("/room_keys/*", requireAuth);

function backups(c: AppContext) {
  const userId = c.get("requester").userId;
  return c.env.USERS.get(c.env.USERS.idFromName(userId));
}

function checked<T>(fn: () => T): T {
  return unwrap(attempt(fn));
}

function versionInfo(info: BackupVersionInfo) {
  return { ...info, auth_data: JSON.parse(info.auth_data) as unknown };
}

/** The `version` query parameter the key endpoints require. */
function versionParam(c: AppContext): string {
  const v = c.req.query("version");
  if (v === undefined || v === "") throw missingParam("Missing 'version'");
  return v;
}

function uploads(entries: Iterable<[string, Map<string, BackupKey>]>): BackupKeyUpload[] {
  const out: BackupKeyUpload[] = [];
  for (const [room_id, sessions] of entries) for (const [session_id, key] of sessions) out.push({ room_id, session_id, ...key });
  return out;
}

// --- versions ---

roomKeyRoutes.post("/room_keys/version", async (c) => {
  const body = await readJsonObject(c);
  const { algorithm, auth_data } = checked(() => parseBackupVersionBody(body));
  return c.json({ version: unwrap(await backups(c).createKeyBackup(algorithm, auth_data)) });
});

roomKeyRoutes.get("/room_keys/version", async (c) => c.json(versionInfo(unwrap(await backups(c).getKeyBackup(null)))));

roomKeyRoutes.get("/room_keys/version/:version", async (c) =>
  c.json(versionInfo(unwrap(await backups(c).getKeyBackup(c.req.param("version"))))),
);

roomKeyRoutes.put("/room_keys/version/:version", async (c) => {
  const version = c.req.param("version");
  const body = await readJsonObject(c);
  const { algorithm, auth_data } = checked(() => parseBackupVersionBody(body));
  if (body.version !== undefined && body.version !== version) throw invalidParam("version in the body does not match the path");
  unwrap(await backups(c).updateKeyBackup(version, algorithm, auth_data));
  return c.json({});
});

roomKeyRoutes.delete("/room_keys/version/:version", async (c) => {
  unwrap(await backups(c).deleteKeyBackup(c.req.param("version")));
  return c.json({});
});

// --- keys ---

roomKeyRoutes.put("/room_keys/keys", async (c) => {
  const version = versionParam(c);
  const body = await readJsonObject(c);
  const keys = uploads(checked(() => parseAllRoomsBackup(body)));
  return c.json(unwrap(await backups(c).putBackupKeys(version, keys)));
});

roomKeyRoutes.put("/room_keys/keys/:roomId", async (c) => {
  const version = versionParam(c);
  const roomId = c.req.param("roomId");
  const body = await readJsonObject(c);
  const keys = uploads([[roomId, checked(() => parseRoomBackup(body, "body"))]]);
  return c.json(unwrap(await backups(c).putBackupKeys(version, keys)));
});

roomKeyRoutes.put("/room_keys/keys/:roomId/:sessionId", async (c) => {
  const version = versionParam(c);
  const body = await readJsonObject(c);
  const key = checked(() => parseBackupKey(body, "body"));
  const keys = uploads([[c.req.param("roomId"), new Map([[c.req.param("sessionId"), key]])]]);
  return c.json(unwrap(await backups(c).putBackupKeys(version, keys)));
});

type RoomsJson = { rooms: Record<string, { sessions: Record<string, unknown> }> };

roomKeyRoutes.get("/room_keys/keys", async (c) => {
  const text = unwrap(await backups(c).getBackupKeys(versionParam(c), null, null));
  return c.json(JSON.parse(text) as RoomsJson);
});

roomKeyRoutes.get("/room_keys/keys/:roomId", async (c) => {
  const roomId = c.req.param("roomId");
  const rooms = (JSON.parse(unwrap(await backups(c).getBackupKeys(versionParam(c), roomId, null))) as RoomsJson).rooms;
  return c.json(rooms[roomId] ?? { sessions: {} });
});

roomKeyRoutes.get("/room_keys/keys/:roomId/:sessionId", async (c) => {
  const roomId = c.req.param("roomId");
  const sessionId = c.req.param("sessionId");
  const rooms = (JSON.parse(unwrap(await backups(c).getBackupKeys(versionParam(c), roomId, sessionId))) as RoomsJson).rooms;
  const key = rooms[roomId]?.sessions[sessionId];
  if (key === undefined) throw notFound("Key not found.");
  return c.json(key as object);
});

roomKeyRoutes.delete("/room_keys/keys", async (c) => c.json(unwrap(await backups(c).deleteBackupKeys(versionParam(c), null, null))));

roomKeyRoutes.delete("/room_keys/keys/:roomId", async (c) =>
  c.json(unwrap(await backups(c).deleteBackupKeys(versionParam(c), c.req.param("roomId"), null))),
);

roomKeyRoutes.delete("/room_keys/keys/:roomId/:sessionId", async (c) =>
  c.json(unwrap(await backups(c).deleteBackupKeys(versionParam(c), c.req.param("roomId"), c.req.param("sessionId")))),
);
