/**
 * POST /createRoom (https://spec.matrix.org/v1.19/client-server-api/#creation).
 *
 * The create event is built here (a v12 room ID is derived from it), then every initial event goes to the
 * RoomDO in one transaction, in the spec's order: create, creator's join, power levels, canonical alias,
 * preset events (join rules, history visibility, guest access), `initial_state`, name, topic, invites.
 * A room is created completely or not at all. Invites of users on other servers go through the federation
 * hook afterwards (they need the other server's signature).
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import type { JsonObject, JsonValue } from "../protocol/events";
import { badJson, invalidParam, notFound, unsupportedRoomVersion } from "../http/errors";
import { DEFAULT_ROOM_VERSION, roomVersion, type RoomVersion } from "../protocol/room-versions";
import { isValidRoomAlias, isValidUserId } from "../protocol/identifiers";
import { buildCreateEvent } from "./create-event";
import { getServerKeys } from "../server-keys";
import type { EventTemplate } from "../../durable-objects/room/room";
import { deleteAlias, getAlias, insertAlias, setPublished } from "./directory-store";
import { federationHooks } from "./federation-hooks";
import { localUserExists, memberProfile } from "./profiles";
import { checkAliasCreation, queryUserFromAppservices } from "../appservices/client";
import { checkEventContent } from "./send";
import { isLocal, matrixError, roomStub, serverName } from "./common";

export type Preset = "private_chat" | "trusted_private_chat" | "public_chat";

const PRESETS: Record<Preset, { joinRule: string; historyVisibility: string; guestCanJoin: boolean; inviteLevel: number | undefined; inviteesAreAdmins: boolean }> = {
  private_chat: { joinRule: "invite", historyVisibility: "shared", guestCanJoin: true, inviteLevel: 0, inviteesAreAdmins: false },
  trusted_private_chat: { joinRule: "invite", historyVisibility: "shared", guestCanJoin: true, inviteLevel: 0, inviteesAreAdmins: true },
  public_chat: { joinRule: "public", historyVisibility: "shared", guestCanJoin: false, inviteLevel: undefined, inviteesAreAdmins: false },
};

/** Versions this server will create rooms in. v1 needs state resolution v1, which is not implemented. */
export function creatableRoomVersion(id: string): RoomVersion | undefined {
  const v = roomVersion(id);
  return v && v.stateRes !== "v1" ? v : undefined;
}

interface StateTemplate {
  type: string;
  state_key: string;
  content: JsonObject;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw badJson(`'${key}' must be a string`);
  return v;
}

/** The parsed and validated request. */
export interface CreateRoomRequest {
  visibility: "public" | "private";
  preset: Preset;
  version: RoomVersion;
  creationContent: JsonObject;
  initialState: StateTemplate[];
  name: string | undefined;
  topic: string | undefined;
  invite: string[];
  aliasLocalpart: string | undefined;
  powerLevelOverride: JsonObject | undefined;
  isDirect: boolean;
}

export function parseCreateRoomBody(body: Record<string, unknown>): CreateRoomRequest {
  const visibility = body.visibility ?? "private";
  if (visibility !== "public" && visibility !== "private") throw invalidParam("'visibility' must be 'public' or 'private'");
  const preset = body.preset ?? (visibility === "public" ? "public_chat" : "private_chat");
  if (typeof preset !== "string" || !Object.hasOwn(PRESETS, preset)) throw badJson(`${JSON.stringify(preset)} is not a valid preset`);

  const versionId = body.room_version ?? DEFAULT_ROOM_VERSION;
  if (typeof versionId !== "string") throw badJson("'room_version' must be a string");
  const version = creatableRoomVersion(versionId);
  if (!version) throw unsupportedRoomVersion(versionId);

  const creationContent = body.creation_content ?? {};
  if (!isObject(creationContent)) throw badJson("'creation_content' must be an object");
  const additional = creationContent.additional_creators;
  if (additional !== undefined) {
    if (!version.privilegedCreators) throw badJson(`'additional_creators' needs room version 12 or later`);
    if (!Array.isArray(additional) || !additional.every((u) => isValidUserId(u))) {
      throw badJson("'additional_creators' must be a list of user IDs");
    }
  }

  const rawState = body.initial_state ?? [];
  if (!Array.isArray(rawState)) throw badJson("'initial_state' must be a list");
  const initialState = rawState.map((e, i): StateTemplate => {
    if (!isObject(e) || typeof e.type !== "string" || !isObject(e.content)) {
      throw badJson(`initial_state[${i}] needs a string 'type' and an object 'content'`);
    }
    const sk = e.state_key ?? "";
    if (typeof sk !== "string") throw badJson(`initial_state[${i}].state_key must be a string`);
    return { type: e.type, state_key: sk, content: e.content };
  });

  const invite = body.invite ?? [];
  if (!Array.isArray(invite) || !invite.every((u) => typeof u === "string")) throw badJson("'invite' must be a list of user IDs");
  for (const u of invite) if (!isValidUserId(u)) throw invalidParam(`Invalid user ID in 'invite': ${JSON.stringify(u)}`);
  const invite3pid = body.invite_3pid;
  if (Array.isArray(invite3pid) && invite3pid.length > 0) {
    throw invalidParam("Third-party invites ('invite_3pid') are not supported by this server");
  }

  const aliasLocalpart = optString(body, "room_alias_name");
  if (aliasLocalpart !== undefined) {
    if (/\s/.test(aliasLocalpart)) throw badJson("Invalid characters in room alias");
    if (aliasLocalpart.includes(":")) {
      throw badJson("':' is not permitted in the room alias name; give the local part only ('wombat', not '#wombat:example.com')");
    }
  }

  const override = body.power_level_content_override;
  if (override !== undefined && override !== null && !isObject(override)) throw badJson("'power_level_content_override' must be an object");
  if (body.is_direct !== undefined && typeof body.is_direct !== "boolean") throw badJson("'is_direct' must be a boolean");

  return {
    visibility,
    preset: preset as Preset,
    version,
    creationContent,
    initialState,
    name: optString(body, "name"),
    topic: optString(body, "topic"),
    invite: [...new Set(invite as string[])],
    aliasLocalpart,
    powerLevelOverride: isObject(override) ? override : undefined,
    isDirect: body.is_direct === true,
  };
}

/** Drops room creators from a power levels `users` map (v12: creators may not be listed). */
function withoutCreators(content: JsonObject, creators: ReadonlySet<string>): JsonObject {
  if (!isObject(content.users)) return content;
  const users: JsonObject = {};
  for (const [u, level] of Object.entries(content.users)) if (!creators.has(u)) users[u] = level;
  return { ...content, users };
}

/** The power levels event content: Synapse's defaults, the preset's changes, then the client's override. */
export function defaultPowerLevels(req: CreateRoomRequest, creator: string, creators: ReadonlySet<string>): JsonObject {
  const v12 = req.version.privilegedCreators;
  const preset = PRESETS[req.preset];
  const users: JsonObject = {};
  if (!v12) {
    users[creator] = 100;
    if (preset.inviteesAreAdmins) for (const u of req.invite) users[u] = 100;
  }
  const content: JsonObject = {
    users,
    users_default: 0,
    events: {
      "m.room.name": 50,
      "m.room.power_levels": 100,
      "m.room.history_visibility": 100,
      "m.room.canonical_alias": 50,
      "m.room.avatar": 50,
      // v12: above state_default and above every non-creator (the spec asks for "explicitly higher").
      "m.room.tombstone": v12 ? 150 : 100,
      "m.room.server_acl": 100,
      "m.room.encryption": 100,
    },
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: preset.inviteLevel ?? 50,
  };
  if (req.powerLevelOverride) {
    if (!v12 && isObject(req.powerLevelOverride.users) && !(creator in req.powerLevelOverride.users)) {
      throw badJson(`Not a valid power_level_content_override: 'users' did not contain ${creator}`);
    }
    Object.assign(content, req.powerLevelOverride);
  }
  return v12 ? withoutCreators(content, creators) : content;
}

/** The initial events after the create event, in the spec's order. */
export async function initialEvents(
  env: Env,
  req: CreateRoomRequest,
  creator: string,
  creators: ReadonlySet<string>,
  alias: string | undefined,
): Promise<EventTemplate[]> {
  const state = (type: string, content: JsonObject, state_key = ""): EventTemplate => ({ type, state_key, sender: creator, content });
  const initial = new Map<string, StateTemplate>();
  for (const e of req.initialState) {
    const key = `${e.type}\u0000${e.state_key}`;
    initial.delete(key); // the last one wins, at its own position
    initial.set(key, e);
  }
  const has = (type: string) => initial.has(`${type}\u0000`);
  const take = (type: string) => {
    const e = initial.get(`${type}\u0000`);
    initial.delete(`${type}\u0000`);
    return e;
  };
  const preset = PRESETS[req.preset];
  const out: EventTemplate[] = [];
  out.push({ type: "m.room.member", state_key: creator, sender: creator, content: { membership: "join", ...(await memberProfile(env.DB, creator)) } });
  const pl = take("m.room.power_levels");
  out.push(state("m.room.power_levels", pl ? (req.version.privilegedCreators ? withoutCreators(pl.content, creators) : pl.content) : defaultPowerLevels(req, creator, creators)));
  if (alias && !has("m.room.canonical_alias")) out.push(state("m.room.canonical_alias", { alias }));
  if (!has("m.room.join_rules")) out.push(state("m.room.join_rules", { join_rule: preset.joinRule }));
  if (!has("m.room.history_visibility")) out.push(state("m.room.history_visibility", { history_visibility: preset.historyVisibility }));
  if (preset.guestCanJoin && !has("m.room.guest_access")) out.push(state("m.room.guest_access", { guest_access: "can_join" }));
  for (const e of initial.values()) {
    if (req.name !== undefined && e.type === "m.room.name" && e.state_key === "") continue;
    if (req.topic !== undefined && e.type === "m.room.topic" && e.state_key === "") continue;
    out.push(state(e.type, e.content, e.state_key));
  }
  if (req.name !== undefined) out.push(state("m.room.name", { name: req.name }));
  if (req.topic !== undefined) {
    out.push(state("m.room.topic", { topic: req.topic, "m.topic": { "m.text": [{ body: req.topic, mimetype: "text/plain" }] } }));
  }
  for (const invitee of req.invite) {
    if (!isLocal(env, invitee)) continue;
    const content: JsonObject = { membership: "invite", ...(await memberProfile(env.DB, invitee)) };
    if (req.isDirect) content.is_direct = true;
    out.push({ type: "m.room.member", state_key: invitee, sender: creator, content });
  }
  return out;
}

/** Tries at a room ID whose create event is not taken, and how far back (ms) a retry may move its timestamp. */
const CREATE_ATTEMPTS = 8;
const CREATE_TS_JITTER_MS = 5_000;

export async function createRoom(env: Env, requester: Requester, body: Record<string, unknown>): Promise<{ room_id: string }> {
  const req = parseCreateRoomBody(body);
  const creator = requester.userId;
  const server = serverName(env);
  for (const u of req.invite) {
    // Application services are asked about unknown users in their namespaces (src/appservices/client.ts).
    if (isLocal(env, u) && !(await localUserExists(env.DB, u)) && !(await queryUserFromAppservices(env, u))) throw notFound(`Unknown user ${u}`);
  }
  const alias = req.aliasLocalpart === undefined ? undefined : `#${req.aliasLocalpart}:${server}`;
  if (alias !== undefined) {
    if (!isValidRoomAlias(alias)) throw badJson(`Invalid room alias ${JSON.stringify(alias)}`);
    checkAliasCreation(env, requester, alias); // application services' alias namespaces: M_EXCLUSIVE
    if (await getAlias(env.DB, alias)) throw matrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
  }

  // trusted_private_chat in v12: invitees become additional creators (deduplicated with the client's).
  const content: JsonObject = { ...req.creationContent };
  if (req.version.privilegedCreators && req.preset === "trusted_private_chat" && req.invite.length > 0) {
    const given = Array.isArray(content.additional_creators) ? (content.additional_creators as string[]) : [];
    content.additional_creators = [...new Set([...given, ...req.invite])];
  }
  const creators = new Set<string>([creator]);
  if (req.version.privilegedCreators && Array.isArray(content.additional_creators)) {
    for (const u of content.additional_creators as JsonValue[]) if (typeof u === "string") creators.add(u);
  }
  const templates = await initialEvents(env, req, creator, creators, alias);
  for (const t of templates) checkEventContent(env, "!placeholder", t.sender, t.type, t.content, t.state_key);

  const keys = await getServerKeys(env);
  const now = Date.now();
  for (let attempt = 0; ; attempt++) {
    // A v12 room ID is the create event's hash: identical create events with the same timestamp collide. The
    // Workers clock stands still between I/O, so simultaneous requests often read the same time; a retry moves
    // the timestamp back by a random amount (a fixed step would collide again with the other retries).
    const ts = attempt === 0 ? now : now - 1 - Math.floor(Math.random() * CREATE_TS_JITTER_MS);
    const { pdu, roomId } = buildCreateEvent({ creator, version: req.version, serverName: server, signingKey: keys.current, content, now: ts });
    if (alias !== undefined && !(await insertAlias(env.DB, alias, roomId, creator))) {
      throw matrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
    }
    const stub = roomStub(env, roomId);
    const results = await stub.createRoom(pdu, roomId, req.version.id, templates);
    const failed = results.find((r) => !r.ok);
    if (failed && !failed.ok) {
      if (alias !== undefined) await deleteAlias(env.DB, alias);
      if (/room already exists/.test(failed.error) && attempt < CREATE_ATTEMPTS - 1) continue;
      throw matrixError(400, "M_INVALID_ROOM_STATE", `The initial state is invalid: ${failed.error.replace(/^(state before event|auth events): /, "")}`);
    }
    if (req.visibility === "public") await setPublished(env.DB, roomId, true);
    await stub.syncDirectory();
    for (const invitee of req.invite) {
      if (isLocal(env, invitee)) continue;
      const inviteContent: JsonObject = { membership: "invite" };
      if (req.isDirect) inviteContent.is_direct = true;
      await federationHooks.remoteInvite(env, { roomId, inviter: creator, invitee, content: inviteContent });
    }
    return { room_id: roomId };
  }
}
