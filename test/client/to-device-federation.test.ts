/** E2EE over federation: inbound to-device and device-list EDUs, outbound to-device EDUs. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, testEnv } from "./helpers";
import { inboundEduHooks } from "../../src/federation/edu-hooks";
import { destinationStatus } from "../../src/federation/destinations";
import { sync, type Obj } from "./keys-helpers";

type ToDeviceEvent = { sender: string; type: string; content: Obj };
const events = (s: Obj) => ((s.to_device as { events: ToDeviceEvent[] } | undefined)?.events ?? []);

describe("to-device over federation", () => {
  it("delivers an inbound m.direct_to_device message once per message ID", async () => {
    const bob = await createUserDirect();
    const since = (await sync(bob)).next_batch;
    const msg = {
      sender: "@alice:remote.example",
      type: "m.room_key_request",
      messageId: "m1",
      recipient: bob.userId,
      deviceId: "*",
      content: { a: 1 },
    };
    await inboundEduHooks.toDevice(testEnv, "remote.example", msg);
    await inboundEduHooks.toDevice(testEnv, "remote.example", msg);
    // The same message ID from another sender is another message.
    await inboundEduHooks.toDevice(testEnv, "other.example", { ...msg, sender: "@eve:other.example" });
    expect(events(await sync(bob, since))).toEqual([
      { sender: "@alice:remote.example", type: "m.room_key_request", content: { a: 1 } },
      { sender: "@eve:other.example", type: "m.room_key_request", content: { a: 1 } },
    ]);
  });

  it("queues an m.direct_to_device EDU for a remote recipient's server", async () => {
    const alice = await createUserDirect();
    const server = `dest${Date.now()}.example`;
    await call("PUT", "/_matrix/client/v3/sendToDevice/m.test/fed1", {
      user: alice,
      body: { messages: { [`@bob:${server}`]: { DEV: { hello: true } } } },
    });
    const status = await destinationStatus(testEnv, server);
    expect(status.backlog.edus).toBe(1); // kept until the remote server acknowledges it
  });
});

describe("device lists over federation", () => {
  it("marks a remote user changed for local users sharing a room when their device list changes", async () => {
    const bob = await createUserDirect();
    const stranger = await createUserDirect();
    const remote = "@carol:remote.example";
    const roomId = `!shared${Date.now()}:test.local`;
    await testEnv.DB.batch([
      testEnv.DB.prepare("INSERT INTO room_members (room_id, user_id) VALUES (?, ?)").bind(roomId, bob.userId),
      testEnv.DB.prepare("INSERT INTO room_members (room_id, user_id) VALUES (?, ?)").bind(roomId, remote),
    ]);
    const bobSince = (await sync(bob)).next_batch;
    const strangerSince = (await sync(stranger)).next_batch;
    await inboundEduHooks.deviceListUpdate(testEnv, "remote.example", { userId: remote, content: { user_id: remote, device_id: "X" } });
    const lists = (s: Obj) => (s.device_lists as { changed: string[] }).changed;
    expect(lists(await sync(bob, bobSince))).toEqual([remote]);
    expect(lists(await sync(stranger, strangerSince))).toEqual([]);
    const next = (await sync(bob)).next_batch;
    await inboundEduHooks.signingKeyUpdate(testEnv, "remote.example", { userId: remote, content: { user_id: remote } });
    expect(lists(await sync(bob, next))).toEqual([remote]);
  });
});
