import { describe, expect, it } from "vitest";
import { redactEvent, redactionKeptContentKeys, redactionKeptTopLevelKeys } from "../../src/protocol/redaction";
import { ROOM_VERSIONS, type RoomVersion } from "../../src/protocol/room-versions";

const v = (id: string): RoomVersion => ROOM_VERSIONS[id]!;
const ALL_VERSIONS = Object.keys(ROOM_VERSIONS);

/** Every top-level key any version keeps, plus some that no version keeps. */
const fullEvent = (type: string, content: Record<string, unknown>) => ({
  event_id: "$e:x",
  type,
  room_id: "!r:x",
  sender: "@a:x",
  state_key: "",
  content,
  hashes: { sha256: "h" },
  signatures: { x: { "ed25519:1": "s" } },
  depth: 5,
  prev_events: ["$p"],
  prev_state: [],
  auth_events: ["$a"],
  origin: "x",
  origin_server_ts: 10,
  membership: "join",
  unsigned: { age: 1, redacted_because: {} },
  redacts: "$t",
  age_ts: 3,
  custom: "x",
});

const TOP_V1 = [
  "auth_events",
  "content",
  "depth",
  "event_id",
  "hashes",
  "membership",
  "origin",
  "origin_server_ts",
  "prev_events",
  "prev_state",
  "room_id",
  "sender",
  "signatures",
  "state_key",
  "type",
];
const TOP_V11 = TOP_V1.filter((k) => !["origin", "membership", "prev_state"].includes(k));

describe("top-level keys", () => {
  it.each(ALL_VERSIONS)("room v%s", (rv) => {
    const expected = Number(rv) >= 11 ? TOP_V11 : TOP_V1;
    const out = redactEvent(fullEvent("m.room.message", { body: "x" }), v(rv));
    expect(Object.keys(out).sort()).toEqual(expected);
    expect([...redactionKeptTopLevelKeys(v(rv))].sort()).toEqual(expected);
    // never kept: unsigned (incl. redacted_because), redacts at top level, age_ts, unknown keys
    for (const k of ["unsigned", "redacts", "age_ts", "custom"]) expect(out).not.toHaveProperty(k);
  });
});

/** The content of each type with every key any version keeps, plus an extra one. */
const CONTENTS: Record<string, Record<string, unknown>> = {
  "m.room.member": {
    membership: "join",
    join_authorised_via_users_server: "@b:y",
    third_party_invite: { signed: { mxid: "@a:x", token: "t", signatures: {} }, display_name: "A" },
    displayname: "A",
    avatar_url: "mxc://x/y",
  },
  "m.room.create": { creator: "@a:x", room_version: "1", "m.federate": false, predecessor: { room_id: "!o:x" } },
  "m.room.join_rules": { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: "!o:x" }], other: 1 },
  "m.room.power_levels": {
    ban: 50,
    events: { "m.room.name": 50 },
    events_default: 0,
    invite: 0,
    kick: 50,
    redact: 50,
    state_default: 50,
    users: { "@a:x": 100 },
    users_default: 0,
    notifications: { room: 50 },
  },
  "m.room.aliases": { aliases: ["#a:x"], other: 1 },
  "m.room.history_visibility": { history_visibility: "shared", other: 1 },
  "m.room.redaction": { redacts: "$t", reason: "spam" },
  "m.room.message": { body: "hello", msgtype: "m.text" },
  "m.room.topic": { topic: "t" },
  "m.room.name": { name: "n" },
};

const PL_V1 = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

/** Expected kept content keys, per rules, written out independently of the implementation. */
const EXPECTED: Record<string, Record<string, string[] | "all">> = {
  v1: {
    "m.room.member": ["membership"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["join_rule"],
    "m.room.power_levels": PL_V1,
    "m.room.aliases": ["aliases"],
    "m.room.history_visibility": ["history_visibility"],
  },
  v6: {
    "m.room.member": ["membership"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["join_rule"],
    "m.room.power_levels": PL_V1,
    "m.room.history_visibility": ["history_visibility"],
  },
  v8: {
    "m.room.member": ["membership"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["allow", "join_rule"],
    "m.room.power_levels": PL_V1,
    "m.room.history_visibility": ["history_visibility"],
  },
  v9: {
    "m.room.member": ["join_authorised_via_users_server", "membership"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["allow", "join_rule"],
    "m.room.power_levels": PL_V1,
    "m.room.history_visibility": ["history_visibility"],
  },
  v11: {
    "m.room.member": ["join_authorised_via_users_server", "membership", "third_party_invite"],
    "m.room.create": "all",
    "m.room.join_rules": ["allow", "join_rule"],
    "m.room.power_levels": [...PL_V1, "invite"].sort(),
    "m.room.history_visibility": ["history_visibility"],
    "m.room.redaction": ["redacts"],
  },
};

const RULES_BY_VERSION: Record<string, keyof typeof EXPECTED> = {
  "1": "v1",
  "2": "v1",
  "3": "v1",
  "4": "v1",
  "5": "v1",
  "6": "v6",
  "7": "v6",
  "8": "v8",
  "9": "v9",
  "10": "v9",
  "11": "v11",
  "12": "v11",
};

describe("content keys per room version and event type", () => {
  it("maps every room version to the spec's rules", () => {
    for (const rv of ALL_VERSIONS) expect(v(rv).redaction).toBe(RULES_BY_VERSION[rv]);
  });

  const cases = ALL_VERSIONS.flatMap((rv) => Object.keys(CONTENTS).map((type) => [rv, type] as const));
  it.each(cases)("room v%s, %s", (rv, type) => {
    const rules = EXPECTED[RULES_BY_VERSION[rv]!]!;
    const expected = Object.hasOwn(rules, type) ? rules[type]! : [];
    const content = CONTENTS[type]!;
    const out = redactEvent(fullEvent(type, content), v(rv));
    if (expected === "all") {
      expect(out.content).toEqual(content);
    } else {
      expect(Object.keys(out.content).sort()).toEqual(expected);
      for (const k of expected) {
        if (k === "third_party_invite") continue;
        expect(out.content[k]).toEqual(content[k]);
      }
    }
    const declared = redactionKeptContentKeys(type, v(rv));
    if (expected === "all") expect(declared).toBe("all");
    else {
      // third_party_invite (v11+) is special-cased (only its `signed` key), so it is not in the declared list.
      const special = type === "m.room.member" && RULES_BY_VERSION[rv] === "v11" ? ["third_party_invite"] : [];
      expect([...(declared as string[]), ...special].sort()).toEqual(expected);
    }
  });
});

describe("details", () => {
  it("v11+ keeps only `signed` of third_party_invite", () => {
    for (const rv of ["11", "12"]) {
      const out = redactEvent(fullEvent("m.room.member", CONTENTS["m.room.member"]!), v(rv));
      expect(out.content.third_party_invite).toEqual({ signed: { mxid: "@a:x", token: "t", signatures: {} } });
    }
  });

  it("v11+ drops third_party_invite without `signed` or when it is not an object", () => {
    for (const tpi of [{ display_name: "A" }, "x", null, ["signed"]]) {
      const out = redactEvent(fullEvent("m.room.member", { membership: "invite", third_party_invite: tpi }), v("11"));
      expect(out.content).toEqual({ membership: "invite" });
    }
  });

  it("v1–v10 drop third_party_invite entirely", () => {
    const out = redactEvent(fullEvent("m.room.member", CONTENTS["m.room.member"]!), v("10"));
    expect(out.content).not.toHaveProperty("third_party_invite");
  });

  it("applies content rules by type regardless of state_key", () => {
    const { state_key: _sk, ...noStateKey } = fullEvent("m.room.power_levels", CONTENTS["m.room.power_levels"]!);
    expect(Object.keys(redactEvent(noStateKey, v("1")).content).sort()).toEqual(PL_V1);
  });

  it("keeps values by reference and does not mutate the input", () => {
    const event = fullEvent("m.room.power_levels", CONTENTS["m.room.power_levels"]!);
    const snapshot = JSON.parse(JSON.stringify(event)) as unknown;
    const out = redactEvent(event, v("12"));
    expect(event).toEqual(snapshot);
    expect(out.content.users).toBe(event.content.users);
    expect(out.content).not.toBe(event.content);
  });

  it("always produces a content object", () => {
    expect(redactEvent({ type: "m.room.message" }, v("1")).content).toEqual({});
    expect(redactEvent({ type: "m.room.create", content: "nope" }, v("12")).content).toEqual({});
    expect(redactEvent({ type: "m.room.create", content: [1] }, v("11")).content).toEqual({});
  });

  it("is idempotent", () => {
    for (const rv of ALL_VERSIONS) {
      for (const type of Object.keys(CONTENTS)) {
        const once = redactEvent(fullEvent(type, CONTENTS[type]!), v(rv));
        expect(redactEvent(once, v(rv))).toEqual(once);
      }
    }
  });

  it("ignores inherited properties", () => {
    const proto = { origin: "evil" };
    const event = Object.assign(Object.create(proto) as object, { type: "m.room.message", content: {} });
    expect(redactEvent(event, v("1"))).toEqual({ type: "m.room.message", content: {} });
  });

  it("does not treat content types with prototype names as special", () => {
    expect(redactEvent({ type: "constructor", content: { a: 1 } }, v("1")).content).toEqual({});
    expect(redactEvent({ type: "__proto__", content: { a: 1 } }, v("11")).content).toEqual({});
  });
});
