/**
 * Synthetic rooms for state resolution tests and benchmarks: a builder that creates events with correct
 * `auth_events` (per the auth events selection) on top of a running state, and `buildForkedRoom`, which makes a
 * room with N joined members and two concurrent forks of it.
 */
import type { AuthEvent } from "../../src/protocol/auth/types";
import type { JsonObject, StateMap } from "../../src/protocol/events";
import { stateKey } from "../../src/protocol/events";
import { roomVersion, type RoomVersion } from "../../src/protocol/room-versions";
import { authEventTypesFor } from "../../src/protocol/auth";
import type { StateResEventStore } from "../../src/protocol/state-res";

export interface EventSpec {
  type: string;
  state_key?: string;
  sender: string;
  content: JsonObject;
  /** Defaults to a generated ID. */
  id?: string;
  /** Defaults to the builder's clock (incremented per event). */
  ts?: number;
  prev?: string[];
}

/** Builds events into an in-memory store; `state` maps passed to `send` are updated in place. */
export class RoomBuilder {
  readonly events = new Map<string, AuthEvent>();
  readonly version: RoomVersion;
  roomId = "!room:example.org";
  private clock = 0;
  private counter = 0;

  constructor(version: RoomVersion | string) {
    const v = typeof version === "string" ? roomVersion(version) : version;
    if (!v) throw new Error(`unknown room version ${String(version)}`);
    this.version = v;
  }

  /** A store over the built events (optionally hiding some IDs, for partial-state tests). */
  store(hidden: ReadonlySet<string> = new Set()): StateResEventStore {
    return { getEvent: (id) => (hidden.has(id) ? undefined : this.events.get(id)) };
  }

  /** Creates the event with auth events selected from `state`, applies it to `state` if it is a state event. */
  send(state: StateMap, spec: EventSpec): AuthEvent {
    const id = spec.id ?? `$e${++this.counter}`;
    const isCreate = spec.type === "m.room.create";
    if (isCreate && this.version.roomIdFromCreateEvent) this.roomId = "!" + id.slice(1);
    const draft: AuthEvent = {
      event_id: id,
      type: spec.type,
      sender: spec.sender,
      content: spec.content,
      origin_server_ts: spec.ts ?? ++this.clock,
      prev_events: spec.prev ?? [],
      auth_events: [],
    };
    if (spec.state_key !== undefined) draft.state_key = spec.state_key;
    if (!(isCreate && this.version.roomIdFromCreateEvent)) draft.room_id = this.roomId;
    if (!isCreate) {
      const auth: string[] = [];
      for (const [type, key] of authEventTypesFor(draft, this.version)) {
        const a = state.get(stateKey(type, key));
        if (a !== undefined && !auth.includes(a)) auth.push(a);
      }
      draft.auth_events = auth;
    }
    this.events.set(id, draft);
    if (spec.state_key !== undefined) state.set(stateKey(spec.type, spec.state_key), id);
    return draft;
  }

  /** create, creator join, power levels (creator 100 plus `users`), public join rules. */
  bootstrap(creator: string, users: Record<string, number> = {}): StateMap {
    const state: StateMap = new Map();
    const createContent: JsonObject = { room_version: this.version.id };
    if (!this.version.implicitRoomCreator) createContent["creator"] = creator;
    // Room version 12 room IDs are the create event's ID, which must look like a reference hash.
    const createId = this.version.roomIdFromCreateEvent ? "$" + "create".padEnd(43, "A") : "$create";
    this.send(state, { id: createId, type: "m.room.create", state_key: "", sender: creator, content: createContent });
    this.join(state, creator);
    const plUsers: JsonObject = this.version.privilegedCreators ? { ...users } : { [creator]: 100, ...users };
    this.send(state, { id: "$pl0", type: "m.room.power_levels", state_key: "", sender: creator, content: { users: plUsers } });
    this.send(state, { id: "$jr0", type: "m.room.join_rules", state_key: "", sender: creator, content: { join_rule: "public" } });
    return state;
  }

  join(state: StateMap, user: string, id?: string): AuthEvent {
    return this.send(state, { type: "m.room.member", state_key: user, sender: user, content: { membership: "join" }, ...(id ? { id } : {}) });
  }

  member(state: StateMap, sender: string, target: string, membership: string, id?: string): AuthEvent {
    return this.send(state, { type: "m.room.member", state_key: target, sender, content: { membership }, ...(id ? { id } : {}) });
  }
}

export interface ForkedRoomOptions {
  /** Joined members besides the creator (default 10 000). */
  members?: number;
  /** Room version (default "11"; "12" exercises state resolution v2.1). */
  version?: string;
  /** New members joining on each fork (default 50; distinct users per fork). */
  forkJoins?: number;
  /** Members leaving on fork A and members kicked by the moderator on fork B (default 50 each). */
  forkLeaves?: number;
}

export interface ForkedRoom {
  builder: RoomBuilder;
  version: RoomVersion;
  store: StateResEventStore;
  /** State before the fork. */
  base: StateMap;
  /** State at the end of each fork. */
  forks: [StateMap, StateMap];
  creator: string;
  moderator: string;
}

/**
 * A room with `members` joined users, then two concurrent forks:
 * A: the creator raises a member to moderator, changes the topic, `forkJoins` users join, `forkLeaves` leave;
 * B: the moderator (level 50 from the start) changes the topic and name, `forkJoins` other users join, and it
 *    kicks `forkLeaves` members (power events).
 */
export function buildForkedRoom(options: ForkedRoomOptions = {}): ForkedRoom {
  const members = options.members ?? 10_000;
  const forkJoins = options.forkJoins ?? 50;
  const forkLeaves = options.forkLeaves ?? 50;
  const b = new RoomBuilder(options.version ?? "11");
  const creator = "@creator:example.org";
  const moderator = "@mod:example.org";
  const user = (i: number): string => `@u${i}:example.org`;
  const base = b.bootstrap(creator, { [moderator]: 50 });
  b.join(base, moderator);
  for (let i = 0; i < members - 1; i++) b.join(base, user(i));

  const a = new Map(base);
  const plUsers: JsonObject = b.version.privilegedCreators
    ? { [moderator]: 50, [user(0)]: 50 }
    : { [creator]: 100, [moderator]: 50, [user(0)]: 50 };
  b.send(a, { type: "m.room.power_levels", state_key: "", sender: creator, content: { users: plUsers } });
  b.send(a, { type: "m.room.topic", state_key: "", sender: creator, content: { topic: "fork A" } });
  for (let i = 0; i < forkJoins; i++) b.join(a, `@a${i}:example.org`);
  for (let i = 0; i < forkLeaves; i++) b.member(a, user(1 + i), user(1 + i), "leave");

  const bb = new Map(base);
  b.send(bb, { type: "m.room.topic", state_key: "", sender: moderator, content: { topic: "fork B" } });
  b.send(bb, { type: "m.room.name", state_key: "", sender: moderator, content: { name: "B" } });
  for (let i = 0; i < forkJoins; i++) b.join(bb, `@b${i}:example.org`);
  for (let i = 0; i < forkLeaves; i++) b.member(bb, moderator, user(1 + forkLeaves + i), "leave");

  return { builder: b, version: b.version, store: b.store(), base, forks: [a, bb], creator, moderator };
}
