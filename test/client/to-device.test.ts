/** PUT /sendToDevice/{eventType}/{txnId} and the /sync `to_device` section. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, type TestUser } from "./helpers";
import { addDevice, sync, type Obj } from "./keys-helpers";

type ToDeviceEvent = { sender: string; type: string; content: Obj };

let txn = 0;
async function send(from: TestUser, type: string, messages: Obj, txnId = `t${++txn}`): Promise<void> {
  await call("PUT", `/_matrix/client/v3/sendToDevice/${encodeURIComponent(type)}/${txnId}`, { user: from, body: { messages } });
}

const events = (s: Obj) => ((s.to_device as { events: ToDeviceEvent[] } | undefined)?.events ?? []);

describe("send-to-device", () => {
  it("delivers to the device's /sync and deletes messages once the device syncs past them", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const first = await sync(bob);
    expect(events(first)).toEqual([]);
    await send(alice, "m.room_key_request", { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    await send(alice, "m.room_key_request", { [bob.userId]: { [bob.deviceId]: { n: 2 } } });
    const s1 = await sync(bob, first.next_batch);
    expect(events(s1)).toEqual([
      { sender: alice.userId, type: "m.room_key_request", content: { n: 1 } },
      { sender: alice.userId, type: "m.room_key_request", content: { n: 2 } },
    ]);
    // Until the client acknowledges (syncs with s1's token), a retry of the same sync sees them again.
    expect(events(await sync(bob, first.next_batch))).toHaveLength(2);
    const s2 = await sync(bob, s1.next_batch);
    expect(events(s2)).toEqual([]);
    // Acknowledged messages are gone for good, even when an old token is replayed.
    expect(events(await sync(bob, first.next_batch))).toEqual([]);
    // An initial sync shows pending messages too.
    await send(alice, "m.dummy", { [bob.userId]: { [bob.deviceId]: {} } });
    expect(events(await sync(bob)).map((e) => e.type)).toEqual(["m.dummy"]);
  });

  it("is idempotent per transaction ID (of the sending device)", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const since = (await sync(bob)).next_batch;
    await send(alice, "m.test", { [bob.userId]: { [bob.deviceId]: { v: 1 } } }, "same");
    await send(alice, "m.test", { [bob.userId]: { [bob.deviceId]: { v: 2 } } }, "same");
    // Another device of the same user may reuse the transaction ID.
    const alice2 = await addDevice(alice);
    await send(alice2, "m.test", { [bob.userId]: { [bob.deviceId]: { v: 3 } } }, "same");
    expect(events(await sync(bob, since)).map((e) => e.content)).toEqual([{ v: 1 }, { v: 3 }]);
  });

  it("expands * to every device of the recipient, an explicit device winning over *", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const bob2 = await addDevice(bob);
    const t1 = (await sync(bob)).next_batch;
    const t2 = (await sync(bob2)).next_batch;
    await send(alice, "m.test", { [bob.userId]: { "*": { to: "all" }, [bob2.deviceId]: { to: "two" } } });
    expect(events(await sync(bob, t1)).map((e) => e.content)).toEqual([{ to: "all" }]);
    expect(events(await sync(bob2, t2)).map((e) => e.content)).toEqual([{ to: "two" }]);
  });

  it("drops messages for unknown devices and accepts remote recipients (federation hook)", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const since = (await sync(bob)).next_batch;
    await send(alice, "m.test", { [bob.userId]: { NOSUCHDEVICE: { a: 1 } }, "@someone:remote.example": { D: { a: 2 } } });
    expect(events(await sync(bob, since))).toEqual([]);
  });

  it("sends to the sender's own other devices", async () => {
    const alice = await createUserDirect();
    const alice2 = await addDevice(alice);
    const since = (await sync(alice2)).next_batch;
    await send(alice, "m.secret.request", { [alice.userId]: { "*": { name: "x" } } });
    expect(events(await sync(alice2, since))).toEqual([{ sender: alice.userId, type: "m.secret.request", content: { name: "x" } }]);
  });

  it("wakes a long-polling sync", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const since = (await sync(bob)).next_batch;
    const polling = call<Obj>("GET", `/_matrix/client/v3/sync?since=${since}&timeout=10000`, { user: bob });
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await send(alice, "m.test", { [bob.userId]: { [bob.deviceId]: { hi: true } } });
    const res = await polling;
    expect(events(res)).toEqual([{ sender: alice.userId, type: "m.test", content: { hi: true } }]);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("deletes a deleted device's inbox", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const bob2 = await addDevice(bob, "BOBTWO");
    await send(alice, "m.test", { [bob.userId]: { BOBTWO: { x: 1 } } });
    await call("POST", "/_matrix/client/v3/logout", { user: bob2, body: {} });
    // Recreate the device ID: the old messages must not reappear.
    const again = await addDevice(bob, "BOBTWO");
    expect(events(await sync(again))).toEqual([]);
  });

  it("rejects bad requests", async () => {
    const alice = await createUserDirect();
    const path = "/_matrix/client/v3/sendToDevice/m.test/bad";
    for (const body of [{}, { messages: [] }, { messages: { "not-a-user": {} } }, { messages: { [alice.userId]: { D: "text" } } }, { messages: { [alice.userId]: [] } }]) {
      expect((await request("PUT", path, { user: alice, body })).status, JSON.stringify(body)).toBe(400);
    }
    expect((await request("PUT", path, { body: { messages: {} } })).status).toBe(401);
  });
});
