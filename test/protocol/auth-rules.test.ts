/**
 * Table-driven tests of the authorization rules, one block per rule, each with an allowed and a rejected case
 * and run across the room versions where the rule (or its absence) matters. Rule numbers in the expected
 * reasons are those of the room version's own text (e.g. membership is rule 5 in v1–v5 and v12, rule 4 in
 * v6–v11).
 */
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../src/protocol/events";
import { roomVersion, type RoomVersion } from "../../src/protocol/room-versions";
import { generateSigningKey, publicKeyBase64, signJson } from "../../src/protocol/signing";
import {
  CREATOR_POWER_LEVEL,
  DEFAULT_POWER_LEVELS,
  authEventTypesFor,
  checkAuthEventsSelection,
  checkEventAuth,
  checkPowerLevelsChange,
  parsePowerLevelValue,
  parsePowerLevelsContent,
  powerLevelsFromContent,
  requiredPowerLevel,
  stateLookupFromEvents,
  userPowerLevel,
  type AuthCheckOptions,
  type AuthEvent,
  type AuthResult,
} from "../../src/protocol/auth";

// ---------------------------------------------------------------------------------------------------------
// Fixtures

const ALL = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];
const versions = (from: number, to = 12): string[] => ALL.filter((id) => Number(id) >= from && Number(id) <= to);

function V(id: string): RoomVersion {
  const v = roomVersion(id);
  if (!v) throw new Error(`unknown room version ${id}`);
  return v;
}

/** alice creates every room; dave is an additional creator where a test asks for one. */
const ALICE = "@alice:a";
const BOB = "@bob:a";
const CAROL = "@carol:b";
const DAVE = "@dave:a";
const EVE = "@eve:a";

interface RoomSetup {
  /** Power levels content; `null` for a room without a power levels event. Default: alice 100 (v12: empty). */
  pl?: JsonObject | null;
  joinRule?: string;
  /** Memberships besides alice's join (pass `{ [ALICE]: undefined }`-style overrides via `noAlice`). */
  members?: Record<string, string>;
  noAlice?: boolean;
  createContent?: JsonObject;
  extra?: AuthEvent[];
}

interface EventSpec {
  type: string;
  sender: string;
  content?: JsonObject;
  state_key?: string;
  prev?: string[];
  redacts?: string;
  event_id?: string;
  room_id?: string;
  signatures?: Record<string, Record<string, string>>;
}

class Room {
  readonly version: RoomVersion;
  readonly roomId: string;
  readonly create: AuthEvent;
  readonly stateEvents: AuthEvent[];
  private counter = 0;

  constructor(
    readonly vid: string,
    setup: RoomSetup = {},
  ) {
    const version = V(vid);
    this.version = version;
    const createId = version.roomIdFromCreateEvent ? "$CreateEventReferenceHashCreateEventReferenceHas" : "$create:a";
    this.roomId = version.roomIdFromCreateEvent ? `!${createId.slice(1)}` : "!room:a";
    const createContent: JsonObject =
      setup.createContent ?? (version.implicitRoomCreator ? { room_version: vid } : { creator: ALICE, room_version: vid });
    this.create = {
      event_id: createId,
      type: "m.room.create",
      state_key: "",
      sender: ALICE,
      content: createContent,
      origin_server_ts: 0,
      prev_events: [],
      auth_events: [],
    };
    if (!version.roomIdFromCreateEvent) this.create.room_id = this.roomId;
    const members: Record<string, string> = { ...(setup.noAlice ? {} : { [ALICE]: "join" }), ...setup.members };
    this.stateEvents = [this.create];
    for (const [user, membership] of Object.entries(members)) {
      this.stateEvents.push(this.stateEvent("m.room.member", user, { membership }, user));
    }
    const pl = setup.pl === undefined ? (version.privilegedCreators ? {} : { users: { [ALICE]: 100 } }) : setup.pl;
    if (pl !== null) this.stateEvents.push(this.stateEvent("m.room.power_levels", "", pl));
    if (setup.joinRule !== undefined) {
      this.stateEvents.push(this.stateEvent("m.room.join_rules", "", { join_rule: setup.joinRule }));
    }
    this.stateEvents.push(...(setup.extra ?? []));
  }

  stateEvent(type: string, stateKey: string, content: JsonObject, sender = ALICE): AuthEvent {
    return {
      event_id: `$${type}-${stateKey}-${this.counter++}:a`,
      room_id: this.roomId,
      type,
      state_key: stateKey,
      sender,
      content,
      origin_server_ts: 1,
      prev_events: [],
      auth_events: [],
    };
  }

  event(spec: EventSpec): AuthEvent {
    const event: AuthEvent = {
      event_id: spec.event_id ?? `$ev${this.counter++}:a`,
      room_id: spec.room_id ?? this.roomId,
      type: spec.type,
      sender: spec.sender,
      content: spec.content ?? {},
      origin_server_ts: 2,
      prev_events: spec.prev ?? ["$prev:a"],
      auth_events: [],
    };
    if (spec.state_key !== undefined) event.state_key = spec.state_key;
    if (spec.redacts !== undefined) event.redacts = spec.redacts;
    if (spec.signatures !== undefined) event.signatures = spec.signatures;
    return event;
  }

  check(spec: EventSpec | AuthEvent, opts?: AuthCheckOptions): AuthResult {
    const event = "origin_server_ts" in spec ? spec : this.event(spec);
    return checkEventAuth(event, stateLookupFromEvents(this.stateEvents), this.version, opts);
  }

  member(sender: string, target: string, membership: string, content: JsonObject = {}, extra: Partial<EventSpec> = {}) {
    return this.check({ type: "m.room.member", sender, state_key: target, content: { membership, ...content }, ...extra });
  }
}

function allowed(result: AuthResult): void {
  expect(result).toEqual({ allowed: true });
}

function rejected(result: AuthResult, reason?: RegExp): void {
  expect(result.allowed, "expected a rejection").toBe(false);
  if (reason && !result.allowed) expect(result.reason).toMatch(reason);
}

/** Rule number of the membership rule / the rules after it, per version. */
const memberRule = (vid: string) => (V(vid).specialCaseAliasesAuth || V(vid).roomIdFromCreateEvent ? 5 : 4);

// ---------------------------------------------------------------------------------------------------------
// Rule 1: m.room.create

describe("rule 1: m.room.create", () => {
  const createEvent = (vid: string, over: Partial<AuthEvent> = {}): AuthEvent => {
    const v = V(vid);
    const e: AuthEvent = {
      event_id: "$c:a",
      type: "m.room.create",
      state_key: "",
      sender: ALICE,
      content: v.implicitRoomCreator ? { room_version: vid } : { creator: ALICE, room_version: vid },
      origin_server_ts: 0,
      prev_events: [],
      auth_events: [],
      ...over,
    };
    if (!v.roomIdFromCreateEvent && !("room_id" in over)) e.room_id = "!new:a";
    return e;
  };
  const check = (vid: string, e: AuthEvent) => checkEventAuth(e, () => undefined, V(vid));

  it.each(ALL)("v%s: a well-formed create event is allowed", (vid) => allowed(check(vid, createEvent(vid))));

  it.each(ALL)("v%s: 1.1 prev_events → reject", (vid) =>
    rejected(check(vid, createEvent(vid, { prev_events: ["$x:a"] })), /^rule 1\.1: /),
  );

  it.each(versions(1, 11))("v%s: 1.2 room_id server differs from sender's → reject", (vid) =>
    rejected(check(vid, createEvent(vid, { room_id: "!new:b" })), /^rule 1\.2: /),
  );

  it("v12: 1.2 a create event with a room_id → reject", () =>
    rejected(check("12", createEvent("12", { room_id: "!whatever" })), /^rule 1\.2: /));

  it.each(ALL)("v%s: 1.3 unknown content.room_version → reject; a known one is fine", (vid) => {
    const base = createEvent(vid);
    rejected(check(vid, { ...base, content: { ...base.content, room_version: "999" } }), /^rule 1\.3: /);
    rejected(check(vid, { ...base, content: { ...base.content, room_version: 12 } }), /^rule 1\.3: /);
    allowed(check(vid, { ...base, content: { ...base.content, room_version: "9" } }));
  });

  it.each(ALL)("v%s: 1.4 content.creator required in v1–v10 only", (vid) => {
    const result = check(vid, createEvent(vid, { content: { room_version: vid } }));
    if (V(vid).implicitRoomCreator) allowed(result);
    else rejected(result, /^rule 1\.4: /);
  });

  it("v12: 1.4 additional_creators must be an array of valid user IDs", () => {
    const withCreators = (additional: JsonObject["x"]) =>
      check("12", createEvent("12", { content: { room_version: "12", additional_creators: additional! } }));
    allowed(withCreators([DAVE, "@historical_UPPER:b"]));
    allowed(withCreators([]));
    rejected(withCreators("@dave:a"), /^rule 1\.4: /);
    rejected(withCreators([DAVE, "dave"]), /^rule 1\.4: /);
    rejected(withCreators([DAVE, 5]), /^rule 1\.4: /);
  });

  it("v11: additional_creators means nothing before v12", () =>
    allowed(check("11", createEvent("11", { content: { additional_creators: "nonsense" } }))));

  it.each(ALL)("v%s: format — create needs the empty state_key and a valid sender", (vid) => {
    rejected(check(vid, createEvent(vid, { state_key: "x" })), /^format: /);
    const noStateKey = createEvent(vid);
    delete noStateKey.state_key;
    rejected(check(vid, noStateKey), /^format: /);
    rejected(check(vid, createEvent(vid, { sender: "alice" })), /^format: /);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rule 2 (v12: 2 and 3): the room's create event and the event's auth events

describe("rule 2 (v12: rules 2 and 3): create event and auth_events", () => {
  it.each(versions(1, 11))("v%s: 2.4 no create event in the state → reject", (vid) => {
    const room = new Room(vid);
    const event = room.event({ type: "m.room.message", sender: ALICE });
    rejected(checkEventAuth(event, () => undefined, room.version), /^rule 2\.4: /);
  });

  it.each(versions(1, 11))("v%s: 2.5 the create event is another room's → reject", (vid) => {
    const room = new Room(vid);
    rejected(room.check({ type: "m.room.message", sender: ALICE, room_id: "!other:a" }), /^rule 2\.5: /);
  });

  it("v12: rule 2 — the room ID must name the create event", () => {
    const room = new Room("12");
    allowed(room.check({ type: "m.room.message", sender: ALICE }));
    rejected(room.check({ type: "m.room.message", sender: ALICE, room_id: "!SomeOtherRoom" }), /^rule 2: /);
    const event = room.event({ type: "m.room.message", sender: ALICE });
    rejected(checkEventAuth(event, () => undefined, room.version), /^rule 2: /);
  });

  describe("checkAuthEventsSelection", () => {
    const setup = (vid: string) => {
      const room = new Room(vid, { pl: { users: { [ALICE]: 100 } }, joinRule: "public" });
      const find = (type: string, key = "") => room.stateEvents.find((e) => e.type === type && e.state_key === key)!;
      const withAuth = (event: AuthEvent, auth: AuthEvent[]): [AuthEvent, AuthEvent[]] => [
        { ...event, auth_events: auth.map((e) => e.event_id) },
        auth,
      ];
      return { room, find, withAuth };
    };

    it.each(ALL)("v%s: the selected auth events are accepted", (vid) => {
      const { room, find, withAuth } = setup(vid);
      const selected = V(vid).roomIdFromCreateEvent ? [] : [find("m.room.create")];
      const [event, auth] = withAuth(room.event({ type: "m.room.message", sender: ALICE }), [
        ...selected,
        find("m.room.power_levels"),
        find("m.room.member", ALICE),
      ]);
      allowed(checkAuthEventsSelection(event, auth, room.version, room.create));
    });

    it.each(ALL)("v%s: .1 duplicate (type, state_key) → reject", (vid) => {
      const { room, find, withAuth } = setup(vid);
      const pl2 = room.stateEvent("m.room.power_levels", "", { users: {} });
      const base = V(vid).roomIdFromCreateEvent ? [] : [find("m.room.create")];
      const [event, auth] = withAuth(room.event({ type: "m.room.message", sender: ALICE }), [
        ...base,
        find("m.room.power_levels"),
        pl2,
      ]);
      rejected(checkAuthEventsSelection(event, auth, room.version), /^rule (2|3)\.1: /);
    });

    it.each(ALL)("v%s: .2 an entry the selection does not pick → reject", (vid) => {
      const { room, find, withAuth } = setup(vid);
      const base = V(vid).roomIdFromCreateEvent ? [] : [find("m.room.create")];
      // join rules are only selected for join/invite/knock memberships
      const [event, auth] = withAuth(room.event({ type: "m.room.message", sender: ALICE }), [
        ...base,
        find("m.room.join_rules"),
      ]);
      rejected(checkAuthEventsSelection(event, auth, room.version), /^rule (2|3)\.2: /);
    });

    it("v12: .2 the create event must not be listed", () => {
      const { room, find, withAuth } = setup("12");
      const [event, auth] = withAuth(room.event({ type: "m.room.message", sender: ALICE }), [
        room.create,
        find("m.room.member", ALICE),
      ]);
      rejected(checkAuthEventsSelection(event, auth, room.version), /^rule 3\.2: .*must not be listed/);
    });

    it.each(ALL)("v%s: .3 a rejected auth event → reject", (vid) => {
      const { room, find, withAuth } = setup(vid);
      const base = V(vid).roomIdFromCreateEvent ? [] : [find("m.room.create")];
      const pl = find("m.room.power_levels");
      const [event, auth] = withAuth(room.event({ type: "m.room.message", sender: ALICE }), [...base, pl]);
      rejected(
        checkAuthEventsSelection(event, auth, room.version, undefined, { isRejected: (id) => id === pl.event_id }),
        /^rule (2|3)\.3: /,
      );
    });

    it.each(versions(1, 11))("v%s: .4 no create event among the auth events → reject", (vid) => {
      const { room, find, withAuth } = setup(vid);
      const [event, auth] = withAuth(room.event({ type: "m.room.message", sender: ALICE }), [find("m.room.member", ALICE)]);
      rejected(checkAuthEventsSelection(event, auth, room.version), /^rule 2\.4: /);
    });

    it.each(ALL)("v%s: .5 an auth event from another room → reject", (vid) => {
      const { room, find, withAuth } = setup(vid);
      const base = V(vid).roomIdFromCreateEvent ? [] : [find("m.room.create")];
      const foreign = { ...find("m.room.member", ALICE), room_id: "!elsewhere:a" };
      const [event, auth] = withAuth(room.event({ type: "m.room.message", sender: ALICE }), [...base, foreign]);
      rejected(checkAuthEventsSelection(event, auth, room.version), /^rule (2|3)\.5: /);
    });

    it("the provided events must be exactly the listed ones", () => {
      const { room, find } = setup("10");
      const event = { ...room.event({ type: "m.room.message", sender: ALICE }), auth_events: ["$missing:a"] };
      rejected(checkAuthEventsSelection(event, [find("m.room.create")], room.version), /not provided/);
    });

    it("v12: with the create event given, the room ID must name it (rule 2)", () => {
      const { room } = setup("12");
      const event = room.event({ type: "m.room.message", sender: ALICE, room_id: "!Nope" });
      rejected(checkAuthEventsSelection(event, [], room.version, room.create), /^rule 2: /);
    });

    it("restricted joins may cite the authorising user's membership from v8, third-party invites their token", () => {
      for (const vid of ["7", "8"]) {
        const room = new Room(vid, { joinRule: "restricted", members: { [BOB]: "join" } });
        const find = (type: string, key = "") => room.stateEvents.find((e) => e.type === type && e.state_key === key)!;
        const join = room.event({
          type: "m.room.member",
          sender: EVE,
          state_key: EVE,
          content: { membership: "join", join_authorised_via_users_server: BOB },
        });
        const auth = [find("m.room.create"), find("m.room.power_levels"), find("m.room.join_rules"), find("m.room.member", BOB)];
        const result = checkAuthEventsSelection({ ...join, auth_events: auth.map((e) => e.event_id) }, auth, room.version);
        if (vid === "8") allowed(result);
        else rejected(result, /^rule 2\.2: /);
      }
    });
  });

  describe("authEventTypesFor", () => {
    it("picks create (not in v12), power levels and the sender's membership", () => {
      const message = { type: "m.room.message", sender: BOB, content: {} };
      expect(authEventTypesFor(message, V("11"))).toEqual([
        ["m.room.create", ""],
        ["m.room.power_levels", ""],
        ["m.room.member", BOB],
      ]);
      expect(authEventTypesFor(message, V("12"))).toEqual([
        ["m.room.power_levels", ""],
        ["m.room.member", BOB],
      ]);
    });

    it("membership events add the target, join rules for join/invite/knock, the token's invite, the authoriser", () => {
      const member = (membership: string, content: JsonObject = {}, sender = BOB, target = EVE) => ({
        type: "m.room.member",
        sender,
        state_key: target,
        content: { membership, ...content },
      });
      expect(authEventTypesFor(member("leave"), V("10"))).toEqual([
        ["m.room.create", ""],
        ["m.room.power_levels", ""],
        ["m.room.member", BOB],
        ["m.room.member", EVE],
      ]);
      expect(authEventTypesFor(member("knock", {}, EVE, EVE), V("10"))).toEqual([
        ["m.room.create", ""],
        ["m.room.power_levels", ""],
        ["m.room.member", EVE],
        ["m.room.join_rules", ""],
      ]);
      expect(
        authEventTypesFor(member("invite", { third_party_invite: { signed: { token: "tok", mxid: EVE } } }), V("12")),
      ).toEqual([
        ["m.room.power_levels", ""],
        ["m.room.member", BOB],
        ["m.room.member", EVE],
        ["m.room.join_rules", ""],
        ["m.room.third_party_invite", "tok"],
      ]);
      const restrictedJoin = member("join", { join_authorised_via_users_server: CAROL }, EVE, EVE);
      expect(authEventTypesFor(restrictedJoin, V("8"))).toContainEqual(["m.room.member", CAROL]);
      expect(authEventTypesFor(restrictedJoin, V("7"))).not.toContainEqual(["m.room.member", CAROL]);
      expect(authEventTypesFor({ type: "m.room.create", sender: ALICE, state_key: "", content: {} }, V("1"))).toEqual([]);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rule 3 (v12: 4): m.federate

describe("rule 3 (v12: 4): m.federate = false", () => {
  it.each(ALL)("v%s: only the creator's server may send", (vid) => {
    const v = V(vid);
    const createContent: JsonObject = { ...(v.implicitRoomCreator ? {} : { creator: ALICE }), "m.federate": false };
    const room = new Room(vid, { createContent, members: { [CAROL]: "join", [BOB]: "join" } });
    allowed(room.check({ type: "m.room.message", sender: BOB }));
    rejected(room.check({ type: "m.room.message", sender: CAROL }), new RegExp(`^rule ${v.roomIdFromCreateEvent ? 4 : 3}: `));
  });

  it.each(ALL)("v%s: m.federate absent or true lets other servers send", (vid) => {
    const room = new Room(vid, { members: { [CAROL]: "join" } });
    allowed(room.check({ type: "m.room.message", sender: CAROL }));
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rule 4 (v1–v5 only): m.room.aliases

describe("rule 4 (v1–v5): m.room.aliases", () => {
  const aliases = (room: Room, stateKey: string | undefined) =>
    room.check({ type: "m.room.aliases", sender: CAROL, content: { aliases: ["#x:b"] }, ...(stateKey !== undefined ? { state_key: stateKey } : {}) });

  it.each(versions(1, 5))("v%s: a non-member may set aliases for its own server only", (vid) => {
    const room = new Room(vid);
    allowed(aliases(room, "b"));
    rejected(aliases(room, "a"), /^rule 4\.2: /);
    rejected(aliases(room, undefined), /^rule 4\.1: /);
  });

  it.each(versions(6))("v%s: no special case — ordinary state event rules (sender must be joined)", (vid) => {
    const room = new Room(vid);
    rejected(aliases(room, "b"), new RegExp(`^rule ${memberRule(vid) + 1}: sender is not joined`));
  });
});

// ---------------------------------------------------------------------------------------------------------
// Membership rule (v1–v5, v12: 5; v6–v11: 4)

describe("membership: shape and unknown memberships", () => {
  it.each(ALL)("v%s: .1 no state_key or no membership → reject; unknown membership → reject", (vid) => {
    const room = new Room(vid, { joinRule: "public" });
    const m = memberRule(vid);
    rejected(room.check({ type: "m.room.member", sender: EVE, content: { membership: "join" } }), new RegExp(`^rule ${m}\\.1: `));
    rejected(room.check({ type: "m.room.member", sender: EVE, state_key: EVE, content: {} }), new RegExp(`^rule ${m}\\.1: `));
    rejected(room.member(ALICE, EVE, "wave"), /unknown membership/);
  });

  it.each(ALL)("v%s: a member event is judged by the membership rules even from a non-member", (vid) => {
    allowed(new Room(vid, { joinRule: "public" }).member(EVE, EVE, "join"));
  });
});

describe("membership: join", () => {
  it.each(ALL)("v%s: .1 the creator's first join after the create event", (vid) => {
    const room = new Room(vid, { pl: null, noAlice: true });
    const prev = [room.create.event_id];
    allowed(room.member(ALICE, ALICE, "join", {}, { prev }));
    rejected(room.member(BOB, BOB, "join", {}, { prev }));
    rejected(room.member(ALICE, ALICE, "join", {}, { prev: [room.create.event_id, "$other:a"] }));
    rejected(room.member(ALICE, ALICE, "join", {}, { prev: ["$other:a"] }));
  });

  it.each(ALL)("v%s: .1 who the creator is: content.creator before v11, the sender from v11", (vid) => {
    const createContent: JsonObject = { creator: BOB, room_version: vid };
    const room = new Room(vid, { pl: null, noAlice: true, createContent });
    const prev = [room.create.event_id];
    if (V(vid).implicitRoomCreator) {
      allowed(room.member(ALICE, ALICE, "join", {}, { prev }));
      rejected(room.member(BOB, BOB, "join", {}, { prev }));
    } else {
      allowed(room.member(BOB, BOB, "join", {}, { prev }));
      rejected(room.member(ALICE, ALICE, "join", {}, { prev }));
    }
  });

  it("spec order: .1 (creator's first join) is checked before .2 (sender must be the target)", () => {
    // The `disputed` vector: gomatrixserverlib rejects, the spec's order (and Synapse) allows.
    const room = new Room("1", { pl: null, noAlice: true });
    allowed(room.member(BOB, ALICE, "join", {}, { prev: [room.create.event_id] }));
  });

  it.each(ALL)("v%s: .2 sender must be the target; .3 banned users cannot join", (vid) => {
    const room = new Room(vid, { joinRule: "public", members: { [BOB]: "ban" } });
    const r = V(vid).restrictedJoins ? 3 : 2;
    rejected(room.member(ALICE, EVE, "join"), new RegExp(`^rule ${memberRule(vid)}\\.${r}\\.2: `));
    rejected(room.member(BOB, BOB, "join"), new RegExp(`^rule ${memberRule(vid)}\\.${r}\\.3: `));
  });

  it.each(ALL)("v%s: public rooms admit anyone; other/missing join rules do not", (vid) => {
    allowed(new Room(vid, { joinRule: "public" }).member(EVE, EVE, "join"));
    rejected(new Room(vid, { joinRule: "private" }).member(EVE, EVE, "join"));
    rejected(new Room(vid).member(EVE, EVE, "join"));
  });

  it.each(ALL)("v%s: .4 invite-only rooms admit the invited and the joined", (vid) => {
    const room = new Room(vid, { joinRule: "invite", members: { [BOB]: "invite", [CAROL]: "join" } });
    allowed(room.member(BOB, BOB, "join"));
    allowed(room.member(CAROL, CAROL, "join"));
    rejected(room.member(EVE, EVE, "join"));
  });

  it.each(ALL)("v%s: .4 join rule knock behaves like invite from v7 (knocking)", (vid) => {
    const room = new Room(vid, { joinRule: "knock", members: { [BOB]: "invite", [CAROL]: "knock" } });
    if (V(vid).knocking) allowed(room.member(BOB, BOB, "join"));
    else rejected(room.member(BOB, BOB, "join"));
    rejected(room.member(CAROL, CAROL, "join"));
  });

  describe(".5 restricted (v8+) and knock_restricted (v10+)", () => {
    const signed = { signatures: { a: { "ed25519:k": "sig" } } };
    const restrictedJoin = (room: Room, authoriser?: string, extra: Partial<EventSpec> = signed) =>
      room.member(EVE, EVE, "join", authoriser ? { join_authorised_via_users_server: authoriser } : {}, extra);

    for (const rule of ["restricted", "knock_restricted"]) {
      it.each(ALL)(`v%s: ${rule}: a joined user with invite power may authorise a join`, (vid) => {
        const v = V(vid);
        const supported = rule === "restricted" ? v.restrictedJoins : v.knockRestrictedJoinRule;
        const room = new Room(vid, {
          joinRule: rule,
          pl: { users: v.privilegedCreators ? { [BOB]: 50 } : { [ALICE]: 100, [BOB]: 50 }, invite: 50 },
          members: { [BOB]: "join", [CAROL]: "join", [DAVE]: "invite" },
        });
        const authorised = restrictedJoin(room, BOB);
        if (supported) allowed(authorised);
        else rejected(authorised);
        if (!supported) return;
        const r = `rule ${memberRule(vid)}\\.3\\.5\\.2: `;
        rejected(restrictedJoin(room, "@carol:b", { signatures: { b: { "ed25519:k": "sig" } } }), new RegExp(r + ".*may not invite"));
        rejected(restrictedJoin(room, "@frank:a"), new RegExp(r + ".*not a joined member"));
        rejected(restrictedJoin(room, undefined), new RegExp(r));
        allowed(room.member(DAVE, DAVE, "join")); // invited: no authoriser needed
      });
    }

    it.each(versions(8))("v%s: .2 the authorising user's server must have signed the event", (vid) => {
      const room = new Room(vid, { joinRule: "restricted", members: { [BOB]: "join" } });
      const r = new RegExp(`^rule ${memberRule(vid)}\\.2: `);
      rejected(restrictedJoin(room, BOB, {}), r);
      rejected(restrictedJoin(room, BOB, { signatures: { b: { "ed25519:k": "sig" } } }), r);
      rejected(restrictedJoin(room, "not-a-user"), r);
      allowed(restrictedJoin(room, BOB));
      // A verifier, when given, decides instead of the presence check.
      const join = room.event({
        type: "m.room.member",
        sender: EVE,
        state_key: EVE,
        content: { membership: "join", join_authorised_via_users_server: BOB },
      });
      allowed(room.check(join, { isSignedBy: (_e, server) => server === "a" }));
      rejected(room.check(join, { isSignedBy: () => false }), r);
      // The rule applies to any membership carrying the key, not only joins.
      rejected(room.member(ALICE, EVE, "invite", { join_authorised_via_users_server: BOB }), r);
    });

    it.each(versions(1, 7))("v%s: before v8 the key is meaningless and restricted is an unknown join rule", (vid) => {
      const room = new Room(vid, { joinRule: "public", members: { [BOB]: "join" } });
      allowed(room.member(EVE, EVE, "join", { join_authorised_via_users_server: "nonsense" }));
    });
  });
});

describe("membership: invite", () => {
  const setup = (vid: string) =>
    new Room(vid, {
      pl: { users: { ...(V(vid).privilegedCreators ? {} : { [ALICE]: 100 }), [BOB]: 10 }, invite: 50 },
      members: { [BOB]: "join", [CAROL]: "join", [DAVE]: "ban" },
    });

  it.each(ALL)("v%s: joined senders with the invite level may invite", (vid) => {
    const room = setup(vid);
    const r = `rule ${memberRule(vid)}\\.${V(vid).restrictedJoins ? 4 : 3}`;
    allowed(room.member(ALICE, EVE, "invite"));
    rejected(room.member(BOB, EVE, "invite"), new RegExp(`^${r}\\.5: `));
    rejected(room.member(EVE, "@frank:a", "invite"), new RegExp(`^${r}\\.2: `));
    rejected(room.member(ALICE, CAROL, "invite"), new RegExp(`^${r}\\.3: `));
    rejected(room.member(ALICE, DAVE, "invite"), new RegExp(`^${r}\\.3: `));
  });

  describe("third-party invites", () => {
    const key = generateSigningKey("tpi");
    const token = "tok123";
    const tpiRoom = (vid: string, tpiSender = ALICE, keys: JsonObject = { public_keys: [{ public_key: publicKeyBase64(key) }] }) =>
      new Room(vid, {
        members: { [DAVE]: "ban" },
        extra: [new Room(vid).stateEvent("m.room.third_party_invite", token, { display_name: "e…", ...keys }, tpiSender)],
      });
    const invite = (room: Room, mxid: string, target = mxid, signedOver: JsonObject = {}, sender = ALICE) => {
      const signed = signJson({ mxid, token, ...signedOver }, "id.example", key);
      return room.member(sender, target, "invite", { third_party_invite: { display_name: "e…", signed } });
    };

    it.each(ALL)("v%s: a signature by a published key admits the invite", (vid) => {
      allowed(invite(tpiRoom(vid), EVE));
      allowed(invite(tpiRoom(vid, ALICE, { public_key: publicKeyBase64(key) }), EVE));
    });

    it.each(ALL)("v%s: each sub-rule rejects", (vid) => {
      const r = `rule ${memberRule(vid)}\\.${V(vid).restrictedJoins ? 4 : 3}\\.1`;
      const room = tpiRoom(vid);
      rejected(invite(room, DAVE), new RegExp(`^${r}\\.1: `));
      rejected(room.member(ALICE, EVE, "invite", { third_party_invite: {} }), new RegExp(`^${r}\\.2: `));
      rejected(room.member(ALICE, EVE, "invite", { third_party_invite: { signed: { mxid: EVE } } }), new RegExp(`^${r}\\.3: `));
      rejected(invite(room, EVE, "@frank:a"), new RegExp(`^${r}\\.4: `));
      rejected(invite(room, EVE, EVE, { token: "other" }), new RegExp(`^${r}\\.5: `));
      rejected(invite(tpiRoom(vid, BOB), EVE), new RegExp(`^${r}\\.6: `));
      const other = generateSigningKey("other");
      rejected(invite(tpiRoom(vid, ALICE, { public_key: publicKeyBase64(other) }), EVE), new RegExp(`^${r}\\.8: `));
      // tampering with the signed block breaks the signature
      const signed = signJson({ mxid: EVE, token }, "id.example", key);
      rejected(
        room.member(ALICE, EVE, "invite", { third_party_invite: { signed: { ...signed, extra: 1 } } }),
        new RegExp(`^${r}\\.8: `),
      );
    });
  });
});

describe("membership: leave", () => {
  const setup = (vid: string) =>
    new Room(vid, {
      pl: { users: { ...(V(vid).privilegedCreators ? {} : { [ALICE]: 100 }), [BOB]: 60, [CAROL]: 60 }, kick: 50, ban: 70 },
      members: { [BOB]: "join", [CAROL]: "join", [DAVE]: "ban", [EVE]: "invite", "@kim:a": "knock", "@lou:a": "leave" },
    });
  const leaveRule = (vid: string) => `rule ${memberRule(vid)}\\.${V(vid).restrictedJoins ? 5 : 4}`;

  it.each(ALL)("v%s: .1 leaving yourself: from join or invite; from knock only with knocking (v7+)", (vid) => {
    const room = setup(vid);
    allowed(room.member(BOB, BOB, "leave"));
    allowed(room.member(EVE, EVE, "leave"));
    rejected(room.member(DAVE, DAVE, "leave"), new RegExp(`^${leaveRule(vid)}\\.1: `));
    rejected(room.member("@lou:a", "@lou:a", "leave"), new RegExp(`^${leaveRule(vid)}\\.1: `));
    if (V(vid).knocking) allowed(room.member("@kim:a", "@kim:a", "leave"));
    else rejected(room.member("@kim:a", "@kim:a", "leave"));
  });

  it.each(ALL)("v%s: kicks need the kick level and more power than the target", (vid) => {
    const room = setup(vid);
    allowed(room.member(ALICE, BOB, "leave"));
    allowed(room.member(BOB, EVE, "leave"));
    rejected(room.member(BOB, CAROL, "leave"), new RegExp(`^${leaveRule(vid)}\\.5: `)); // equal levels
    rejected(room.member(BOB, ALICE, "leave"), new RegExp(`^${leaveRule(vid)}\\.5: `));
    rejected(room.member("@lou:a", BOB, "leave"), new RegExp(`^${leaveRule(vid)}\\.2: `));
  });

  it.each(ALL)("v%s: .3 unbanning also needs the ban level", (vid) => {
    const room = setup(vid);
    rejected(room.member(BOB, DAVE, "leave"), new RegExp(`^${leaveRule(vid)}\\.3: `));
    allowed(room.member(ALICE, DAVE, "leave"));
  });
});

describe("membership: ban", () => {
  it.each(ALL)("v%s: bans need the ban level and more power than the target", (vid) => {
    const room = new Room(vid, {
      pl: { users: { ...(V(vid).privilegedCreators ? {} : { [ALICE]: 100 }), [BOB]: 50, [CAROL]: 50 }, ban: 50 },
      members: { [BOB]: "join", [CAROL]: "join" },
    });
    const r = `rule ${memberRule(vid)}\\.${V(vid).restrictedJoins ? 6 : 5}`;
    allowed(room.member(ALICE, BOB, "ban"));
    allowed(room.member(BOB, EVE, "ban"));
    rejected(room.member(BOB, CAROL, "ban"), new RegExp(`^${r}\\.3: `));
    rejected(room.member(EVE, BOB, "ban"), new RegExp(`^${r}\\.1: `));
  });
});

describe("membership: knock (v7+)", () => {
  it.each(ALL)("v%s: knock only exists from v7, on knock rooms (and knock_restricted from v10)", (vid) => {
    const v = V(vid);
    const r = `rule ${memberRule(vid)}\\.${v.restrictedJoins ? 7 : 6}`;
    const knockRoom = new Room(vid, { joinRule: "knock", members: { [BOB]: "invite", [CAROL]: "ban", [DAVE]: "join" } });
    if (!v.knocking) {
      rejected(knockRoom.member(EVE, EVE, "knock"), /unknown membership/);
      return;
    }
    allowed(knockRoom.member(EVE, EVE, "knock"));
    rejected(knockRoom.member(ALICE, EVE, "knock"), new RegExp(`^${r}\\.2: `));
    for (const user of [BOB, CAROL, DAVE]) rejected(knockRoom.member(user, user, "knock"), new RegExp(`^${r}\\.4: `));
    rejected(new Room(vid, { joinRule: "public" }).member(EVE, EVE, "knock"), new RegExp(`^${r}\\.1: `));
    const knockRestricted = new Room(vid, { joinRule: "knock_restricted" }).member(EVE, EVE, "knock");
    if (v.knockRestrictedJoinRule) allowed(knockRestricted);
    else rejected(knockRestricted, new RegExp(`^${r}\\.1: `));
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rules after membership

describe("sender must be joined (v1–v5, v12: 6; v6–v11: 5)", () => {
  it.each(ALL)("v%s", (vid) => {
    const room = new Room(vid, { members: { [BOB]: "invite", [CAROL]: "leave" } });
    allowed(room.check({ type: "m.room.message", sender: ALICE }));
    for (const user of [BOB, CAROL, EVE]) {
      rejected(room.check({ type: "m.room.message", sender: user }), new RegExp(`^rule ${memberRule(vid) + 1}: `));
    }
  });
});

describe("m.room.third_party_invite needs the invite level", () => {
  it.each(ALL)("v%s", (vid) => {
    const room = new Room(vid, {
      pl: { users: { ...(V(vid).privilegedCreators ? {} : { [ALICE]: 100 }), [BOB]: 10 }, invite: 50 },
      members: { [BOB]: "join" },
    });
    const tpi = (sender: string) => room.check({ type: "m.room.third_party_invite", sender, state_key: "t", content: {} });
    allowed(tpi(ALICE));
    rejected(tpi(BOB), new RegExp(`^rule ${memberRule(vid) + 2}\\.1: `));
  });
});

describe("required power level; state keys starting with @", () => {
  const setup = (vid: string) =>
    new Room(vid, {
      pl: {
        users: { ...(V(vid).privilegedCreators ? {} : { [ALICE]: 100 }), [BOB]: 10 },
        events: { "m.room.topic": 5, "m.room.message": 10 },
        state_default: 50,
        events_default: 20,
      },
      members: { [BOB]: "join" },
    });

  it.each(ALL)("v%s: events[type], else state_default / events_default", (vid) => {
    const room = setup(vid);
    const r = new RegExp(`^rule ${memberRule(vid) + 3}: `);
    allowed(room.check({ type: "m.room.topic", sender: BOB, state_key: "" }));
    allowed(room.check({ type: "m.room.message", sender: BOB }));
    rejected(room.check({ type: "m.room.name", sender: BOB, state_key: "" }), r);
    rejected(room.check({ type: "m.custom", sender: BOB }), r);
  });

  it.each(ALL)("v%s: a state_key starting with @ must be the sender", (vid) => {
    const room = setup(vid);
    allowed(room.check({ type: "m.custom.state", sender: ALICE, state_key: ALICE }));
    allowed(room.check({ type: "m.custom.state", sender: ALICE, state_key: "not-a-user" }));
    rejected(room.check({ type: "m.custom.state", sender: ALICE, state_key: BOB }), new RegExp(`^rule ${memberRule(vid) + 4}: `));
  });
});

describe("m.room.redaction: own rule in v1–v2 only", () => {
  it.each(ALL)("v%s", (vid) => {
    const v = V(vid);
    const room = new Room(vid, {
      pl: { users: { ...(v.privilegedCreators ? {} : { [ALICE]: 100 }) }, redact: 50 },
      members: { [BOB]: "join" },
    });
    const redact = (sender: string, target: string, eventId: string) =>
      room.check({
        type: "m.room.redaction",
        sender,
        event_id: eventId,
        ...(v.redactsInContent ? { content: { redacts: target } } : { redacts: target }),
      });
    // Bob (level 0 < redact 50) redacts an event from another server.
    const crossServer = redact(BOB, "$remote:b", "$r1:a");
    if (v.eventIdFormat === "v1") {
      rejected(crossServer, /^rule 11\.3: /);
      allowed(redact(BOB, "$local:a", "$r2:a"));
      allowed(redact(ALICE, "$remote:b", "$r3:a"));
      rejected(redact(ALICE, "$no-server", "$r4:a"), /^format: /);
    } else {
      allowed(crossServer);
    }
    rejected(room.check({ type: "m.room.redaction", sender: ALICE }), /^format: /);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Power levels (v1–v5, v12: rule 10; v6–v11: rule 9)

describe("m.room.power_levels", () => {
  const plRule = (vid: string) => memberRule(vid) + 5;
  const creatorsUsers = (vid: string, users: JsonObject = {}) =>
    V(vid).privilegedCreators ? users : { [ALICE]: 100, ...users };

  it.each(ALL)("v%s: string values accepted in v1–v9, rejected from v10", (vid) => {
    const room = new Room(vid, { pl: null });
    const result = room.check({
      type: "m.room.power_levels",
      sender: ALICE,
      state_key: "",
      content: { users: creatorsUsers(vid, { [BOB]: " +050 " }), ban: "50", events: { "m.room.name": "100" } },
    });
    if (V(vid).integerPowerLevels) rejected(result, new RegExp(`^rule ${plRule(vid)}\\.1: `));
    else allowed(result);
  });

  it.each(ALL)("v%s: non-integer strings are rejected everywhere", (vid) => {
    const room = new Room(vid, { pl: null });
    const contents: JsonObject[] = [{ ban: "fifty" }, { events: { x: "1.5" } }, { users: { [BOB]: "abc" } }, { ban: true }, { events: 5 }];
    for (const content of contents) {
      rejected(room.check({ type: "m.room.power_levels", sender: ALICE, state_key: "", content }));
    }
  });

  it.each(ALL)("v%s: floats are truncated in v1–v5 only (no canonical JSON)", (vid) => {
    const room = new Room(vid, { pl: null });
    const result = room.check({ type: "m.room.power_levels", sender: ALICE, state_key: "", content: { ban: 50.7 } });
    if (V(vid).strictCanonicalJson) rejected(result);
    else allowed(result);
    if (!V(vid).strictCanonicalJson) expect(parsePowerLevelsContent({ ban: 50.7 }, V(vid))).toMatchObject({ ok: true, levels: { ban: 50 } });
  });

  it.each(ALL)("v%s: users keys must be user IDs", (vid) => {
    const room = new Room(vid, { pl: null });
    rejected(
      room.check({ type: "m.room.power_levels", sender: ALICE, state_key: "", content: { users: { "not-a-user": 10 } } }),
      new RegExp(`^rule ${plRule(vid)}\\.${V(vid).integerPowerLevels ? 3 : 1}: `),
    );
  });

  it.each(ALL)("v%s: with no previous power levels event anything valid is allowed", (vid) => {
    const room = new Room(vid, { pl: null });
    allowed(
      room.check({ type: "m.room.power_levels", sender: ALICE, state_key: "", content: { users: creatorsUsers(vid, { [BOB]: 9000 }) } }),
    );
  });

  describe("changes against the current levels", () => {
    const setup = (vid: string) =>
      new Room(vid, {
        pl: {
          users: creatorsUsers(vid, { [BOB]: 50, [CAROL]: 50, [DAVE]: 10 }),
          events: { "m.room.tombstone": 100 },
          notifications: { room: 100 },
          ban: 100,
        },
        members: { [BOB]: "join" },
      });
    const change = (room: Room, sender: string, content: JsonObject) =>
      room.check({ type: "m.room.power_levels", sender, state_key: "", content });
    const current = (vid: string, over: JsonObject = {}): JsonObject => ({
      users: creatorsUsers(vid, { [BOB]: 50, [CAROL]: 50, [DAVE]: 10 }),
      events: { "m.room.tombstone": 100 },
      notifications: { room: 100 },
      ban: 100,
      ...over,
    });
    const sub = (vid: string, n: number) => {
      const v = V(vid);
      return new RegExp(`^rule ${plRule(vid)}\\.${n + (v.integerPowerLevels ? 2 : 0) + (v.privilegedCreators ? 1 : 0)}: `);
    };

    it.each(ALL)("v%s: Bob (50) may lower Dave and himself, not raise anyone above 50", (vid) => {
      const room = setup(vid);
      allowed(change(room, BOB, current(vid)));
      allowed(change(room, BOB, current(vid, { users: creatorsUsers(vid, { [BOB]: 40, [CAROL]: 50, [DAVE]: 0 }) })));
      allowed(change(room, BOB, current(vid, { users: creatorsUsers(vid, { [BOB]: 50, [CAROL]: 50, [DAVE]: 50 }) })));
      rejected(change(room, BOB, current(vid, { users: creatorsUsers(vid, { [BOB]: 51, [CAROL]: 50, [DAVE]: 10 }) })), sub(vid, 7));
      rejected(change(room, BOB, current(vid, { users: creatorsUsers(vid, { [BOB]: 50, [CAROL]: 40, [DAVE]: 10 }) })), sub(vid, 6));
      rejected(change(room, BOB, current(vid, { users: creatorsUsers(vid, { [BOB]: 50, [DAVE]: 10 }) })), sub(vid, 6));
    });

    it.each(ALL)("v%s: top-level levels: neither the old nor the new value may exceed the sender's", (vid) => {
      const room = setup(vid);
      rejected(change(room, BOB, current(vid, { ban: 50 })), sub(vid, 3));
      rejected(change(room, BOB, current(vid, { kick: 60 })), sub(vid, 3));
      allowed(change(room, BOB, current(vid, { kick: 20 })));
      const withoutBan = current(vid);
      delete withoutBan.ban;
      rejected(change(room, BOB, withoutBan), sub(vid, 3));
    });

    it.each(ALL)("v%s: events entries: old and new value checked", (vid) => {
      const room = setup(vid);
      rejected(change(room, BOB, current(vid, { events: { "m.room.tombstone": 50 } })), sub(vid, 4));
      rejected(change(room, BOB, current(vid, { events: {} })), sub(vid, 4));
      rejected(change(room, BOB, current(vid, { events: { "m.room.tombstone": 100, "m.room.name": 60 } })), sub(vid, 5));
      allowed(change(room, BOB, current(vid, { events: { "m.room.tombstone": 100, "m.room.name": 50 } })));
    });

    it.each(ALL)("v%s: notifications entries are only checked from v6", (vid) => {
      const room = setup(vid);
      const result = change(room, BOB, current(vid, { notifications: { room: 0 } }));
      if (V(vid).limitNotificationsPowerLevels) rejected(result, sub(vid, 4));
      else allowed(result);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Room creators: v1–v10 content.creator, v11 sender, v12 sender + additional_creators with infinite power

describe("creators and their power", () => {
  it.each(ALL)("v%s: without power levels the creator has 100 (v12: infinite), others 0", (vid) => {
    const room = new Room(vid, { pl: null, createContent: { creator: BOB, room_version: vid } });
    const state = stateLookupFromEvents(room.stateEvents);
    const v = V(vid);
    const creator = v.implicitRoomCreator ? ALICE : BOB;
    const other = v.implicitRoomCreator ? BOB : ALICE;
    expect(userPowerLevel(creator, state, v)).toBe(v.privilegedCreators ? CREATOR_POWER_LEVEL : 100);
    expect(userPowerLevel(other, state, v)).toBe(0);
  });

  it.each(ALL)("v%s: with power levels, users then users_default (creators infinite in v12)", (vid) => {
    const v = V(vid);
    const room = new Room(vid, { pl: { users: v.privilegedCreators ? { [BOB]: 75 } : { [ALICE]: 1, [BOB]: 75 }, users_default: 3 } });
    const state = stateLookupFromEvents(room.stateEvents);
    expect(userPowerLevel(ALICE, state, v)).toBe(v.privilegedCreators ? CREATOR_POWER_LEVEL : 1);
    expect(userPowerLevel(BOB, state, v)).toBe(75);
    expect(userPowerLevel(EVE, state, v)).toBe(3);
  });

  describe("v12 (MSC4289)", () => {
    const MAX = Number.MAX_SAFE_INTEGER;
    const setup = () =>
      new Room("12", {
        createContent: { room_version: "12", additional_creators: [DAVE] },
        pl: { users: { [BOB]: MAX, [CAROL]: 100 } },
        members: { [BOB]: "join", [CAROL]: "join", [DAVE]: "join" },
      });
    const pl = (room: Room, sender: string, users: JsonObject) =>
      room.check({ type: "m.room.power_levels", sender, state_key: "", content: { users } });

    it("additional creators are creators too", () => {
      const state = stateLookupFromEvents(setup().stateEvents);
      expect(userPowerLevel(DAVE, state, V("12"))).toBe(CREATOR_POWER_LEVEL);
      expect(userPowerLevel(DAVE, state, V("11"))).toBe(0);
    });

    it("10.4 creators must not be listed in users", () => {
      const room = setup();
      rejected(pl(room, ALICE, { [BOB]: MAX, [CAROL]: 100, [ALICE]: 100 }), /^rule 10\.4: /);
      rejected(pl(room, ALICE, { [BOB]: MAX, [CAROL]: 100, [DAVE]: 100 }), /^rule 10\.4: /);
    });

    it("creators have unlimited power: they may demote a user at the maximum level", () => {
      const room = setup();
      allowed(pl(room, ALICE, { [BOB]: 0, [CAROL]: 100 }));
      allowed(pl(room, DAVE, { [CAROL]: MAX }));
      allowed(room.member(DAVE, BOB, "ban"));
    });

    it("creators cannot be demoted, kicked or banned by anyone, even another creator or a MAX user", () => {
      const room = setup();
      rejected(room.member(BOB, ALICE, "ban"));
      rejected(room.member(BOB, DAVE, "leave"));
      rejected(room.member(DAVE, ALICE, "ban"));
      // Bob (MAX) still outranks Carol (100), but no power levels event can give him a creator's power.
      allowed(pl(room, BOB, { [BOB]: MAX, [CAROL]: 0 }));
      rejected(pl(room, BOB, { [BOB]: MAX, [CAROL]: 100, [ALICE]: 0 }), /^rule 10\.4: /);
    });

    it("in v11 the creator is an ordinary user once power levels exist", () => {
      const room = new Room("11", {
        pl: { users: { [ALICE]: 50, [BOB]: 100 } },
        members: { [BOB]: "join" },
      });
      allowed(room.member(BOB, ALICE, "ban"));
      allowed(room.check({ type: "m.room.power_levels", sender: BOB, state_key: "", content: { users: { [ALICE]: 0, [BOB]: 100 } } }));
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Power level helpers

describe("power level helpers", () => {
  it("parsePowerLevelValue: integer strings (v1–v9) with whitespace, sign, leading zeros", () => {
    const v9 = V("9");
    expect(parsePowerLevelValue(" +0100 ", v9)).toBe(100);
    expect(parsePowerLevelValue("-7", v9)).toBe(-7);
    expect(parsePowerLevelValue("-0", v9)).toBe(0);
    expect(parsePowerLevelValue("1.5", v9)).toBeUndefined();
    expect(parsePowerLevelValue("1e3", v9)).toBeUndefined();
    expect(parsePowerLevelValue("", v9)).toBeUndefined();
    expect(parsePowerLevelValue("99999999999999999999", v9)).toBeUndefined();
    expect(parsePowerLevelValue("100", V("10"))).toBeUndefined();
    expect(parsePowerLevelValue(100, V("10"))).toBe(100);
    expect(parsePowerLevelValue(2 ** 53, V("10"))).toBeUndefined();
    expect(parsePowerLevelValue(-12.9, V("1"))).toBe(-12);
    expect(parsePowerLevelValue(12.9, V("6"))).toBeUndefined();
    expect(parsePowerLevelValue(null, V("1"))).toBeUndefined();
  });

  it("requiredPowerLevel and the defaults", () => {
    const levels = powerLevelsFromContent({ events: { "m.room.name": 70 }, state_default: 40, events_default: 5 }, V("10"));
    expect(requiredPowerLevel("m.room.name", true, levels)).toBe(70);
    expect(requiredPowerLevel("m.room.name", false, levels)).toBe(70);
    expect(requiredPowerLevel("m.room.topic", true, levels)).toBe(40);
    expect(requiredPowerLevel("m.room.message", false, levels)).toBe(5);
    expect(requiredPowerLevel("m.room.topic", true, DEFAULT_POWER_LEVELS)).toBe(50);
    expect(requiredPowerLevel("m.room.message", false, DEFAULT_POWER_LEVELS)).toBe(0);
    expect(DEFAULT_POWER_LEVELS).toMatchObject({ ban: 50, kick: 50, redact: 50, invite: 0, users_default: 0 });
  });

  it("powerLevelsFromContent falls back to defaults for unreadable values of accepted events", () => {
    const levels = powerLevelsFromContent({ ban: "x", kick: 10, users: { [BOB]: "nope", [CAROL]: 5 } }, V("10"));
    expect(levels.ban).toBe(50);
    expect(levels.kick).toBe(10);
    expect(levels.users.get(BOB)).toBeUndefined();
    expect(levels.users.get(CAROL)).toBe(5);
  });

  it("checkPowerLevelsChange: a value equal after parsing is not an alteration", () => {
    allowed(
      checkPowerLevelsChange({
        sender: BOB,
        senderLevel: 10,
        oldContent: { ban: "100", users: { [BOB]: 10 } },
        newContent: { ban: 100, users: { [BOB]: "10" } },
        version: V("9"),
      }),
    );
  });
});
