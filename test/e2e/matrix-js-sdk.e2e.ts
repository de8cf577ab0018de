/**
 * matrix-js-sdk (unmodified, the npm devDependency, running in Node) against the real Axon Worker started by the
 * e2e project's global setup (test/e2e/project.ts). Two users go through what a client does: register with
 * user-interactive auth (m.login.dummy), log in, create a room, invite, join, talk both ways with the SDK's sync
 * loop running, paginate history, type, send read receipts, change the room's name and topic, and leave.
 *
 * Everything observed here is observed the way an application would: through the SDK's event emitters and its
 * room model, fed by its own /sync loop. The steps share state and run in order.
 */
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import {
  ClientEvent,
  createClient,
  Direction,
  EventType,
  KnownMembership,
  MatrixError,
  MsgType,
  Preset,
  ReceiptType,
  RoomEvent,
  RoomMemberEvent,
  RoomStateEvent,
  SyncState,
  type MatrixClient,
  type MatrixEvent,
  type Room,
} from "matrix-js-sdk";
import type { Logger } from "matrix-js-sdk/lib/logger.js";

/**
 * The SDK logs every sync step, and every refused request (some are refused on purpose here), through the logger
 * its client is given. Keep the test output readable: E2E_VERBOSE=1 shows warnings and errors.
 */
const quiet: Logger = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (...msg: unknown[]) => void (process.env.E2E_VERBOSE && console.warn(...msg)),
  error: (...msg: unknown[]) => void (process.env.E2E_VERBOSE && console.error(...msg)),
  getChild: () => quiet,
};

const baseUrl = inject("axonBaseUrl");
const WAIT_MS = 15_000;
/** Messages sent for the pagination step: more than a few pages of 20 and well beyond the initial sync limit. */
const HISTORY = 65;

/** Resolves when `emitter` emits `name` with arguments satisfying `accept`; rejects after WAIT_MS. Attach before acting. */
function waitForEmit<A extends unknown[]>(
  emitter: { on(name: string, fn: (...args: A) => void): unknown; off(name: string, fn: (...args: A) => void): unknown },
  name: string,
  accept: (...args: A) => boolean,
  what: string,
): Promise<A> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(name, listener);
      reject(new Error(`timed out waiting for ${what}`));
    }, WAIT_MS);
    const listener = (...args: A) => {
      let ok = false;
      try {
        ok = accept(...args);
      } catch (e) {
        clearTimeout(timer);
        emitter.off(name, listener);
        reject(e);
        return;
      }
      if (!ok) return;
      clearTimeout(timer);
      emitter.off(name, listener);
      resolve(args);
    };
    emitter.on(name, listener);
  });
}

type Emitter = Parameters<typeof waitForEmit>[0];
const em = (c: MatrixClient) => c as unknown as Emitter;

/** A live (not paginated) m.room.message in `roomId` whose body satisfies `accept`, as the SDK's timeline emits it. */
function liveMessage(client: MatrixClient, roomId: string, accept: (body: string) => boolean, what: string): Promise<MatrixEvent> {
  return waitForEmit<[MatrixEvent, Room | undefined, boolean | undefined]>(
    em(client) as never,
    RoomEvent.Timeline,
    (event, room, toStartOfTimeline) =>
      room?.roomId === roomId && !toStartOfTimeline && event.getType() === EventType.RoomMessage && accept(String(event.getContent().body)),
    what,
  ).then(([event]) => event);
}

/** Registers through the SDK's registerRequest: a first call that answers 401 with the UIA flows, then m.login.dummy. */
async function register(username: string, password: string) {
  const client = createClient({ baseUrl, logger: quiet });
  let session: string | undefined;
  try {
    await client.registerRequest({ username, password });
    throw new Error("registration without auth should start user-interactive auth");
  } catch (e) {
    if (!(e instanceof MatrixError)) throw e;
    expect(e.httpStatus).toBe(401);
    const flows = (e.data.flows ?? []) as { stages: string[] }[];
    expect(flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.dummy")).toBe(true);
    session = e.data.session as string | undefined;
    expect(typeof session).toBe("string");
  }
  const res = await client.registerRequest({ username, password, auth: { type: "m.login.dummy", session }, initial_device_display_name: "registration" });
  expect(res.user_id).toMatch(new RegExp(`^@${username}:`));
  expect(typeof res.access_token).toBe("string");
  return res;
}

async function loginClient(username: string, password: string): Promise<MatrixClient> {
  const anonymous = createClient({ baseUrl, logger: quiet });
  const flows = await anonymous.loginFlows();
  expect(flows.flows.map((f) => f.type)).toContain("m.login.password");
  const res = await anonymous.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: username },
    password,
    initial_device_display_name: `${username} e2e`,
  });
  const client = createClient({ baseUrl, logger: quiet, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id, timelineSupport: true });
  const who = await client.whoami();
  expect(who.user_id).toBe(res.user_id);
  expect(who.device_id).toBe(res.device_id);
  return client;
}

/** startClient and wait for the first sync to be processed. */
async function start(client: MatrixClient, initialSyncLimit = 10, lazyLoadMembers = false): Promise<void> {
  const prepared = waitForEmit<[SyncState, SyncState | null]>(
    em(client) as never,
    ClientEvent.Sync,
    (state) => {
      if (state === SyncState.Error) throw new Error(`${client.getUserId()}: sync error`);
      return state === SyncState.Prepared;
    },
    `${client.getUserId()}: first sync`,
  );
  await client.startClient({ initialSyncLimit, lazyLoadMembers });
  await prepared;
}

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const alice = { name: `alice_${suffix}`, password: "correct horse battery staple" };
const bob = { name: `bob_${suffix}`, password: "tr0ub4dor&3 but longer" };

describe("matrix-js-sdk against the real Axon", () => {
  const clients: MatrixClient[] = [];
  let a: MatrixClient;
  let b: MatrixClient;
  let aliceId: string;
  let bobId: string;
  let roomId: string;

  beforeAll(() => {
    expect(baseUrl, "the e2e global setup provides axonBaseUrl").toMatch(/^http:\/\//);
    // Some of the SDK's modules log through their own module-level loggers, straight to the console.
    if (!process.env.E2E_VERBOSE) for (const level of ["log", "info", "debug"] as const) vi.spyOn(console, level).mockImplementation(() => {});
  });

  afterAll(() => {
    for (const c of clients) c.stopClient();
    vi.restoreAllMocks();
  });

  it("registers two users through user-interactive auth (m.login.dummy)", async () => {
    const ra = await register(alice.name, alice.password);
    const rb = await register(bob.name, bob.password);
    aliceId = ra.user_id;
    bobId = rb.user_id;
    expect(aliceId).not.toBe(bobId);
    // The same name again is refused with the spec's error.
    await expect(createClient({ baseUrl, logger: quiet }).registerRequest({ username: alice.name, password: "x", auth: { type: "m.login.dummy" } })).rejects.toMatchObject({
      errcode: "M_USER_IN_USE",
    });
  });

  it("logs both in with a password and starts their sync loops", async () => {
    a = await loginClient(alice.name, alice.password);
    b = await loginClient(bob.name, bob.password);
    clients.push(a, b);
    // A wrong password is refused.
    await expect(createClient({ baseUrl, logger: quiet }).loginWithPassword(alice.name, "wrong")).rejects.toMatchObject({ errcode: "M_FORBIDDEN" });
    await Promise.all([start(a), start(b)]);
    expect(a.isInitialSyncComplete()).toBe(true);
    expect(b.isInitialSyncComplete()).toBe(true);
  });

  it("creates a room, invites the second user, who sees the invite in their sync and joins", async () => {
    const created = await a.createRoom({ name: "e2e room", topic: "first topic", preset: Preset.PrivateChat });
    roomId = created.room_id;
    expect(roomId).toMatch(/^!/);

    const invited = waitForEmit<[Room]>(em(b) as never, ClientEvent.Room, (room) => room.roomId === roomId, "bob: invited room appears");
    const aliceSeesInvite = waitForEmit<[MatrixEvent, { userId: string; membership?: string }]>(
      em(a) as never,
      RoomMemberEvent.Membership,
      (_e, member) => member.userId === bobId && member.membership === KnownMembership.Invite,
      "alice: bob's invite",
    );
    await a.invite(roomId, bobId);
    const [room] = await invited;
    await aliceSeesInvite;
    expect(room.getMyMembership()).toBe(KnownMembership.Invite);
    // The invite carries stripped state: the name is known before joining.
    expect(room.name).toBe("e2e room");

    const aliceSeesJoin = waitForEmit<[MatrixEvent, { userId: string; membership?: string }]>(
      em(a) as never,
      RoomMemberEvent.Membership,
      (_e, member) => member.userId === bobId && member.membership === KnownMembership.Join,
      "alice: bob's join",
    );
    const bobJoined = waitForEmit<[Room, string]>(em(b) as never, RoomEvent.MyMembership, (r, membership) => r.roomId === roomId && membership === KnownMembership.Join, "bob: joined");
    await b.joinRoom(roomId);
    await Promise.all([aliceSeesJoin, bobJoined]);

    const bRoom = b.getRoom(roomId)!;
    expect(bRoom.getMyMembership()).toBe(KnownMembership.Join);
    expect(bRoom.name).toBe("e2e room");
    expect(bRoom.currentState.getStateEvents(EventType.RoomTopic, "")?.getContent().topic).toBe("first topic");
    expect(bRoom.getJoinedMembers().map((m) => m.userId).sort()).toEqual([aliceId, bobId].sort());
    // The SDK applies the room summary after it has emitted the timeline's events: poll for it.
    await expect.poll(() => a.getRoom(roomId)!.getJoinedMemberCount()).toBe(2);
  });

  it("sends messages both ways; each arrives in the other's timeline through the sync loop", async () => {
    const bobGets = liveMessage(b, roomId, (body) => body === "hello bob", "bob: alice's message");
    const sent = await a.sendTextMessage(roomId, "hello bob");
    const got = await bobGets;
    expect(got.getId()).toBe(sent.event_id);
    expect(got.getSender()).toBe(aliceId);
    expect(got.getContent().msgtype).toBe(MsgType.Text);

    const aliceGets = liveMessage(a, roomId, (body) => body === "hi alice", "alice: bob's reply");
    const reply = await b.sendMessage(roomId, { msgtype: MsgType.Text, body: "hi alice", format: "org.matrix.custom.html", formatted_body: "<b>hi</b> alice" });
    const gotReply = await aliceGets;
    expect(gotReply.getId()).toBe(reply.event_id);
    expect(gotReply.getSender()).toBe(bobId);
    expect(gotReply.getContent().formatted_body).toBe("<b>hi</b> alice");

    // The sender's own timeline shows its event once, as sent (the local echo is replaced by the remote echo).
    const aTimeline = a.getRoom(roomId)!.getLiveTimeline().getEvents().filter((e) => e.getType() === EventType.RoomMessage);
    expect(aTimeline.map((e) => e.getContent().body)).toEqual(["hello bob", "hi alice"]);
    expect(aTimeline.map((e) => e.getId())).toEqual([sent.event_id, reply.event_id]);
  });

  it(`paginates ${HISTORY} messages back with scrollback and /messages: each exactly once, in order`, async () => {
    const bodies = Array.from({ length: HISTORY }, (_, i) => `history ${i}`);
    const last = liveMessage(b, roomId, (body) => body === bodies[HISTORY - 1], "bob: the last history message");
    const ids: string[] = [];
    for (const body of bodies) ids.push((await a.sendTextMessage(roomId, body)).event_id);
    await last;
    // Bob's live sync saw every one of them, once, in order.
    const bobLive = b.getRoom(roomId)!.getLiveTimeline().getEvents().filter((e) => String(e.getContent().body).startsWith("history "));
    expect(bobLive.map((e) => e.getId())).toEqual(ids);

    // A fresh client (new device of bob, lazy-loading members as Element does) starts with a short timeline and
    // scrolls back to the room's creation.
    const fresh = await loginClient(bob.name, bob.password);
    clients.push(fresh);
    await start(fresh, 5, true);
    const room = fresh.getRoom(roomId)!;
    expect(room.getLiveTimeline().getEvents().length).toBeLessThan(HISTORY);
    // Lazy loading: only the timeline's senders (and the user) came with the sync; the rest through /members.
    await room.loadMembersIfNeeded();
    expect(room.getJoinedMembers().map((m) => m.userId).sort()).toEqual([aliceId, bobId].sort());
    for (let i = 0; i < 30 && room.oldState.paginationToken !== null; i++) await fresh.scrollback(room, 20);
    expect(room.oldState.paginationToken, "scrollback reached the start of the room").toBeNull();
    const events = room.getLiveTimeline().getEvents();
    expect(events[0]!.getType()).toBe(EventType.RoomCreate);
    const eventIds = events.map((e) => e.getId());
    expect(new Set(eventIds).size, "no event twice").toBe(eventIds.length);
    const history = events.filter((e) => String(e.getContent().body).startsWith("history "));
    expect(history.map((e) => e.getId())).toEqual(ids);
    expect(history.map((e) => e.getContent().body)).toEqual(bodies);
    const messages = events.filter((e) => e.getType() === EventType.RoomMessage).map((e) => e.getContent().body);
    expect(messages).toEqual(["hello bob", "hi alice", ...bodies]);

    // The same history through createMessagesRequest: backwards from the end (no from token), 25 at a time.
    const backwards: string[] = [];
    let from: string | null = null;
    for (let page = 0; page < 20; page++) {
      const res = await a.createMessagesRequest(roomId, from, 25, Direction.Backward);
      expect(res.chunk.length).toBeLessThanOrEqual(25);
      backwards.push(...res.chunk.map((e) => e.event_id!));
      if (!res.end) break;
      from = res.end;
    }
    expect(backwards.reverse()).toEqual(eventIds);

    // And forwards from the start of the room (no from token, dir=f).
    const forwards: string[] = [];
    from = null;
    for (let page = 0; page < 20; page++) {
      const res = await a.createMessagesRequest(roomId, from, 25, Direction.Forward);
      forwards.push(...res.chunk.map((e) => e.event_id!));
      if (!res.end || res.chunk.length === 0) break;
      from = res.end;
    }
    expect(forwards).toEqual(eventIds);
  });

  it("shows typing notifications to the other member, and their end", async () => {
    const typingOn = waitForEmit<[MatrixEvent, { userId: string; typing: boolean; roomId: string }]>(
      em(b) as never,
      RoomMemberEvent.Typing,
      (_e, member) => member.roomId === roomId && member.userId === aliceId && member.typing,
      "bob: alice typing",
    );
    await a.sendTyping(roomId, true, 20_000);
    await typingOn;
    expect(b.getRoom(roomId)!.getMember(aliceId)!.typing).toBe(true);

    const typingOff = waitForEmit<[MatrixEvent, { userId: string; typing: boolean; roomId: string }]>(
      em(b) as never,
      RoomMemberEvent.Typing,
      (_e, member) => member.roomId === roomId && member.userId === aliceId && !member.typing,
      "bob: alice stopped typing",
    );
    await a.sendTyping(roomId, false, 0);
    await typingOff;
    expect(b.getRoom(roomId)!.getMember(aliceId)!.typing).toBe(false);
  });

  it("shows a read receipt to the other member", async () => {
    const bRoom = b.getRoom(roomId)!;
    const lastEvent = bRoom.getLiveTimeline().getEvents().filter((e) => e.getType() === EventType.RoomMessage).at(-1)!;
    expect(lastEvent.getSender()).toBe(aliceId);
    const aliceSees = waitForEmit<[MatrixEvent, Room]>(
      em(a) as never,
      RoomEvent.Receipt,
      (_e, room) => room.roomId === roomId && room.getEventReadUpTo(bobId) === lastEvent.getId(),
      "alice: bob's read receipt",
    );
    await b.sendReadReceipt(lastEvent, ReceiptType.Read);
    const [receipt] = await aliceSees;
    const content = receipt.getContent() as Record<string, Record<string, Record<string, { ts: number }>>>;
    expect(content[lastEvent.getId()!]?.[ReceiptType.Read]?.[bobId]?.ts).toBeTypeOf("number");
    expect(a.getRoom(roomId)!.getUsersReadUpTo(a.getRoom(roomId)!.findEventById(lastEvent.getId()!)!)).toContain(bobId);
  });

  it("changes the room's name and topic; the other member's room model follows", async () => {
    const nameSeen = waitForEmit<[Room]>(em(b) as never, RoomEvent.Name, (room) => room.roomId === roomId && room.name === "renamed room", "bob: new name");
    const topicSeen = waitForEmit<[MatrixEvent]>(
      em(b) as never,
      RoomStateEvent.Events,
      (event) => event.getRoomId() === roomId && event.getType() === EventType.RoomTopic && event.getContent().topic === "second topic",
      "bob: new topic",
    );
    await a.setRoomName(roomId, "renamed room");
    await a.setRoomTopic(roomId, "second topic");
    await Promise.all([nameSeen, topicSeen]);
    const bRoom = b.getRoom(roomId)!;
    expect(bRoom.name).toBe("renamed room");
    expect(bRoom.currentState.getStateEvents(EventType.RoomTopic, "")!.getContent().topic).toBe("second topic");
    expect(bRoom.currentState.getStateEvents(EventType.RoomTopic, "")!.getSender()).toBe(aliceId);
    // Bob (power level 0 in a private chat) may not rename it: the default state level is 50.
    await expect(b.setRoomName(roomId, "bob's room")).rejects.toMatchObject({ errcode: "M_FORBIDDEN", httpStatus: 403 });
  });

  it("leaves: the leaver's client moves the room to left, the other sees the membership change", async () => {
    const aliceSees = waitForEmit<[MatrixEvent, { userId: string; membership?: string }]>(
      em(a) as never,
      RoomMemberEvent.Membership,
      (_e, member) => member.userId === bobId && member.membership === KnownMembership.Leave,
      "alice: bob left",
    );
    const bobLeft = waitForEmit<[Room, string]>(em(b) as never, RoomEvent.MyMembership, (r, membership) => r.roomId === roomId && membership === KnownMembership.Leave, "bob: left");
    await b.leave(roomId);
    await Promise.all([aliceSees, bobLeft]);
    expect(a.getRoom(roomId)!.getJoinedMembers().map((m) => m.userId)).toEqual([aliceId]);
    expect((await b.getJoinedRooms()).joined_rooms).not.toContain(roomId);
    // Having left, bob can no longer send there.
    await expect(b.sendTextMessage(roomId, "still here?")).rejects.toMatchObject({ httpStatus: 403, errcode: "M_FORBIDDEN" });
    // What alice says afterwards is not visible to bob: his history ends at his leave.
    await a.sendTextMessage(roomId, "after bob left");
    const page = await b.createMessagesRequest(roomId, null, 10, Direction.Backward);
    expect(page.chunk[0]).toMatchObject({ type: EventType.RoomMember, state_key: bobId, content: { membership: KnownMembership.Leave } });
    expect(page.chunk.map((e) => e.content.body)).not.toContain("after bob left");
  });
});
