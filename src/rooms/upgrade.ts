/**
 * POST /rooms/{roomId}/upgrade (https://spec.matrix.org/v1.19/client-server-api/#room-upgrades; the reference
 * server's RoomCreationHandler.upgrade_room is the model). docs/room-upgrades.md tells the whole story.
 *
 * 1. Check the version and the requester's power to send `m.room.tombstone` in the old room (403 otherwise),
 *    and claim the old room for this upgrade (durable-objects/room/upgrade.ts: never two replacement rooms).
 * 2. Build the tombstone (not persisted yet) and the replacement room's create event: `predecessor` names the
 *    old room, and for versions before 12 the tombstone's event ID too; the room type and `m.federate: false`
 *    carry over; v12 creators are the upgrader plus `additional_creators`.
 * 3. Create the replacement room with the room creation code (create-room.ts) from the copied state: join
 *    rules, history visibility, guest access, name, topic, avatar, encryption, server ACL, power levels (the
 *    upgrader raised to what copying needs), space children and parents; then the old room's bans.
 * 4. Persist the tombstone in the old room; move the local aliases and the canonical alias; move the
 *    directory listing; restrict the old room's power levels (events_default and invite to
 *    max(50, users_default + 1)) and give the new room the old power levels proper.
 */
import type { Env } from "../env";
import type { Requester } from "../http/app";
import type { JsonObject, JsonValue, PDU } from "../protocol/events";
import { badJson, forbidden, notFound, unsupportedRoomVersion } from "../http/errors";
import { isValidUserId } from "../protocol/identifiers";
import { computeEventId, generateRoomIdLegacy } from "../protocol/event-id";
import { roomVersion } from "../protocol/room-versions";
import { getServerKeys } from "../server-keys";
import type { EventTemplate } from "../../durable-objects/room/room";
import type { UpgradeSnapshot } from "../../durable-objects/room/upgrade";
import { buildCreateEvent } from "./create-event";
import { creatableRoomVersion, initialEvents, parseCreateRoomBody } from "./create-room";
import { isPublished, setPublished } from "./directory-store";
import { checkEventContent, sendState } from "./send";
import { isLocal, matrixError, roomStub, serverName } from "./common";

/** How long a repeated request waits for the same user's upgrade in progress. */
const WAIT_FOR_RUNNING_MS = 30_000;
const POLL_MS = 200;

export async function upgradeRoom(env: Env, requester: Requester, oldRoomId: string, body: Record<string, unknown>): Promise<{ replacement_room: string }> {
  if (body.new_version === undefined) throw matrixError(400, "M_MISSING_PARAM", "Missing params: ['new_version']");
  if (typeof body.new_version !== "string") throw badJson("'new_version' must be a string");
  const version = creatableRoomVersion(body.new_version);
  if (!version) throw unsupportedRoomVersion(body.new_version);
  let additional: string[] = [];
  if (version.privilegedCreators && body.additional_creators !== undefined && body.additional_creators !== null) {
    const a = body.additional_creators;
    if (!Array.isArray(a) || !a.every((u) => typeof u === "string" && isValidUserId(u))) {
      throw badJson("'additional_creators' must be a list of user IDs");
    }
    additional = [...new Set(a as string[])].filter((u) => u !== requester.userId);
  }

  const userId = requester.userId;
  const oldStub = roomStub(env, oldRoomId);
  const snapJson = await oldStub.upgradeSnapshot(userId);
  if (snapJson === null) throw notFound(`Unknown room ${oldRoomId}`);
  const snap = JSON.parse(snapJson) as UpgradeSnapshot;
  if (!snap.allowed) throw forbidden("You don't have permission to upgrade the room");

  const claim = await oldStub.upgradeClaim(userId);
  if (claim.status === "done") return { replacement_room: claim.replacement_room };
  if (claim.status === "in_progress") {
    if (!claim.same_user) throw matrixError(400, "M_UNKNOWN", "An upgrade for this room is currently in progress");
    return { replacement_room: await waitForRunningUpgrade(oldStub, userId) };
  }
  try {
    const replacement = await performUpgrade(env, requester, oldRoomId, snap, version, additional);
    await oldStub.upgradeFinish(userId, replacement);
    return { replacement_room: replacement };
  } catch (e) {
    await oldStub.upgradeFinish(userId, null);
    throw e;
  }
}

/** A second request of the same user while the first runs answers with the first one's room. */
async function waitForRunningUpgrade(oldStub: ReturnType<typeof roomStub>, userId: string): Promise<string> {
  const deadline = Date.now() + WAIT_FOR_RUNNING_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    const r = await oldStub.upgradeResult(userId);
    if (r.done) {
      if (r.replacement_room) return r.replacement_room;
      throw matrixError(400, "M_UNKNOWN", "The upgrade of this room that was in progress failed; try again");
    }
  }
  throw matrixError(400, "M_UNKNOWN", "An upgrade for this room is currently in progress");
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Integers given as strings (allowed before room version 10) become integers, as the reference server does. */
function asInt(v: JsonValue | undefined): JsonValue | undefined {
  if (typeof v === "string" && /^\s*[+-]?\d+\s*$/.test(v)) return Number.parseInt(v, 10);
  return v;
}

/** A deep copy of power levels content with string integers made integers. */
export function fixupPowerLevels(content: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(content)) {
    if (isObject(v)) {
      const inner: JsonObject = {};
      for (const [ik, iv] of Object.entries(v)) inner[ik] = (isObject(iv) ? structuredClone(iv) : asInt(iv)) as JsonValue;
      out[k] = inner;
    } else {
      out[k] = (Array.isArray(v) ? structuredClone(v) : asInt(v)) as JsonValue;
    }
  }
  return out;
}

function intOr(v: JsonValue | undefined, dflt: number): number {
  return typeof v === "number" && Number.isInteger(v) ? v : dflt;
}

function withoutUsers(content: JsonObject, users: Iterable<string>): JsonObject {
  if (!isObject(content.users)) return content;
  const map: JsonObject = { ...content.users };
  for (const u of users) delete map[u];
  return { ...content, users: map };
}

async function performUpgrade(
  env: Env,
  requester: Requester,
  oldRoomId: string,
  snap: UpgradeSnapshot,
  version: NonNullable<ReturnType<typeof creatableRoomVersion>>,
  additional: string[],
): Promise<string> {
  const userId = requester.userId;
  const server = serverName(env);
  const v12 = version.privilegedCreators;
  const creators = new Set([userId, ...(v12 ? additional : [])]);

  // Creation content: predecessor, room type, non-federation, creators.
  const content: JsonObject = { predecessor: { room_id: oldRoomId } };
  if (v12 && additional.length) content.additional_creators = additional;
  if (snap.create_content["m.federate"] === false) content["m.federate"] = false;
  if (snap.create_content.type !== undefined) content.type = snap.create_content.type;

  // Power levels: the old ones, with the upgrader raised to what copying the state and bans needs; the old
  // ones proper are restored once the room is populated. v12 creators are never listed.
  const oldPl = snap.state.find((s) => s.type === "m.room.power_levels")?.content;
  let initialPl: JsonObject | undefined;
  let finalPl: JsonObject | undefined;
  if (oldPl) {
    finalPl = fixupPowerLevels(oldPl);
    initialPl = fixupPowerLevels(oldPl);
    const events = isObject(initialPl.events) ? Object.values(initialPl.events).map((v) => intOr(v, 0)) : [];
    const needed = Math.max(intOr(initialPl.state_default, 50), intOr(initialPl.ban, 50), 0, ...events);
    const users: JsonObject = isObject(initialPl.users) ? initialPl.users : {};
    if (intOr(users[userId], intOr(initialPl.users_default, 0)) < needed) users[userId] = needed;
    initialPl.users = users;
    if (v12) {
      initialPl = withoutUsers(initialPl, creators);
      finalPl = withoutUsers(finalPl, creators);
    }
  }
  const initialState = snap.state.map((s) => (s.type === "m.room.power_levels" ? { ...s, content: initialPl! } : s));
  const req = parseCreateRoomBody({ preset: "private_chat", room_version: version.id, creation_content: content, initial_state: initialState });
  const templates: EventTemplate[] = await initialEvents(env, req, userId, creators, undefined);
  for (const ban of snap.bans) {
    if (creators.has(ban.user_id)) continue; // a creator cannot be banned in a v12 room they create
    templates.push({ type: "m.room.member", state_key: ban.user_id, sender: userId, content: { ...ban.content, membership: "ban" } });
  }
  for (const t of templates) checkEventContent(env, "!placeholder", t.sender, t.type, t.content, t.state_key);

  // The tombstone is built (and its auth checked) before the new room exists; it is persisted afterwards.
  const oldStub = roomStub(env, oldRoomId);
  const keys = await getServerKeys(env);
  const tombstoneFor = async (replacement: string) => {
    const built = await oldStub.fedBuildLocal({
      type: "m.room.tombstone", state_key: "", sender: userId,
      content: { body: "This room has been replaced", replacement_room: replacement },
    });
    if (!built.ok) throw forbidden(`You don't have permission to upgrade the room: ${built.error}`);
    return JSON.parse(built.pdu) as PDU;
  };
  let newRoomId: string;
  let createPdu: PDU;
  let tombstone: PDU;
  if (version.roomIdFromCreateEvent) {
    ({ pdu: createPdu, roomId: newRoomId } = buildCreateEvent({ creator: userId, version, serverName: server, signingKey: keys.current, content }));
    tombstone = await tombstoneFor(newRoomId);
  } else {
    newRoomId = generateRoomIdLegacy(server);
    tombstone = await tombstoneFor(newRoomId);
    const oldVersion = roomVersion(snap.room_version)!;
    (content.predecessor as JsonObject).event_id = computeEventId(tombstone, oldVersion);
    ({ pdu: createPdu } = buildCreateEvent({ creator: userId, version, serverName: server, signingKey: keys.current, content, roomId: newRoomId }));
  }

  const newStub = roomStub(env, newRoomId);
  const results = await newStub.createRoom(createPdu, newRoomId, version.id, templates);
  const failed = results.find((r) => !r.ok);
  if (failed && !failed.ok) {
    throw matrixError(400, "M_INVALID_ROOM_STATE", `The replacement room could not be created: ${failed.error.replace(/^(state before event|auth events): /, "")}`);
  }
  await newStub.syncDirectory();

  const sent = await oldStub.fedAcceptLocal(JSON.stringify(tombstone));
  if (!sent.ok) throw forbidden(`The tombstone could not be sent: ${sent.error}`);

  await moveAliases(env, requester, oldRoomId, newRoomId, snap.canonical_alias);
  if (await isPublished(env.DB, oldRoomId)) {
    await setPublished(env.DB, oldRoomId, false);
    await setPublished(env.DB, newRoomId, true);
  }

  // Stop people talking in the old room (failure here does not undo the upgrade, as the reference server).
  if (oldPl) {
    const restricted = fixupPowerLevels(oldPl);
    const level = Math.max(intOr(restricted.users_default, 0) + 1, 50);
    let changed = false;
    for (const k of ["events_default", "invite"]) {
      if (intOr(restricted[k], 0) < level) {
        restricted[k] = level;
        changed = true;
      }
    }
    if (changed) {
      try {
        await sendState(env, requester, oldRoomId, "m.room.power_levels", "", restricted);
      } catch (e) {
        console.warn(`upgrade: could not restrict the power levels of ${oldRoomId}: ${String((e as Error)?.message ?? e)}`);
      }
    }
  }
  if (finalPl) await sendState(env, requester, newRoomId, "m.room.power_levels", "", finalPl);
  return newRoomId;
}

/**
 * Local aliases follow the room; the canonical alias event of the old room loses the local aliases, the new
 * room's names them (as the reference server does).
 */
async function moveAliases(env: Env, requester: Requester, oldRoomId: string, newRoomId: string, canonical: JsonObject | null): Promise<void> {
  await env.DB.prepare("UPDATE room_aliases SET room_id = ? WHERE room_id = ?").bind(newRoomId, oldRoomId).run();
  if (!canonical) return;
  const oldContent: JsonObject = structuredClone(canonical);
  const newContent: JsonObject = {};
  if (typeof canonical.alias === "string" && isLocal(env, canonical.alias)) {
    newContent.alias = canonical.alias;
    delete oldContent.alias;
  }
  if (Array.isArray(canonical.alt_aliases)) {
    const keep = canonical.alt_aliases.filter((a) => !(typeof a === "string" && isLocal(env, a)));
    const moved = canonical.alt_aliases.filter((a) => typeof a === "string" && isLocal(env, a));
    if (moved.length) newContent.alt_aliases = moved;
    if (keep.length) oldContent.alt_aliases = keep;
    else delete oldContent.alt_aliases;
  }
  for (const [roomId, c] of [[oldRoomId, oldContent], [newRoomId, newContent]] as const) {
    try {
      await sendState(env, requester, roomId, "m.room.canonical_alias", "", c);
    } catch (e) {
      console.warn(`upgrade: could not update the canonical alias of ${roomId}: ${String((e as Error)?.message ?? e)}`);
    }
  }
}
