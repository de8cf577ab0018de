/**
 * Profiles: GET /profile/{userId}, GET/PUT/DELETE /profile/{userId}/{keyName} (displayname, avatar_url, m.tz and
 * custom namespaced keys, spec v1.16+). https://spec.matrix.org/v1.19/client-server-api/#profiles
 *
 * Profiles of local users live in D1 (src/rooms/profiles.ts). Changing the display name or avatar sends a new
 * member event into every room the user is joined to. Other servers' profiles need federation (hook).
 */
import { Hono } from "hono";
import type { AppEnv, AppContext } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { readJsonObject } from "../../http/json";
import { forbidden, invalidParam, notFound } from "../../http/errors";
import type { JsonValue } from "../../protocol/events";
import { utf8ByteLength } from "../../protocol/canonical-json";
import {
  getProfile, MAX_AVATAR_URL_LENGTH, MAX_DISPLAYNAME_LENGTH, putProfile,
} from "../../rooms/profiles";
import { propagateProfile } from "../../rooms/profile-propagation";
import { federationHooks } from "../../rooms/federation-hooks";
import { isLocal, matrixError, requireUserId } from "../../rooms/common";
import { queryUserFromAppservices } from "../../appservices/client";

export const profileRoutes = new Hono<AppEnv>();

const KEY_NAME = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;
const PROPAGATED = new Set(["displayname", "avatar_url"]);

function keyParam(c: AppContext): string {
  const key = c.req.param("keyName")!;
  if (utf8ByteLength(key) > 255) throw matrixError(400, "M_KEY_TOO_LARGE", "Profile keys are at most 255 bytes");
  if (!KEY_NAME.test(key)) throw invalidParam(`Invalid profile key ${JSON.stringify(key)}`);
  return key;
}

async function profileOf(c: AppContext, userId: string, field?: string): Promise<Record<string, unknown>> {
  if (!isLocal(c.env, userId)) {
    const remote = await federationHooks.queryRemoteProfile(c.env, userId, field);
    if (!remote) throw notFound("Profile not found");
    return remote;
  }
  let profile = await getProfile(c.env.DB, userId);
  // Application services are asked about unknown users in their namespaces (src/appservices/client.ts).
  if (!profile && (await queryUserFromAppservices(c.env, userId))) profile = await getProfile(c.env.DB, userId);
  if (!profile) throw notFound("Profile not found");
  return profile;
}

profileRoutes.get("/profile/:userId", async (c) => {
  const userId = requireUserId(c.req.param("userId"));
  return c.json(await profileOf(c, userId));
});

profileRoutes.get("/profile/:userId/:keyName", async (c) => {
  const userId = requireUserId(c.req.param("userId"));
  const key = keyParam(c);
  const profile = await profileOf(c, userId, key);
  if (!Object.hasOwn(profile, key)) throw notFound(`The user has no ${key}`);
  return c.json({ [key]: profile[key] });
});

/** Only the user themself (or a server admin) changes a profile. */
async function checkOwner(c: AppContext, userId: string): Promise<void> {
  const requester = c.get("requester");
  if (requester.userId === userId) return;
  const admin = await c.env.DB.prepare("SELECT admin FROM users WHERE user_id = ?").bind(requester.userId).first<{ admin: number }>();
  if (admin?.admin !== 1) throw forbidden("You cannot change another user's profile");
}

function checkValue(key: string, value: unknown): JsonValue {
  if (key === "displayname") {
    if (typeof value !== "string") throw matrixError(400, "M_BAD_JSON", "displayname must be a string");
    if (value.length > MAX_DISPLAYNAME_LENGTH) throw matrixError(400, "M_BAD_JSON", `Displayname is too long (max ${MAX_DISPLAYNAME_LENGTH})`);
  } else if (key === "avatar_url") {
    if (typeof value !== "string") throw matrixError(400, "M_BAD_JSON", "avatar_url must be a string");
    if (value.length > MAX_AVATAR_URL_LENGTH) throw matrixError(400, "M_BAD_JSON", `Avatar URL is too long (max ${MAX_AVATAR_URL_LENGTH})`);
    if (value !== "" && !/^mxc:\/\/[^/]+\/[^/]+$/.test(value)) throw matrixError(400, "M_BAD_JSON", "avatar_url must be an mxc:// URI");
  } else if (key === "m.tz" && typeof value !== "string") {
    throw matrixError(400, "M_BAD_JSON", "m.tz must be a string");
  }
  return value as JsonValue;
}

profileRoutes.put("/profile/:userId/:keyName", requireAuth, async (c) => {
  const userId = requireUserId(c.req.param("userId"));
  const key = keyParam(c);
  await checkOwner(c, userId);
  if (!isLocal(c.env, userId)) throw forbidden("Cannot change the profile of a user on another server");
  const body = await readJsonObject(c);
  if (!Object.hasOwn(body, key)) throw matrixError(400, "M_MISSING_PARAM", `Missing '${key}'`);
  const value = checkValue(key, body[key]);
  const profile = (await getProfile(c.env.DB, userId)) ?? {};
  if (!(await putProfile(c.env.DB, userId, { ...profile, [key]: value }))) {
    throw matrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB");
  }
  if (PROPAGATED.has(key) && profile[key] !== value) await propagateProfile(c.env, userId);
  return c.json({});
});

profileRoutes.delete("/profile/:userId/:keyName", requireAuth, async (c) => {
  const userId = requireUserId(c.req.param("userId"));
  const key = keyParam(c);
  await checkOwner(c, userId);
  if (!isLocal(c.env, userId)) throw forbidden("Cannot change the profile of a user on another server");
  const profile = (await getProfile(c.env.DB, userId)) ?? {};
  if (!Object.hasOwn(profile, key)) return c.json({});
  const { [key]: _removed, ...rest } = profile;
  await putProfile(c.env.DB, userId, rest);
  if (PROPAGATED.has(key)) await propagateProfile(c.env, userId);
  return c.json({});
});
