/**
 * Presence for application services (MSC2409, docs/presence.md): an appservice with receive_ephemeral gets
 * m.presence ephemeral events of its users and of users sharing a room with its users; others get nothing;
 * while DOWN, presence is dropped like typing and receipts.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { call, createUserDirect, testEnv } from "../client/helpers";
import { V3, enc, join, newRoom } from "../client/rooms-helpers";
import { shareRoom } from "../../src/presence/store";
import { appserviceStub, eventually, installFakeAppservices, type FakeAppservices } from "./helpers";

let fake: FakeAppservices;
beforeEach(() => {
  fake = installFakeAppservices();
});

const presencePath = (userId: string) => `${V3}/presence/${enc(userId)}/status`;
const presenceFor = (id: string, sender: string) =>
  fake.accepted(id).flatMap((t) => t.body.ephemeral ?? []).filter((e) => e.type === "m.presence" && (e as { sender?: string }).sender === sender);

describe("presence to appservices", () => {
  it("delivers presence of users sharing a room with the appservice's users, and of its own users", async () => {
    const alice = await createUserDirect();
    const puppet = await createUserDirect(`_asb_presence_${Date.now().toString(36)}`);
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(puppet, roomId);
    await eventually(async () => expect(await shareRoom(testEnv, alice.userId, puppet.userId)).toBe(true));

    await call("PUT", presencePath(alice.userId), { user: alice, body: { presence: "online", status_msg: "bridged" } });
    const got = await eventually(() => {
      const evs = presenceFor("bridge", alice.userId);
      expect(evs.length).toBeGreaterThan(0);
      return evs;
    });
    expect(got[0]).toMatchObject({ type: "m.presence", sender: alice.userId, content: { presence: "online", status_msg: "bridged", currently_active: true } });
    // The observer does not want ephemeral data (no receive_ephemeral).
    expect(presenceFor("observer", alice.userId)).toEqual([]);

    // The appservice's own user, even alone.
    const loner = await createUserDirect(`_asb_loner_${Date.now().toString(36)}`);
    await call("PUT", presencePath(loner.userId), { user: loner, body: { presence: "unavailable" } });
    await eventually(() => expect(presenceFor("bridge", loner.userId)[0]).toMatchObject({ content: { presence: "unavailable" } }));

    // A user sharing nothing with the appservice's users is not sent.
    const carol = await createUserDirect();
    await call("PUT", presencePath(carol.userId), { user: carol, body: { presence: "online" } });
    await new Promise((r) => setTimeout(r, 300));
    expect(presenceFor("bridge", carol.userId)).toEqual([]);
  });

  it("drops presence while the appservice is DOWN", async () => {
    const loner = await createUserDirect(`_asb_down_${Date.now().toString(36)}`);
    const stub = appserviceStub("bridge");
    await stub.status("bridge"); // the DO learns its id
    // Mark it DOWN the way a failed send would (state row), then announce presence.
    const { runInDurableObject } = await import("cloudflare:test");
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec("INSERT INTO meta (key, value) VALUES ('state', 'down') ON CONFLICT (key) DO UPDATE SET value = 'down'");
      state.storage.sql.exec("INSERT INTO meta (key, value) VALUES ('retry_at', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", String(Date.now() + 3_600_000));
    });
    const before = (await stub.status("bridge")).queued;
    await call("PUT", presencePath(loner.userId), { user: loner, body: { presence: "online" } });
    await new Promise((r) => setTimeout(r, 300));
    expect((await stub.status("bridge")).queued).toBe(before);
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec("UPDATE meta SET value = 'up' WHERE key = 'state'");
    });
  });
});
