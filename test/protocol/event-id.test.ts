import { describe, expect, it } from "vitest";
import { encodeBase64, encodeBase64Url } from "../../src/protocol/base64";
import {
  EventIdError,
  computeEventId,
  createEventIdFromRoomId,
  generateEventIdV1,
  generateRoomIdLegacy,
  randomAlphanumeric,
  referenceHashEventId,
  roomIdFromCreateEvent,
  toFederationPdu,
} from "../../src/protocol/event-id";
import { checkContentHash, computeReferenceHash, signEvent } from "../../src/protocol/hashes";
import { isValidEventId, isValidRoomId, parseEventId, parseRoomId } from "../../src/protocol/identifiers";
import { ROOM_VERSIONS, type RoomVersion } from "../../src/protocol/room-versions";
import { generateSigningKey } from "../../src/protocol/signing";

const v = (id: string): RoomVersion => ROOM_VERSIONS[id]!;

/**
 * A real room-version-5 create event from the public federation (as used in gomatrixserverlib's event ID tests);
 * its ID is known in v3 (standard base64) and v4+ (URL-safe) form.
 */
const JKI_CREATE = {
  auth_events: [],
  prev_events: [],
  type: "m.room.create",
  room_id: "!uXDCzlYgCTHtiWCkEx:jki.re",
  sender: "@erikj:jki.re",
  content: {
    room_version: "5",
    predecessor: { room_id: "!gdRMqOrTFdOCYHNwOo:half-shot.uk", event_id: "$LP7ROBc4b+cMc1UE9haIz8q5AK2AIW4eJ90FfKLvyZI" },
    creator: "@erikj:jki.re",
  },
  depth: 1,
  prev_state: [],
  state_key: "",
  origin: "jki.re",
  origin_server_ts: 1560284621137,
  hashes: { sha256: "IX6zuNiJpJPNf70BLleL3HSCpjKeq9Uhu7uUpyDjBmc" },
  signatures: {
    "jki.re": {
      "ed25519:auto": "O4IyFfF2PPtGp5uaDm8t57dZbdh8vc8Q64LgCwvzYRVItAMI0uisfiAFaxkVT7MRpzh6N2QNN5NMRXZKmgPYDA",
    },
  },
  unsigned: { age: 1321650 },
};

describe("event IDs from real events", () => {
  it("room v3: standard base64 of the reference hash", () => {
    expect(computeEventId(JKI_CREATE, v("3"))).toBe("$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438");
  });

  it.each(["4", "5", "6", "7", "8", "9", "10"])("room v%s: URL-safe base64 of the reference hash", (rv) => {
    expect(computeEventId(JKI_CREATE, v(rv))).toBe("$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438");
  });

  it("the real event's content hash checks out", () => {
    expect(checkContentHash(JKI_CREATE)).toBe(true);
  });

  it("room v11 rules give a different ID for the same JSON (origin/prev_state dropped, create content kept)", () => {
    expect(computeEventId(JKI_CREATE, v("11"))).not.toBe("$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438");
  });

  it("v1–v2: the carried event_id", () => {
    const e = { ...JKI_CREATE, event_id: "$abc:jki.re" };
    expect(computeEventId(e, v("1"))).toBe("$abc:jki.re");
    expect(computeEventId(e, v("2"))).toBe("$abc:jki.re");
    expect(() => computeEventId(JKI_CREATE, v("1"))).toThrow(EventIdError);
    expect(() => computeEventId({ ...JKI_CREATE, event_id: 5 }, v("2"))).toThrow(/must carry an event_id/);
  });
});

describe("event ID forms", () => {
  const key = generateSigningKey("k");
  const event = signEvent(
    {
      type: "m.room.message",
      room_id: "!r:x",
      sender: "@a:x",
      content: { body: "hi" },
      origin_server_ts: 5,
      depth: 2,
      prev_events: [],
      auth_events: [],
    },
    "x",
    key,
    v("10"),
  );

  it.each(["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"])("room v%s IDs match the version's grammar", (rv) => {
    const id = computeEventId(event, v(rv));
    expect(id).toHaveLength(44);
    expect(isValidEventId(id, v(rv))).toBe(true);
    const hash = computeReferenceHash(event, v(rv));
    expect(id).toBe("$" + (rv === "3" ? encodeBase64(hash) : encodeBase64Url(hash)));
  });

  it("is stable under changes outside the redacted form and changes with it", () => {
    const id = computeEventId(event, v("12"));
    expect(computeEventId({ ...event, unsigned: { age: 9 } }, v("12"))).toBe(id);
    expect(computeEventId({ ...event, signatures: {} }, v("12"))).toBe(id);
    expect(computeEventId({ ...event, depth: 3 }, v("12"))).not.toBe(id);
  });

  it("referenceHashEventId refuses v1 rooms", () => {
    expect(() => referenceHashEventId(event, v("1"))).toThrow(EventIdError);
  });

  it("generates v1 event IDs and legacy room IDs", () => {
    const a = generateEventIdV1("example.org:8448");
    expect(a).toMatch(/^\$[A-Za-z0-9]{24}:example\.org:8448$/);
    expect(parseEventId(a, v("1")).serverName).toBe("example.org:8448");
    expect(generateEventIdV1("x")).not.toBe(generateEventIdV1("x"));
    const r = generateRoomIdLegacy("x");
    expect(r).toMatch(/^![A-Za-z0-9]{18}:x$/);
    expect(isValidRoomId(r, v("11"))).toBe(true);
    expect(randomAlphanumeric(100)).toMatch(/^[A-Za-z0-9]{100}$/);
    expect(randomAlphanumeric(0)).toBe("");
  });
});

describe("v12 room IDs (MSC4291)", () => {
  const key = generateSigningKey("k");
  const create = signEvent(
    {
      type: "m.room.create",
      state_key: "",
      sender: "@alice:example.org",
      content: { room_version: "12", additional_creators: ["@bob:other.org"] },
      origin_server_ts: 1700000000000,
      depth: 1,
      prev_events: [],
      auth_events: [],
    },
    "example.org",
    key,
    v("12"),
  );

  it("is the create event's ID with '!' instead of '$', without a server part", () => {
    const roomId = roomIdFromCreateEvent(create);
    const eventId = computeEventId(create, v("12"));
    expect(roomId).toBe("!" + eventId.slice(1));
    expect(roomId).not.toContain(":");
    expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
    expect(parseRoomId(roomId, v("12"))).toEqual({ opaqueId: eventId.slice(1) });
    expect(createEventIdFromRoomId(roomId)).toBe(eventId);
    expect(roomIdFromCreateEvent(create, v("12"))).toBe(roomId);
  });

  it("covers the whole create content (kept by v11+ redaction)", () => {
    const other = { ...create, content: { room_version: "12" } };
    expect(roomIdFromCreateEvent(other)).not.toBe(roomIdFromCreateEvent(create));
  });

  it("is refused for room versions that do not derive room IDs", () => {
    expect(() => roomIdFromCreateEvent(create, v("11"))).toThrow(EventIdError);
  });

  it("createEventIdFromRoomId ignores room IDs with a server part", () => {
    expect(createEventIdFromRoomId("!abc:x")).toBeUndefined();
    expect(createEventIdFromRoomId("$abc")).toBeUndefined();
  });
});

describe("toFederationPdu", () => {
  it("strips event_id in v3+ and keeps it in v1–v2", () => {
    const stored = { event_id: "$x", room_id: "!r:x", type: "m.room.message", content: {} };
    expect(toFederationPdu(stored, v("4"))).toEqual({ room_id: "!r:x", type: "m.room.message", content: {} });
    expect(toFederationPdu(stored, v("1"))).toBe(stored);
    expect(stored).toHaveProperty("event_id");
  });

  it("strips room_id from v12 create events only", () => {
    const create = { event_id: "$h", room_id: "!h", type: "m.room.create", state_key: "", content: {} };
    expect(toFederationPdu(create, v("12"))).toEqual({ type: "m.room.create", state_key: "", content: {} });
    expect(toFederationPdu(create, v("11"))).toEqual({ room_id: "!h", type: "m.room.create", state_key: "", content: {} });
    const msg = { room_id: "!h", type: "m.room.message", content: {} };
    expect(toFederationPdu(msg, v("12"))).toBe(msg);
  });

  it("lets a stored event's ID be recomputed", () => {
    const pdu = { ...JKI_CREATE };
    const stored = { ...pdu, event_id: computeEventId(pdu, v("5")) };
    expect(computeEventId(toFederationPdu(stored, v("5")), v("5"))).toBe(stored.event_id);
  });
});
