/**
 * Three Axon homeservers in one vitest run: test.local (the Worker under test), hs2.test and hs3.test
 * (auxiliary Workers running the same code, see harness-config.ts), federating over FEDERATION_OVERRIDES and
 * Miniflare's fetch routing. No fakes: real X-Matrix signing and key fetches, real DestinationDOs, real /send.
 *
 * This test predates remote joins: it copies the room's history onto the joining server (`seedRoom`) and then has
 * its user join locally — the join is a real federated event. Real remote joins (make_join/send_join), backfill
 * and gap filling between the servers are in scenarios.test.ts.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import type { Env } from "../../src/env";
import type { PDU } from "../../src/protocol/events";
import type { TestControl } from "./aux-entry";
import { roomStub } from "../rooms/helpers";
import { RUNNER } from "./fake-server";

const e = env as unknown as Env & {
  HS2: Fetcher;
  HS3: Fetcher;
  HS2_CONTROL: Service<TestControl>;
  HS3_CONTROL: Service<TestControl>;
  /** Set by harness-config.ts when the auxiliary servers could not be built. */
  FEDERATION_HARNESS_ERROR?: string;
};

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
});

async function waitFor<T>(probe: () => Promise<T>, what: string, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Copies a room's history from hs2 onto test.local (stand-in for the join handshake). */
async function seedRunner(roomId: string, versionId: string, history: string[]) {
  const [create, ...rest] = history.map((p) => JSON.parse(p) as PDU);
  const stub = roomStub(roomId);
  const created = await stub.createRoom(create!, roomId, versionId, []);
  expect(created[0]!.ok).toBe(true);
  const outcomes = await stub.receive(rest);
  expect(outcomes.map((o) => o.status)).toEqual(rest.map(() => "accepted"));
  return stub;
}

async function runnerTimeline(roomId: string) {
  return (await roomStub(roomId).eventsAfter(0, 1000)).map((r) => {
    const ev = JSON.parse(r.json) as { type: string; sender: string; content: { body?: string } };
    return { event_id: r.event_id, type: ev.type, sender: ev.sender, body: ev.content.body ?? null };
  });
}

describe("three homeservers", () => {
  it("serve their own keys under their own names", async () => {
    expect(await e.HS2_CONTROL.serverName()).toBe("hs2.test");
    const res = await e.HS3.fetch("http://hs3.test/_matrix/key/v2/server");
    expect(((await res.json()) as { server_name: string }).server_name).toBe("hs3.test");
  });

  it("federate a room: joins and messages travel both ways, with typing", async () => {
    const versionId = "10";
    const alice = "@alice:hs2.test";
    const bob = `@bob:${RUNNER}`;
    const carol = "@carol:hs3.test";

    // alice creates a room on hs2; test.local gets its history.
    const roomId = await e.HS2_CONTROL.createRoom(alice, versionId);
    const stub = await seedRunner(roomId, versionId, await e.HS2_CONTROL.history(roomId));

    // bob (test.local) joins: the join reaches hs2 through test.local's DestinationDO and hs2's /send.
    const bobJoin = await stub.send({ type: "m.room.member", state_key: bob, sender: bob, content: { membership: "join" } });
    expect(bobJoin.ok).toBe(true);
    const bobJoinId = bobJoin.ok ? bobJoin.event_id : "";
    await waitFor(async () => (await e.HS2_CONTROL.timeline(roomId)).some((ev) => ev.event_id === bobJoinId), "bob's join on hs2");

    // alice answers; hs2 sends it to test.local.
    const hello = await e.HS2_CONTROL.send(roomId, { type: "m.room.message", sender: alice, content: { msgtype: "m.text", body: "hello bob" } });
    await waitFor(async () => (await runnerTimeline(roomId)).some((ev) => ev.event_id === hello), "alice's message on test.local");

    // hs3 gets the history so far; carol joins there. hs3 sends the join to the servers of alice and bob.
    const history = await e.HS2_CONTROL.history(roomId);
    expect(await e.HS3_CONTROL.seedRoom(roomId, versionId, history)).toEqual(history.slice(1).map(() => "accepted"));
    const carolJoin = await e.HS3_CONTROL.send(roomId, { type: "m.room.member", state_key: carol, sender: carol, content: { membership: "join" } });
    await waitFor(async () => (await e.HS2_CONTROL.timeline(roomId)).some((ev) => ev.event_id === carolJoin), "carol's join on hs2");
    await waitFor(async () => (await runnerTimeline(roomId)).some((ev) => ev.event_id === carolJoin), "carol's join on test.local");

    // Now every server knows every other: messages from each reach both others.
    const welcome = await e.HS2_CONTROL.send(roomId, { type: "m.room.message", sender: alice, content: { msgtype: "m.text", body: "welcome carol" } });
    await waitFor(async () => (await runnerTimeline(roomId)).some((ev) => ev.event_id === welcome), "alice's welcome on test.local");
    await waitFor(async () => (await e.HS3_CONTROL.timeline(roomId)).some((ev) => ev.event_id === welcome), "alice's welcome on hs3");
    const fromBob = await stub.send({ type: "m.room.message", sender: bob, content: { msgtype: "m.text", body: "hi all" } });
    const fromBobId = fromBob.ok ? fromBob.event_id : "";
    await waitFor(async () => (await e.HS2_CONTROL.timeline(roomId)).some((ev) => ev.event_id === fromBobId), "bob's message on hs2");
    await waitFor(async () => (await e.HS3_CONTROL.timeline(roomId)).some((ev) => ev.event_id === fromBobId), "bob's message on hs3");
    const fromCarol = await e.HS3_CONTROL.send(roomId, { type: "m.room.message", sender: carol, content: { msgtype: "m.text", body: "thanks" } });
    await waitFor(async () => (await runnerTimeline(roomId)).some((ev) => ev.event_id === fromCarol), "carol's message on test.local");
    await waitFor(async () => (await e.HS2_CONTROL.timeline(roomId)).some((ev) => ev.event_id === fromCarol), "carol's message on hs2");

    // The three servers agree on the conversation.
    const bodies = (tl: { type: string; body: string | null }[]) => tl.filter((ev) => ev.type === "m.room.message").map((ev) => ev.body);
    const expected = ["hello bob", "welcome carol", "hi all", "thanks"];
    expect(bodies(await e.HS2_CONTROL.timeline(roomId))).toEqual(expected);
    expect(bodies(await e.HS3_CONTROL.timeline(roomId))).toEqual(expected);
    expect(bodies(await runnerTimeline(roomId))).toEqual(expected);

    // Typing travels as an EDU.
    await e.HS2_CONTROL.queueEdu(RUNNER, "m.typing", JSON.stringify({ room_id: roomId, user_id: alice, typing: true }));
    await waitFor(async () => (await stub.typingUsers()).includes(alice), "alice typing on test.local");

    // Nothing is stuck in either direction.
    const status = JSON.parse(await e.HS2_CONTROL.destinationStatus(RUNNER)) as { failures: number; backlog: { rooms: unknown[] } };
    expect(status).toMatchObject({ failures: 0, backlog: { rooms: [] } });
    const ours = await e.DESTINATIONS.get(e.DESTINATIONS.idFromName("hs2.test")).status();
    expect(ours).toMatchObject({ failures: 0, backlog: { rooms: [] } });
  });
});
