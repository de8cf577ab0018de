/**
 * Invites across servers (https://spec.matrix.org/v1.19/server-server-api/#inviting-to-a-room).
 *
 * Receiving (`PUT /v2/invite/{roomId}/{eventId}`, and v1 for rooms v1–v2): check the event (shape, signatures,
 * hash, for one of our users), the room version, the `invite_room_state`; add our signature; store the invite
 * as an out-of-band membership unless this server is in the room already (then it arrives again through
 * `/send`), which tells the invitee's UserDO so that /sync shows it with the stripped state.
 *
 * Sending (`federationHooks.remoteInvite`): the inviter's RoomDO builds and signs the invite without persisting
 * it; the invitee's server co-signs it; we check its signature and persist the co-signed event, which then goes
 * to every server in the room (the invitee's included) like any event we originate.
 */
import type { Env } from "../env";
import type { JsonObject, PDU } from "../protocol/events";
import { getConfig } from "../config";
import { MatrixError } from "../http/errors";
import { roomVersion as lookupRoomVersion, type RoomVersion } from "../protocol/room-versions";
import { computeEventId, toFederationPdu } from "../protocol/event-id";
import { serverNameOf } from "../protocol/identifiers";
import { verifyEventSignature } from "../protocol/hashes";
import type { RemoteInviteRequest } from "../rooms/federation-hooks";
import { FederationClient, FederationRequestError, seg } from "./client";
import { KeyStore } from "./keys";
import { checkPdus, isCreateEventOf } from "./pdu-checks";
import { serverAllowedByAcl } from "./acl";
import { checkMembershipShape, checkSignaturesAndHash, signAsUs } from "./resident";

function roomStub(env: Env, roomId: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId));
}

const invalid = (msg: string) => new MatrixError(400, "M_INVALID_PARAM", msg);

/** A stripped state event (https://spec.matrix.org/v1.19/client-server-api/#stripped-state). */
export interface StrippedEvent {
  type: string;
  state_key: string;
  sender: string;
  content: JsonObject;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The stripped form of a state event (full PDU or already stripped); undefined when it is not one. */
export function strip(e: unknown): StrippedEvent | undefined {
  if (!isObject(e) || typeof e.type !== "string" || typeof e.state_key !== "string" || typeof e.sender !== "string" || !isObject(e.content)) {
    return undefined;
  }
  return { type: e.type, state_key: e.state_key, sender: e.sender, content: e.content as JsonObject };
}

/**
 * Checks `invite_room_state` / `knock_room_state` and returns it stripped. Since v1.16 the entries are PDUs of
 * the room (the create event among them), checked like any PDU; older servers send stripped events, which are
 * tolerated in room versions 1–11 (a warning) and refused from v12 on (`M_MISSING_PARAM` / `M_INVALID_PARAM`).
 */
export async function checkStrippedState(env: Env, raw: unknown, version: RoomVersion, roomId: string, field: string): Promise<StrippedEvent[]> {
  if (raw === undefined || raw === null) {
    if (version.roomIdFromCreateEvent) throw new MatrixError(400, "M_MISSING_PARAM", `${field} must include the room's m.room.create event`);
    return [];
  }
  if (!Array.isArray(raw)) throw invalid(`${field} must be a list`);
  const entries = raw.slice(0, 50);
  const full = entries.filter((e) => isObject(e) && isObject(e.signatures) && isObject(e.hashes));
  const strict = version.roomIdFromCreateEvent;
  if (full.length < entries.length) {
    if (strict) throw invalid(`${field} entries must be events formatted for room version ${version.id}`);
    console.warn(`federation: ${field} for ${roomId} carries stripped events (a server from before spec v1.16)`);
  }
  if (full.length > 0) {
    const checked = await checkPdus(full, version, roomId, new KeyStore(env));
    const bad = checked.find((c) => !c.ok);
    if (bad && !bad.ok) {
      if (strict) throw invalid(`${field}: ${bad.error}`);
      console.warn(`federation: ${field} for ${roomId}: ${bad.error}`);
    }
  }
  const stripped = entries.map(strip).filter((e): e is StrippedEvent => e !== undefined);
  const hasCreate = entries.some((e) => isObject(e) && e.type === "m.room.create" && e.state_key === "");
  if (strict && !hasCreate) throw new MatrixError(400, "M_MISSING_PARAM", `${field} must include the room's m.room.create event`);
  if (strict) {
    const create = full.find((e) => e.type === "m.room.create" && e.state_key === "") as PDU | undefined;
    if (create && !isCreateEventOf(create, version, roomId)) throw invalid(`${field}: the m.room.create event is not this room's`);
  }
  return stripped;
}

// -------------------------------------------------------------------------------------------------------------
// Receiving

/**
 * An invite from `origin` for one of our users: checked, co-signed and (when this server is not in the room)
 * stored for the invitee. Returns the co-signed event in federation format.
 */
export async function receiveInvite(
  env: Env,
  origin: string,
  roomId: string,
  eventId: string,
  body: { room_version: unknown; event: unknown; invite_room_state: unknown },
): Promise<PDU> {
  const ours = getConfig(env).serverName;
  if (typeof body.room_version !== "string") throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'room_version'");
  const version = lookupRoomVersion(body.room_version);
  if (!version) {
    throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Room version ${body.room_version} is not supported by this server`, {
      room_version: body.room_version,
    });
  }
  const pdu = checkMembershipShape(body.event, { origin, roomId, eventId, membership: "invite", version, ours });
  const invitee = pdu.state_key!;
  const user = await env.DB.prepare("SELECT deactivated FROM users WHERE user_id = ?").bind(invitee).first<{ deactivated: number }>();
  if (!user) throw new MatrixError(404, "M_NOT_FOUND", `Unknown user ${invitee}`);
  if (user.deactivated) throw new MatrixError(403, "M_FORBIDDEN", `${invitee} is deactivated`);
  const stub = roomStub(env, roomId);
  const info = await stub.federationInfo();
  if (info && info.room_version !== version.id) throw invalid(`Room ${roomId} has version ${info.room_version}, not ${version.id}`);
  if (info && !serverAllowedByAcl(origin, info.server_acl === null ? null : JSON.parse(info.server_acl))) {
    throw new MatrixError(403, "M_FORBIDDEN", `${origin} is denied by the room's server ACL`);
  }
  await checkSignaturesAndHash(env, pdu, version, roomId);
  const strippedState = await checkStrippedState(env, body.invite_room_state ?? (pdu.unsigned as JsonObject | undefined)?.invite_room_state, version, roomId, "invite_room_state");
  const signed = await signAsUs(env, pdu, version);
  // In the room already: the invite comes again through /send, as a room event.
  if (!info || info.local_joined === 0) {
    const stored = await stub.fedStoreOutOfBand(roomId, version.id, JSON.stringify(signed), JSON.stringify({ invite_room_state: strippedState }));
    if ("error" in stored) throw invalid(stored.error);
  }
  return toFederationPdu(signed, version);
}

// -------------------------------------------------------------------------------------------------------------
// Sending

/** Whether `server` signed the event with a key we can verify. */
async function signedBy(pdu: PDU, server: string, version: RoomVersion, keys: KeyStore): Promise<boolean> {
  const sigs = (pdu.signatures ?? {})[server];
  if (!sigs) return false;
  for (const keyId of Object.keys(sigs)) {
    if (!keyId.startsWith("ed25519:")) continue;
    const key = await keys.key(server, keyId, pdu.origin_server_ts).catch(() => undefined);
    if (key && verifyEventSignature(pdu, server, keyId, key.publicKey, version)) return true;
  }
  return false;
}

/** Invites a user of another server (`federationHooks.remoteInvite`). */
export async function remoteInvite(env: Env, req: RemoteInviteRequest): Promise<{ event_id: string }> {
  const stub = roomStub(env, req.roomId);
  const info = await stub.federationInfo();
  const version = info ? lookupRoomVersion(info.room_version) : undefined;
  if (!info || !version) throw new MatrixError(404, "M_NOT_FOUND", `Unknown room ${req.roomId}`);
  const built = await stub.fedBuildLocal({ type: "m.room.member", state_key: req.invitee, sender: req.inviter, content: req.content });
  if (!built.ok) throw new MatrixError(403, "M_FORBIDDEN", built.error.replace(/^(state before event|auth events): /, ""));
  const pdu = JSON.parse(built.pdu) as PDU;
  const eventId = computeEventId(pdu, version);
  const server = serverNameOf(req.invitee);
  const inviteRoomState = JSON.parse(await stub.fedStrippedState(req.inviter)) as PDU[];
  const client = new FederationClient(env);
  const event = toFederationPdu(pdu, version);
  let returned: unknown;
  try {
    const res = await client.request<{ event?: unknown }>(server, "PUT", `/_matrix/federation/v2/invite/${seg(req.roomId)}/${seg(eventId)}`, {
      room_version: version.id,
      event,
      invite_room_state: inviteRoomState,
    });
    returned = res.event;
  } catch (e) {
    // Servers from before the v2 API, for the room versions v1 existed for.
    const old = e instanceof FederationRequestError && (e.status === 400 || e.status === 404) && e.errcode !== "M_FORBIDDEN";
    if (!old || (version.id !== "1" && version.id !== "2")) throw remoteInviteError(e, server);
    try {
      const res = await client.request<unknown>(server, "PUT", `/_matrix/federation/v1/invite/${seg(req.roomId)}/${seg(eventId)}`, {
        ...event,
        unsigned: { invite_room_state: inviteRoomState.map(strip) },
      });
      returned = Array.isArray(res) ? (res[1] as { event?: unknown } | undefined)?.event : undefined;
    } catch (e2) {
      throw remoteInviteError(e2, server);
    }
  }
  if (!isObject(returned)) throw new MatrixError(502, "M_UNKNOWN", `${server} did not return the invite`);
  const cosigned = returned as PDU;
  let returnedId: string | undefined;
  try {
    returnedId = computeEventId(cosigned, version);
  } catch {
    returnedId = undefined;
  }
  const keys = new KeyStore(env);
  if (returnedId !== eventId || !(await signedBy(cosigned, server, version, keys)) || !(await signedBy(cosigned, getConfig(env).serverName, version, keys))) {
    throw new MatrixError(502, "M_UNKNOWN", `${server} returned an invite that is not the one sent, or not signed by it`);
  }
  const sent = await stub.fedAcceptLocal(JSON.stringify({ ...pdu, signatures: cosigned.signatures }));
  if (!sent.ok) throw new MatrixError(403, "M_FORBIDDEN", sent.error.replace(/^(state before event|auth events): /, ""));
  await stub.syncDirectory().catch(() => {});
  return { event_id: sent.event_id };
}

/** A failed invite request as the client should see it: the remote's refusal, or 502 when it could not be reached. */
function remoteInviteError(e: unknown, server: string): MatrixError {
  if (e instanceof FederationRequestError && e.status !== undefined && e.status >= 400 && e.status < 500) {
    return new MatrixError(e.status === 404 ? 404 : 403, e.status === 404 ? "M_NOT_FOUND" : "M_FORBIDDEN", `${server} refused the invite: ${e.message}`);
  }
  return new MatrixError(502, "M_UNKNOWN", `Could not reach ${server}: ${(e as Error).message}`);
}
