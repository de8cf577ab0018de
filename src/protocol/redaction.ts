/**
 * The redaction algorithm of every room version (https://spec.matrix.org/v1.19/rooms/ → "Redactions").
 *
 * | rules | top-level keys kept                                                            | content changes   |
 * |-------|--------------------------------------------------------------------------------|-------------------|
 * | v1    | event_id type room_id sender state_key content hashes signatures depth         | see below         |
 * |       | prev_events prev_state auth_events origin origin_server_ts membership          |                   |
 * | v6    | as v1                                                                          | aliases: nothing  |
 * | v8    | as v1                                                                          | + join_rules allow|
 * | v9    | as v1                                                                          | + member j_a_v_u_s|
 * | v11   | v1 minus origin, membership, prev_state                                        | see below         |
 *
 * Content kept, v1: member `membership`; create `creator`; join_rules `join_rule`; power_levels `ban events
 * events_default kick redact state_default users users_default`; aliases `aliases`; history_visibility
 * `history_visibility`. v6 drops the `m.room.aliases` exception. v8 adds join_rules `allow`. v9 adds member
 * `join_authorised_via_users_server`. v11 (MSC2176): create keeps all of content; power_levels also keeps
 * `invite`; member also keeps `third_party_invite.signed` (only that key of `third_party_invite`);
 * `m.room.redaction` keeps `redacts`. Room version 12 uses the v11 rules unchanged.
 *
 * `unsigned` is always removed: it is not on any list. (The client-server API lets a server put
 * `redacted_because` into `unsigned` when serving a redacted event to clients; that is a presentation concern
 * for the caller, not part of the algorithm, whose output is what gets hashed and signed.)
 *
 * The content rules depend on `type` alone, whether or not the event has a `state_key`, as the spec states.
 */

import type { RedactionRules, RoomVersion } from "./room-versions";

const TOP_LEVEL_V1: ReadonlySet<string> = new Set([
  "event_id",
  "type",
  "room_id",
  "sender",
  "state_key",
  "content",
  "hashes",
  "signatures",
  "depth",
  "prev_events",
  "prev_state",
  "auth_events",
  "origin",
  "origin_server_ts",
  "membership",
]);

const TOP_LEVEL_V11: ReadonlySet<string> = new Set([
  "event_id",
  "type",
  "room_id",
  "sender",
  "state_key",
  "content",
  "hashes",
  "signatures",
  "depth",
  "prev_events",
  "auth_events",
  "origin_server_ts",
]);

/** Content keys kept per event type; `"all"` keeps the whole content. */
type ContentRules = Readonly<Record<string, readonly string[] | "all">>;

const POWER_LEVELS_V1 = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

const CONTENT_V1: ContentRules = {
  "m.room.member": ["membership"],
  "m.room.create": ["creator"],
  "m.room.join_rules": ["join_rule"],
  "m.room.power_levels": POWER_LEVELS_V1,
  "m.room.aliases": ["aliases"],
  "m.room.history_visibility": ["history_visibility"],
};

const CONTENT_V6: ContentRules = {
  "m.room.member": ["membership"],
  "m.room.create": ["creator"],
  "m.room.join_rules": ["join_rule"],
  "m.room.power_levels": POWER_LEVELS_V1,
  "m.room.history_visibility": ["history_visibility"],
};

const CONTENT_V8: ContentRules = { ...CONTENT_V6, "m.room.join_rules": ["join_rule", "allow"] };

const CONTENT_V9: ContentRules = { ...CONTENT_V8, "m.room.member": ["membership", "join_authorised_via_users_server"] };

const CONTENT_V11: ContentRules = {
  // third_party_invite is handled specially: only its `signed` key survives.
  "m.room.member": ["membership", "join_authorised_via_users_server"],
  "m.room.create": "all",
  "m.room.join_rules": ["join_rule", "allow"],
  "m.room.power_levels": [
    "ban",
    "events",
    "events_default",
    "invite",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
  ],
  "m.room.history_visibility": ["history_visibility"],
  "m.room.redaction": ["redacts"],
};

interface Algorithm {
  readonly topLevel: ReadonlySet<string>;
  readonly content: ContentRules;
  readonly keepThirdPartyInviteSigned: boolean;
}

const ALGORITHMS: Readonly<Record<RedactionRules, Algorithm>> = {
  v1: { topLevel: TOP_LEVEL_V1, content: CONTENT_V1, keepThirdPartyInviteSigned: false },
  v6: { topLevel: TOP_LEVEL_V1, content: CONTENT_V6, keepThirdPartyInviteSigned: false },
  v8: { topLevel: TOP_LEVEL_V1, content: CONTENT_V8, keepThirdPartyInviteSigned: false },
  v9: { topLevel: TOP_LEVEL_V1, content: CONTENT_V9, keepThirdPartyInviteSigned: false },
  v11: { topLevel: TOP_LEVEL_V11, content: CONTENT_V11, keepThirdPartyInviteSigned: true },
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The top-level keys the given room version's redaction keeps (for tests and for callers filtering fields). */
export function redactionKeptTopLevelKeys(roomVersion: RoomVersion): ReadonlySet<string> {
  return ALGORITHMS[roomVersion.redaction].topLevel;
}

/** The content keys kept for `type` under the given room version (`"all"` for the whole content). */
export function redactionKeptContentKeys(type: string, roomVersion: RoomVersion): readonly string[] | "all" {
  const rules = ALGORITHMS[roomVersion.redaction].content;
  return Object.hasOwn(rules, type) ? rules[type]! : [];
}

/**
 * Returns the redacted form of `event` under `roomVersion`'s rules: a new object (the input is not modified)
 * that shares kept nested values with the input. `content` is always present in the result (as `{}` when the
 * input had none or a non-object one, matching the other implementations), and `unsigned` is removed.
 */
export function redactEvent<T extends object>(event: T, roomVersion: RoomVersion): Partial<T> & { content: Record<string, unknown> } {
  const algo = ALGORITHMS[roomVersion.redaction];
  const src = event as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key in src) {
    if (Object.hasOwn(src, key) && algo.topLevel.has(key) && key !== "content") out[key] = src[key];
  }
  const content = isObject(src.content) ? src.content : {};
  const type = src.type;
  const rule = typeof type === "string" && Object.hasOwn(algo.content, type) ? algo.content[type]! : undefined;
  let newContent: Record<string, unknown>;
  if (rule === "all") {
    newContent = { ...content };
  } else {
    newContent = {};
    if (rule) {
      for (const key of rule) {
        if (Object.hasOwn(content, key)) newContent[key] = content[key];
      }
    }
    if (algo.keepThirdPartyInviteSigned && type === "m.room.member") {
      const tpi = content.third_party_invite;
      if (isObject(tpi) && Object.hasOwn(tpi, "signed")) newContent.third_party_invite = { signed: tpi.signed };
    }
  }
  out.content = newContent;
  return out as Partial<T> & { content: Record<string, unknown> };
}
