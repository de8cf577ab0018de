/**
 * Ignoring users (m.ignored_user_list): ignored senders' non-state events are not served — /sync timelines and
 * notification counts, /messages, /context, /event, /relations, /search — invites from them are not shown, and
 * un-ignoring shows everything again.
 */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, type TestUser } from "./helpers";
import { V3, enc, expectError, invite, join, newRoom, putState, sendText } from "./rooms-helpers";
import { bodies, sync, type SyncBody } from "./sync-helpers";

const ignore = (user: TestUser, ...users: string[]) =>
  call("PUT", `${V3}/user/${enc(user.userId)}/account_data/m.ignored_user_list`, {
    user,
    body: { ignored_users: Object.fromEntries(users.map((u) => [u, {}])) },
  });

type Ev = { type: string; sender: string; content: Record<string, unknown>; event_id: string };
const messages = async (user: TestUser, roomId: string) =>
  (await call<{ chunk: Ev[] }>("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=50`, { user })).chunk;
const texts = (evs: Ev[]) => evs.filter((e) => e.type === "m.room.message").map((e) => e.content.body);

async function threeInARoom() {
  const alice = await createUserDirect();
  const bob = await createUserDirect();
  const carol = await createUserDirect();
  const roomId = await newRoom(carol, { preset: "public_chat" });
  await join(alice, roomId);
  await join(bob, roomId);
  return { alice, bob, carol, roomId };
}

describe("m.ignored_user_list", () => {
  it("hides an ignored user's messages from /messages, /event, /context and /sync, but not their state events", async () => {
    const { alice, bob, carol, roomId } = await threeInARoom();
    await ignore(alice, bob.userId);
    const fromBob = await sendText(bob, roomId, "bob speaks");
    await sendText(carol, roomId, "carol speaks");
    await putState(bob, roomId, "m.room.topic", { topic: "set by bob" }).catch(() => undefined); // bob may lack power: fine
    const topicByCarol = await putState(carol, roomId, "m.room.topic", { topic: "set by carol" });

    const chunk = await messages(alice, roomId);
    expect(texts(chunk)).toEqual(["carol speaks"]);
    // Bob's join (a state event) is still there.
    expect(chunk.some((e) => e.type === "m.room.member" && e.sender === bob.userId)).toBe(true);
    expect(chunk.some((e) => e.event_id === topicByCarol)).toBe(true);
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(fromBob)}`, { user: alice }, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/context/${enc(fromBob)}`, { user: alice }, 404, "M_NOT_FOUND");
    // Carol ignores no one and sees everything.
    expect(texts(await messages(carol, roomId))).toEqual(["carol speaks", "bob speaks"]);

    const initial: SyncBody = await sync(alice);
    expect(bodies(initial.rooms.join[roomId])).toEqual(["carol speaks"]);
    await sendText(bob, roomId, "bob again");
    await sendText(carol, roomId, "carol again");
    const next = await sync(alice, { since: initial.next_batch });
    expect(bodies(next.rooms.join[roomId])).toEqual(["carol again"]);
  });

  it("ignored users' messages do not count as unread notifications", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    // A direct-message-like room of two: every message notifies (the spec's default one-to-one rule).
    const roomId = await newRoom(alice, { preset: "trusted_private_chat", invite: [bob.userId] });
    await join(bob, roomId);
    await sendText(bob, roomId, "one");
    const before = await sync(alice);
    expect(before.rooms.join[roomId]!.unread_notifications!.notification_count).toBe(1);
    await ignore(alice, bob.userId);
    await sendText(bob, roomId, "two");
    const after = await sync(alice);
    expect(after.rooms.join[roomId]!.unread_notifications!.notification_count).toBe(0);
  });

  it("does not show invites from ignored users", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    await ignore(alice, bob.userId);
    const fromBob = await newRoom(bob);
    const fromCarol = await newRoom(carol);
    await invite(bob, fromBob, alice.userId);
    await invite(carol, fromCarol, alice.userId);
    const s = await sync(alice);
    expect(Object.keys(s.rooms.invite)).toEqual([fromCarol]);
  });

  it("hides ignored users' thread replies from /relations and their messages from /search", async () => {
    const { alice, bob, carol, roomId } = await threeInARoom();
    await ignore(alice, bob.userId);
    const root = await sendText(carol, roomId, "thread root");
    const reply = (user: TestUser, body: string) =>
      call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/${body.replace(/\W/g, "")}${Date.now()}`, {
        user,
        body: { msgtype: "m.text", body, "m.relates_to": { rel_type: "m.thread", event_id: root } },
      });
    await reply(bob, "reply from bob zebra");
    await reply(carol, "reply from carol zebra");
    const rel = await call<{ chunk: Ev[] }>("GET", `/_matrix/client/v1/rooms/${enc(roomId)}/relations/${enc(root)}`, { user: alice });
    expect(rel.chunk.map((e) => e.content.body)).toEqual(["reply from carol zebra"]);

    const search = await call<{ search_categories: { room_events: { results: { result: Ev }[] } } }>("POST", `${V3}/search`, {
      user: alice,
      body: { search_categories: { room_events: { search_term: "zebra", filter: { rooms: [roomId] } } } },
    });
    expect(search.search_categories.room_events.results.map((r) => r.result.sender)).toEqual([carol.userId]);
  });

  it("un-ignoring shows the user's messages again; malformed lists ignore no one", async () => {
    const { alice, bob, roomId } = await threeInARoom();
    await sendText(bob, roomId, "hello from bob");
    await ignore(alice, bob.userId);
    expect(texts(await messages(alice, roomId))).toEqual([]);
    await ignore(alice);
    expect(texts(await messages(alice, roomId))).toEqual(["hello from bob"]);
    await call("PUT", `${V3}/user/${enc(alice.userId)}/account_data/m.ignored_user_list`, { user: alice, body: { ignored_users: ["not", "a", "map"] } });
    expect(texts(await messages(alice, roomId))).toEqual(["hello from bob"]);
    expect((await request("GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b`)).status).toBe(401);
  });
});
