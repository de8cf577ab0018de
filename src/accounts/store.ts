/**
 * D1 access for accounts, devices and tokens (tables in migrations/0002_accounts.sql and 0003_accounts_auth.sql).
 * Writes that must happen together are returned as prepared statements for one `db.batch`, which D1 runs as a
 * single transaction: a request that fails leaves nothing behind.
 */
import type { Env } from "../env";
import { getConfig } from "../config";
import { newDeviceId, newToken, tokenHash } from "./tokens";

export interface UserRow {
  user_id: string;
  localpart: string;
  password_hash: string | null;
  created_ts: number;
  deactivated: number;
  is_guest: number;
  admin: number;
  appservice_id: string | null;
  user_type: string | null;
}

export async function getUser(db: D1Database, userId: string): Promise<UserRow | null> {
  return db.prepare("SELECT * FROM users WHERE user_id = ?").bind(userId).first<UserRow>();
}

/** The account for a login identifier: exact match first, else the only case-insensitive match (as Synapse). */
export async function findUserForLogin(db: D1Database, userId: string): Promise<UserRow | null> {
  const exact = await getUser(db, userId);
  if (exact) return exact;
  const { results } = await db
    .prepare("SELECT * FROM users WHERE lower(user_id) = lower(?) LIMIT 2")
    .bind(userId)
    .all<UserRow>();
  return results.length === 1 ? results[0]! : null;
}

export async function localpartTaken(db: D1Database, userId: string): Promise<boolean> {
  const row = await db.prepare("SELECT 1 AS x FROM users WHERE lower(user_id) = lower(?) LIMIT 1").bind(userId).first();
  return row !== null;
}

export interface NewUser {
  userId: string;
  localpart: string;
  passwordHash: string | null;
  admin?: boolean;
  userType?: string | null;
  appserviceId?: string | null;
}

/** The INSERT for a new account (fails with a UNIQUE constraint error if the ID is taken). */
export function insertUserStatement(db: D1Database, u: NewUser, now: number): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO users (user_id, localpart, password_hash, created_ts, admin, user_type, appservice_id)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(u.userId, u.localpart, u.passwordHash, now, u.admin ? 1 : 0, u.userType ?? null, u.appserviceId ?? null);
}

export function isUniqueViolation(e: unknown): boolean {
  return /UNIQUE constraint failed/i.test(String((e as Error)?.message ?? e));
}

// ---------------------------------------------------------------------------------------------------------
// Logins: a device plus an access token (and optionally a refresh token)

export interface LoginRequest {
  /** Reuse (or create with) this device ID; a new one is generated when absent. */
  deviceId?: string;
  /** Display name for a device created by this login. */
  initialDisplayName?: string;
  /** The client supports refresh tokens: issue one, and an access token that expires. */
  refreshToken?: boolean;
}

export interface IssuedLogin {
  device_id: string;
  access_token: string;
  refresh_token?: string;
  expires_in_ms?: number;
}

/** Longest device display name kept (as Synapse). */
export const MAX_DEVICE_DISPLAY_NAME = 100;

/**
 * The statements that log `userId` in on a device: create the device unless it exists (an existing device keeps
 * its display name), revoke the tokens the device had (the spec: a client that names its device replaces that
 * device's session), and store the new token hashes.
 */
export function loginStatements(
  env: Env,
  userId: string,
  req: LoginRequest,
  now: number,
): { statements: D1PreparedStatement[]; issued: IssuedLogin } {
  const db = env.DB;
  const deviceId = req.deviceId ?? newDeviceId();
  const displayName = req.initialDisplayName?.slice(0, MAX_DEVICE_DISPLAY_NAME) ?? null;
  const accessToken = newToken("syt");
  const issued: IssuedLogin = { device_id: deviceId, access_token: accessToken };
  let expiresTs: number | null = null;
  let refreshHash: string | null = null;
  if (req.refreshToken) {
    const lifetime = getConfig(env).refreshableAccessTokenLifetimeMs;
    const refreshToken = newToken("syr");
    expiresTs = now + lifetime;
    refreshHash = tokenHash(refreshToken);
    issued.refresh_token = refreshToken;
    issued.expires_in_ms = lifetime;
  }
  const statements = [
    db
      .prepare(
        `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)
         ON CONFLICT (user_id, device_id) DO NOTHING`,
      )
      .bind(userId, deviceId, displayName, now),
    db.prepare("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?").bind(userId, deviceId),
    db
      .prepare(
        `INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_hash)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .bind(tokenHash(accessToken), userId, deviceId, now, expiresTs, refreshHash),
  ];
  return { statements, issued };
}

/** Logs `userId` in (see {@link loginStatements}). */
export async function createLogin(env: Env, userId: string, req: LoginRequest): Promise<IssuedLogin> {
  const { statements, issued } = loginStatements(env, userId, req, Date.now());
  await env.DB.batch(statements);
  return issued;
}

// ---------------------------------------------------------------------------------------------------------
// Devices

export interface DeviceInfo {
  device_id: string;
  display_name?: string;
  last_seen_ip?: string;
  last_seen_ts?: number;
}

interface DeviceRow {
  device_id: string;
  display_name: string | null;
  last_seen_ip: string | null;
  last_seen_ts: number | null;
}

function deviceInfo(r: DeviceRow): DeviceInfo {
  const d: DeviceInfo = { device_id: r.device_id };
  if (r.display_name !== null) d.display_name = r.display_name;
  if (r.last_seen_ip !== null) d.last_seen_ip = r.last_seen_ip;
  if (r.last_seen_ts !== null) d.last_seen_ts = r.last_seen_ts;
  return d;
}

export async function listDevices(db: D1Database, userId: string): Promise<DeviceInfo[]> {
  const { results } = await db
    .prepare("SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices WHERE user_id = ? ORDER BY created_ts, device_id")
    .bind(userId)
    .all<DeviceRow>();
  return results.map(deviceInfo);
}

export async function getDevice(db: D1Database, userId: string, deviceId: string): Promise<DeviceInfo | null> {
  const row = await db
    .prepare("SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices WHERE user_id = ? AND device_id = ?")
    .bind(userId, deviceId)
    .first<DeviceRow>();
  return row ? deviceInfo(row) : null;
}

/** Sets a device's display name; false when the user has no such device. */
export async function setDeviceDisplayName(db: D1Database, userId: string, deviceId: string, name: string): Promise<boolean> {
  const r = await db
    .prepare("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?")
    .bind(name, userId, deviceId)
    .run();
  return r.meta.changes > 0;
}

/** Creates a device without a token (application services managing their users' devices). */
export async function createDevice(db: D1Database, userId: string, deviceId: string, displayName: string | null): Promise<boolean> {
  const r = await db
    .prepare(
      `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)
       ON CONFLICT (user_id, device_id) DO NOTHING`,
    )
    .bind(userId, deviceId, displayName, Date.now())
    .run();
  return r.meta.changes > 0;
}

export async function deviceIdsOf(db: D1Database, userId: string): Promise<string[]> {
  const { results } = await db.prepare("SELECT device_id FROM devices WHERE user_id = ?").bind(userId).all<{ device_id: string }>();
  return results.map((r) => r.device_id);
}

// ---------------------------------------------------------------------------------------------------------
// Tokens

export async function revokeDeviceTokens(db: D1Database, userId: string, deviceId: string): Promise<void> {
  await db.prepare("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?").bind(userId, deviceId).run();
}

export async function revokeAllTokens(db: D1Database, userId: string): Promise<void> {
  await db.prepare("DELETE FROM access_tokens WHERE user_id = ?").bind(userId).run();
}
