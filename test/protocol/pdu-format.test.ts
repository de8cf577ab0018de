import { describe, expect, it } from "vitest";
import { roomIdFromCreateEvent } from "../../src/protocol/event-id";
import { signEvent } from "../../src/protocol/hashes";
import { MatrixIdError } from "../../src/protocol/identifiers";
import {
  MAX_PDU_BYTES,
  checkPduFormat,
  requiredSignatureServers,
  type PduFormatResult,
} from "../../src/protocol/pdu-format";
import { ROOM_VERSIONS, type RoomVersion } from "../../src/protocol/room-versions";
import { generateSigningKey } from "../../src/protocol/signing";

const v = (id: string): RoomVersion => ROOM_VERSIONS[id]!;
const key = generateSigningKey("k");
const H1 = "RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438"; // URL-safe (has '_')
const H3 = "RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438"; // standard (has '/')
const V12_ROOM = "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ";

/** A valid PDU for the room version, signed so it has realistic hashes/signatures. */
function pdu(rv: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const version = v(rv);
  const ref = (id: string) => (version.eventFormat === "v1" ? [`$${id}:x`, { sha256: "abc" }] : version.eventIdFormat === "v3" ? `$${H3}` : `$${H1}`);
  const base: Record<string, unknown> = {
    type: "m.room.message",
    sender: "@alice:x",
    room_id: version.roomIdFromCreateEvent ? V12_ROOM : "!room:x",
    content: { body: "hi" },
    origin_server_ts: 1700000000000,
    depth: 10,
    prev_events: [ref("p")],
    auth_events: [ref("a1"), ref("a2")],
    ...(version.eventFormat === "v1" ? { event_id: "$ev:x" } : {}),
  };
  const signed = signEvent(base, "x", key, version) as Record<string, unknown>;
  return { ...signed, ...overrides };
}

const without = (obj: Record<string, unknown>, k: string) => {
  const copy = { ...obj };
  delete copy[k];
  return copy;
};

function expectFail(r: PduFormatResult, reason: RegExp) {
  expect(r.ok).toBe(false);
  if (!r.ok) expect(r.reason).toMatch(reason);
}

const ALL = Object.keys(ROOM_VERSIONS);

describe("valid PDUs", () => {
  it.each(ALL)("room v%s", (rv) => {
    expect(checkPduFormat(pdu(rv), v(rv))).toEqual({ ok: true });
    expect(checkPduFormat(pdu(rv, { state_key: "", type: "m.room.topic", unsigned: { age: 1 } }), v(rv))).toEqual({ ok: true });
  });

  it("accepts unknown extra keys and historical senders", () => {
    expect(checkPduFormat(pdu("10", { custom: 1, sender: "@Old User:x" }), v("10")).ok).toBe(true);
  });

  it("accepts a v12 create event without room_id, and rejects one with it", () => {
    const create = signEvent(
      {
        type: "m.room.create",
        state_key: "",
        sender: "@alice:x",
        content: { room_version: "12" },
        origin_server_ts: 1,
        depth: 1,
        prev_events: [],
        auth_events: [],
      },
      "x",
      key,
      v("12"),
    );
    expect(checkPduFormat(create, v("12"))).toEqual({ ok: true });
    expectFail(checkPduFormat({ ...create, room_id: roomIdFromCreateEvent(create) }, v("12")), /create events must not have a room_id/);
    // Before v12, create events need a room_id like any other.
    expectFail(checkPduFormat(create, v("11")), /room_id must be a string/);
    // A non-create (or non-empty state key) m.room.create needs one.
    expectFail(checkPduFormat({ ...create, state_key: "x" }, v("12")), /room_id must be a string/);
  });
});

describe("required fields and types", () => {
  const cases: [string, (p: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
    ["no type", (p) => without(p, "type"), /type must be a string/],
    ["numeric type", (p) => ({ ...p, type: 5 }), /type must be a string/],
    ["long type", (p) => ({ ...p, type: "t".repeat(256) }), /type is longer than 255 bytes/],
    ["long multibyte type", (p) => ({ ...p, type: "é".repeat(128) }), /type is longer than 255 bytes/],
    ["null state_key", (p) => ({ ...p, state_key: null }), /state_key must be a string/],
    ["long state_key", (p) => ({ ...p, state_key: "s".repeat(256) }), /state_key is longer than 255 bytes/],
    ["no sender", (p) => without(p, "sender"), /sender must be a string/],
    ["bad sender", (p) => ({ ...p, sender: "alice" }), /sender: invalid user ID/],
    ["sender without server", (p) => ({ ...p, sender: "@alice" }), /sender: .*missing ':'/],
    ["long sender", (p) => ({ ...p, sender: "@" + "a".repeat(254) + ":x" }), /sender: .*longer than 255/],
    ["no room_id", (p) => without(p, "room_id"), /room_id must be a string/],
    ["bad room_id", (p) => ({ ...p, room_id: "#r:x" }), /room_id: invalid room ID/],
    ["no content", (p) => without(p, "content"), /content must be an object/],
    ["array content", (p) => ({ ...p, content: [] }), /content must be an object/],
    ["no origin_server_ts", (p) => without(p, "origin_server_ts"), /origin_server_ts must be an integer/],
    ["string origin_server_ts", (p) => ({ ...p, origin_server_ts: "1" }), /origin_server_ts must be an integer/],
    ["no depth", (p) => without(p, "depth"), /depth must be an integer/],
    ["float depth", (p) => ({ ...p, depth: 1.5 }), /depth must be an integer/],
    ["negative depth", (p) => ({ ...p, depth: -1 }), /depth must not be negative/],
    ["no hashes", (p) => without(p, "hashes"), /hashes must be an object/],
    ["no sha256", (p) => ({ ...p, hashes: {} }), /hashes.sha256 must be a string/],
    ["no signatures", (p) => without(p, "signatures"), /signatures must be an object/],
    ["bad signatures", (p) => ({ ...p, signatures: { x: "sig" } }), /signatures\["x"\] must be an object/],
    ["bad signature", (p) => ({ ...p, signatures: { x: { "ed25519:1": 1 } } }), /must be a string/],
    ["bad unsigned", (p) => ({ ...p, unsigned: [] }), /unsigned must be an object/],
    ["no prev_events", (p) => without(p, "prev_events"), /prev_events must be an array/],
    ["no auth_events", (p) => without(p, "auth_events"), /auth_events must be an array/],
    ["numeric redacts", (p) => ({ ...p, redacts: 5 }), /redacts must be a string/],
  ];

  for (const rv of ["1", "3", "6", "10", "11", "12"]) {
    it.each(cases)(`room v${rv}: %s`, (_name, mutate, reason) => {
      expectFail(checkPduFormat(mutate(pdu(rv)), v(rv)), reason);
    });
  }

  it.each([null, 5, "x", [], undefined])("rejects non-objects (%j)", (value) => {
    expectFail(checkPduFormat(value, v("10")), /must be a JSON object/);
  });

  it("checks content.redacts of v11+ redactions", () => {
    const redaction = pdu("11", { type: "m.room.redaction", content: { redacts: 5 } });
    expectFail(checkPduFormat(redaction, v("11")), /content.redacts must be a string/);
    expect(checkPduFormat(pdu("11", { type: "m.room.redaction", content: { redacts: `$${H1}` } }), v("11")).ok).toBe(true);
    // Before v11 the content key has no meaning for the format.
    expect(checkPduFormat(pdu("10", { type: "m.room.redaction", content: { redacts: 5 } }), v("10")).ok).toBe(true);
  });

  it("accepts the 255-byte limits exactly", () => {
    expect(checkPduFormat(pdu("10", { type: "t".repeat(255), state_key: "é".repeat(127) + "s" }), v("10")).ok).toBe(true);
  });
});

describe("event format specifics", () => {
  it("v1–v2 require a valid event_id", () => {
    for (const rv of ["1", "2"]) {
      expectFail(checkPduFormat(without(pdu(rv), "event_id"), v(rv)), /event_id must be a string/);
      expectFail(checkPduFormat(pdu(rv, { event_id: `$${H1}` }), v(rv)), /event_id: .*missing ':'/);
    }
  });

  it("v1–v2 references are [event_id, hashes] pairs", () => {
    expectFail(checkPduFormat(pdu("1", { prev_events: ["$p:x"] }), v("1")), /prev_events\[0\] must be an \[event_id, hashes\] pair/);
    expectFail(checkPduFormat(pdu("1", { prev_events: [["$p:x"]] }), v("1")), /pair/);
    expectFail(checkPduFormat(pdu("1", { auth_events: [["$p:x", "abc"]] }), v("1")), /auth_events\[0\]\[1\] must be an object/);
    expectFail(checkPduFormat(pdu("1", { auth_events: [[5, {}]] }), v("1")), /auth_events\[0\] must be an event ID string/);
    expectFail(checkPduFormat(pdu("2", { auth_events: [["$p", {}]] }), v("2")), /auth_events\[0\]: invalid event ID/);
  });

  it("v3+ references are event ID strings of the version's form", () => {
    expectFail(checkPduFormat(pdu("3", { prev_events: [["$p:x", {}]] }), v("3")), /prev_events\[0\] must be an event ID string/);
    expectFail(checkPduFormat(pdu("3", { prev_events: [`$${H1}`] }), v("3")), /standard unpadded base64/);
    expectFail(checkPduFormat(pdu("4", { prev_events: [`$${H3}`] }), v("4")), /URL-safe unpadded base64/);
    expectFail(checkPduFormat(pdu("12", { auth_events: ["$p:x"] }), v("12")), /auth_events\[0\]: invalid event ID/);
  });

  it("v12 room IDs have no server part; earlier ones must", () => {
    expectFail(checkPduFormat(pdu("12", { room_id: "!room:x" }), v("12")), /no server name/);
    expectFail(checkPduFormat(pdu("11", { room_id: V12_ROOM }), v("11")), /missing ':'/);
  });
});

describe("limits", () => {
  const refs = (n: number, rv: string) =>
    Array.from({ length: n }, (_, i) => (v(rv).eventFormat === "v1" ? [`$e${i}:x`, { sha256: "a" }] : `$${H1}`));

  it.each(["1", "4", "12"])("room v%s: at most 20 prev_events and 10 auth_events", (rv) => {
    expect(checkPduFormat(pdu(rv, { prev_events: refs(20, rv), auth_events: refs(10, rv) }), v(rv)).ok).toBe(true);
    expectFail(checkPduFormat(pdu(rv, { prev_events: refs(21, rv) }), v(rv)), /prev_events lists 21 events; at most 20/);
    expectFail(checkPduFormat(pdu(rv, { auth_events: refs(11, rv) }), v(rv)), /auth_events lists 11 events; at most 10/);
  });

  it("the whole event is at most 65536 bytes of canonical JSON", () => {
    const base = pdu("10");
    const baseSize = new TextEncoder().encode(JSON.stringify({ ...base, content: { body: "" } })).length;
    const fits = pdu("10", { content: { body: "a".repeat(MAX_PDU_BYTES - baseSize) } });
    expect(checkPduFormat(fits, v("10"))).toEqual({ ok: true });
    const over = pdu("10", { content: { body: "a".repeat(MAX_PDU_BYTES - baseSize + 1) } });
    expectFail(checkPduFormat(over, v("10")), /65537 bytes of canonical JSON; at most 65536/);
  });

  it("counts UTF-8 bytes, not characters, and includes signatures and unsigned", () => {
    const big = pdu("10", { content: { body: "日".repeat(22000) } }); // 66000 bytes, 22000 code units
    expectFail(checkPduFormat(big, v("10")), /bytes of canonical JSON/);
    const withUnsigned = pdu("10", { unsigned: { pad: "a".repeat(MAX_PDU_BYTES) } });
    expectFail(checkPduFormat(withUnsigned, v("10")), /bytes of canonical JSON/);
  });

  it("depth within 2^53-1 in v6+; larger integers tolerated in v1–v5", () => {
    expect(checkPduFormat(pdu("6", { depth: Number.MAX_SAFE_INTEGER }), v("6")).ok).toBe(true);
    expectFail(checkPduFormat(pdu("6", { depth: 2 ** 53 }), v("6")), /depth must not exceed/);
    expect(checkPduFormat(pdu("5", { depth: 2 ** 60 }), v("5")).ok).toBe(true);
  });
});

describe("strict canonical JSON (v6+)", () => {
  it.each(["6", "7", "8", "9", "10", "11", "12"])("room v%s rejects floats and big integers anywhere", (rv) => {
    expectFail(checkPduFormat(pdu(rv, { content: { n: 1.5 } }), v(rv)), /not valid canonical JSON: float 1.5 .* at content.n/);
    expectFail(checkPduFormat(pdu(rv, { content: { n: [2 ** 53] } }), v(rv)), /outside the canonical JSON range/);
    expectFail(checkPduFormat(pdu(rv, { origin_server_ts: 2 ** 60 }), v(rv)), /canonical JSON/);
    expectFail(checkPduFormat(pdu(rv, { unsigned: { age: 0.5 } }), v(rv)), /canonical JSON/);
  });

  it.each(["1", "2", "3", "4", "5"])("room v%s tolerates them", (rv) => {
    expect(checkPduFormat(pdu(rv, { content: { n: 1.5, big: 2 ** 60 } }), v(rv))).toEqual({ ok: true });
  });

  it("all versions reject strings that are not valid Unicode", () => {
    for (const rv of ALL) expectFail(checkPduFormat(pdu(rv, { content: { body: "\udc00" } }), v(rv)), /lone UTF-16 surrogate/);
  });
});

describe("requiredSignatureServers", () => {
  const member = (membership: string, extra: Record<string, unknown> = {}) => ({
    type: "m.room.member",
    state_key: "@alice:a.org",
    sender: "@alice:a.org",
    room_id: "!r:c.org",
    content: { membership, ...extra },
  });

  it("is the sender's server in v3+", () => {
    for (const rv of ["3", "7", "10", "11", "12"]) {
      expect(requiredSignatureServers({ sender: "@alice:a.org:8448", type: "m.room.message", content: {} }, v(rv))).toEqual(["a.org:8448"]);
    }
  });

  it("adds the event ID's server in v1–v2", () => {
    for (const rv of ["1", "2"]) {
      expect(requiredSignatureServers({ sender: "@alice:a.org", event_id: "$e:b.org", content: {} }, v(rv))).toEqual(["a.org", "b.org"]);
      expect(requiredSignatureServers({ sender: "@alice:a.org", event_id: "$e:a.org", content: {} }, v(rv))).toEqual(["a.org"]);
    }
  });

  it("adds the authorising server of restricted joins in v8+", () => {
    const join = member("join", { join_authorised_via_users_server: "@mod:b.org" });
    for (const rv of ["8", "9", "10", "11", "12"]) expect(requiredSignatureServers(join, v(rv))).toEqual(["a.org", "b.org"]);
    for (const rv of ["1", "6", "7"]) {
      const extra = v(rv).eventFormat === "v1" ? { event_id: "$e:a.org" } : {};
      expect(requiredSignatureServers({ ...join, ...extra }, v(rv))).toEqual(["a.org"]);
    }
    // Only for joins.
    expect(requiredSignatureServers(member("leave", { join_authorised_via_users_server: "@mod:b.org" }), v("10"))).toEqual(["a.org"]);
    // Same server is listed once.
    expect(requiredSignatureServers(member("join", { join_authorised_via_users_server: "@mod:a.org" }), v("10"))).toEqual(["a.org"]);
  });

  it("throws for an authorising user that is not a user ID", () => {
    expect(() => requiredSignatureServers(member("join", { join_authorised_via_users_server: "mod" }), v("10"))).toThrow(MatrixIdError);
    expect(() => requiredSignatureServers(member("join", { join_authorised_via_users_server: 5 }), v("10"))).toThrow(MatrixIdError);
  });

  it("does not require the sender's server for invites from a third-party invite", () => {
    const invite = member("invite", { third_party_invite: { signed: { mxid: "@alice:a.org", token: "t" } } });
    expect(requiredSignatureServers(invite, v("10"))).toEqual([]);
    expect(requiredSignatureServers({ ...invite, event_id: "$e:b.org" }, v("1"))).toEqual(["b.org"]);
    expect(requiredSignatureServers(member("invite"), v("10"))).toEqual(["a.org"]);
  });

  it("throws for a sender without a server", () => {
    expect(() => requiredSignatureServers({ sender: "alice", content: {} }, v("10"))).toThrow(MatrixIdError);
  });
});
