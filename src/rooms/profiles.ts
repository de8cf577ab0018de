/**
 * Global profiles of local users (D1 `profiles`): `displayname`, `avatar_url`, `m.tz` and custom namespaced
 * fields (spec v1.16+). Display name and avatar changes are propagated into every joined room as new member
 * events (see src/rooms/profile-propagation.ts).
 */
import type { JsonValue } from "../protocol/events";
import { utf8ByteLength } from "../protocol/canonical-json";

export type Profile = Record<string, JsonValue>;

interface ProfileRow {
  displayname: string | null;
  avatar_url: string | null;
  fields: string;
}

/** Whether a local account exists (deactivated accounts included: their profile stays readable, empty). */
export async function localUserExists(db: D1Database, userId: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS x FROM users WHERE user_id = ?").bind(userId).first()) !== null;
}

/** A local user's profile; null when there is neither an account nor a profile row. */
export async function getProfile(db: D1Database, userId: string): Promise<Profile | null> {
  const row = await db.prepare("SELECT displayname, avatar_url, fields FROM profiles WHERE user_id = ?").bind(userId).first<ProfileRow>();
  if (!row) return (await localUserExists(db, userId)) ? {} : null;
  const profile: Profile = { ...(JSON.parse(row.fields) as Profile) };
  if (row.displayname !== null) profile.displayname = row.displayname;
  if (row.avatar_url !== null) profile.avatar_url = row.avatar_url;
  return profile;
}

/** The profile fields a member event carries (only those that are set). */
export async function memberProfile(db: D1Database, userId: string): Promise<{ displayname?: string; avatar_url?: string }> {
  const row = await db.prepare("SELECT displayname, avatar_url FROM profiles WHERE user_id = ?").bind(userId).first<ProfileRow>();
  const out: { displayname?: string; avatar_url?: string } = {};
  if (typeof row?.displayname === "string") out.displayname = row.displayname;
  if (typeof row?.avatar_url === "string") out.avatar_url = row.avatar_url;
  return out;
}

/** The largest profile, as canonical-ish JSON (spec: under 64 KiB). */
export const MAX_PROFILE_BYTES = 64 * 1024;
/** Synapse's limits for the two classic fields. */
export const MAX_DISPLAYNAME_LENGTH = 256;
export const MAX_AVATAR_URL_LENGTH = 1000;

/**
 * Writes a whole profile (after the caller applied one change). Returns false if it would exceed the size
 * limit, leaving the stored profile unchanged.
 */
export async function putProfile(db: D1Database, userId: string, profile: Profile): Promise<boolean> {
  if (utf8ByteLength(JSON.stringify(profile)) >= MAX_PROFILE_BYTES) return false;
  const { displayname, avatar_url, ...rest } = profile;
  await db
    .prepare(
      `INSERT INTO profiles (user_id, displayname, avatar_url, fields, updated_ts) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname, avatar_url = excluded.avatar_url,
         fields = excluded.fields, updated_ts = excluded.updated_ts`,
    )
    .bind(
      userId,
      typeof displayname === "string" ? displayname : null,
      typeof avatar_url === "string" ? avatar_url : null,
      JSON.stringify(rest),
      Date.now(),
    )
    .run();
  return true;
}

/**
 * For registration (accounts engineer): a new user's initial profile, display name defaulting to the
 * localpart as Synapse does. Does nothing if a profile exists.
 */
export async function createInitialProfile(db: D1Database, userId: string, displayname: string | null): Promise<void> {
  await db
    .prepare("INSERT INTO profiles (user_id, displayname, avatar_url, fields, updated_ts) VALUES (?, ?, NULL, '{}', ?) ON CONFLICT (user_id) DO NOTHING")
    .bind(userId, displayname, Date.now())
    .run();
}
