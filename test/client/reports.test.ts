/**
 * Reporting content (events, rooms, users), the admin views of the reports, and /admin/whois.
 */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { V3, enc, expectError, join, newRoom, sendText } from "./rooms-helpers";

const reportCount = async (where = "1 = 1", ...binds: unknown[]) =>
  (await testEnv.DB.prepare(`SELECT count(*) AS n FROM reports WHERE ${where}`).bind(...binds).first<{ n: number }>())!.n;

async function makeAdmin(): Promise<TestUser> {
  const admin = await createUserDirect();
  await testEnv.DB.prepare("UPDATE users SET admin = 1 WHERE user_id = ?").bind(admin.userId).run();
  return admin;
}

describe("POST /rooms/{roomId}/report/{eventId}", () => {
  it("stores a member's report of an event it can see", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const eventId = await sendText(alice, roomId, "something rude");
    expect(await call("POST", `${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`, { user: bob, body: { reason: "rude", score: -100 } })).toEqual({});
    const row = await testEnv.DB.prepare("SELECT * FROM reports WHERE event_id = ?").bind(eventId).first();
    expect(row).toMatchObject({ kind: "event", reporter: bob.userId, room_id: roomId, reason: "rude", score: -100 });
    // The reason is optional.
    await call("POST", `${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`, { user: bob, body: {} });
    expect(await reportCount("event_id = ?", eventId)).toBe(2);
  });

  it("answers 404 alike for unknown events, rooms it is not in and events it may not see; stores nothing", async () => {
    const alice = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "private_chat" });
    const eventId = await sendText(alice, roomId, "private");
    const before = await reportCount();
    const url = (r: string, e: string) => `${V3}/rooms/${enc(r)}/report/${enc(e)}`;
    await expectError("POST", url(roomId, eventId), { user: carol, body: { reason: "x" } }, 404, "M_NOT_FOUND");
    await expectError("POST", url(roomId, "$" + "A".repeat(43)), { user: alice, body: {} }, 404, "M_NOT_FOUND");
    await expectError("POST", url("!nowhere:test.local", eventId), { user: alice, body: {} }, 404, "M_NOT_FOUND");
    // A member who joined after the event, in a room with `joined` history visibility, cannot see it.
    const roomJ = await newRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] });
    const early = await sendText(alice, roomJ, "before you came");
    await join(carol, roomJ);
    await expectError("POST", url(roomJ, early), { user: carol, body: {} }, 404, "M_NOT_FOUND");
    expect(await reportCount()).toBe(before);
  });

  it("validates the body and needs authentication", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const eventId = await sendText(alice, roomId, "x");
    const url = `${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`;
    await expectError("POST", url, { user: alice, body: { reason: 5 } }, 400, "M_BAD_JSON");
    await expectError("POST", url, { user: alice, body: { score: 10 } }, 400, "M_INVALID_PARAM");
    await expectError("POST", url, { user: alice, body: { score: -5.5 } }, 400, "M_INVALID_PARAM");
    await expectError("POST", url, { user: alice, body: { reason: "x".repeat(1001) } }, 400, "M_INVALID_PARAM");
    await expectError("POST", url, { user: alice, body: "[]" }, 400, "M_BAD_JSON");
    await expectError("POST", url, { body: {} }, 401, "M_MISSING_TOKEN");
    await expectError("POST", `${V3}/rooms/not-a-room/report/${enc(eventId)}`, { user: alice, body: {} }, 400, "M_INVALID_PARAM");
  });
});

describe("POST /rooms/{roomId}/report and /users/{userId}/report", () => {
  it("stores reports of known rooms (membership not needed) and users; 404 for unknown ones", async () => {
    const alice = await createUserDirect();
    const dave = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "private_chat" });
    await call("POST", `${V3}/rooms/${enc(roomId)}/report`, { user: dave, body: { reason: "spam room" } });
    expect(await reportCount("kind = 'room' AND room_id = ? AND reporter = ?", roomId, dave.userId)).toBe(1);
    await expectError("POST", `${V3}/rooms/${enc("!unknown:test.local")}/report`, { user: dave, body: {} }, 404, "M_NOT_FOUND");

    await call("POST", `${V3}/users/${enc(alice.userId)}/report`, { user: dave, body: { reason: "harassment" } });
    expect(await reportCount("kind = 'user' AND user_id = ? AND reason = 'harassment'", alice.userId)).toBe(1);
    await expectError("POST", `${V3}/users/${enc("@ghost:test.local")}/report`, { user: dave, body: {} }, 404, "M_NOT_FOUND");
    await expectError("POST", `${V3}/users/not-a-user/report`, { user: dave, body: {} }, 400, "M_INVALID_PARAM");
  });
});

describe("admin views", () => {
  it("lists reports for admins only, newest first, paginated", async () => {
    const admin = await makeAdmin();
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const events: string[] = [];
    for (let i = 0; i < 3; i++) {
      const eventId = await sendText(alice, roomId, `m${i}`);
      events.push(eventId);
      await call("POST", `${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`, { user: alice, body: { reason: `r${i}` } });
    }
    await expectError("GET", "/_axon/admin/v1/reports", { user: alice }, 403, "M_FORBIDDEN");
    await expectError("GET", "/_synapse/admin/v1/event_reports", { user: alice }, 403, "M_FORBIDDEN");

    type Page = { reports: { report_id: number; event_id: string; kind: string }[]; next_token?: string };
    const page1 = await call<Page>("GET", "/_axon/admin/v1/reports?kind=event&limit=2", { user: admin });
    expect(page1.reports).toHaveLength(2);
    const page2 = await call<Page>("GET", `/_axon/admin/v1/reports?kind=event&limit=1000&from=${page1.next_token}`, { user: admin });
    const all = [...page1.reports, ...page2.reports];
    // Every report exactly once across the pages (other tests' reports are in the table too).
    expect(new Set(all.map((r) => r.report_id)).size).toBe(all.length);
    expect(all.every((r) => r.kind === "event")).toBe(true);
    const seen = all.map((r) => r.event_id).filter((e) => events.includes(e));
    expect(seen).toHaveLength(3);
    expect(seen.indexOf(events[2]!)).toBeLessThan(seen.indexOf(events[0]!));
    await expectError("GET", "/_axon/admin/v1/reports?kind=bogus", { user: admin }, 400, "M_INVALID_PARAM");

    const synapse = await call<{ event_reports: { event_id: string; user_id: string; reason: string }[]; total: number }>(
      "GET", `/_synapse/admin/v1/event_reports?room_id=${enc(roomId)}&dir=f`, { user: admin },
    );
    expect(synapse.total).toBe(3);
    expect(synapse.event_reports.map((r) => r.event_id)).toEqual(events);
    expect(synapse.event_reports[0]).toMatchObject({ user_id: alice.userId, reason: "r0" });
  });

  it("whois: for oneself and admins; lists devices", async () => {
    const admin = await makeAdmin();
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const mine = await call<{ user_id: string; devices: Record<string, unknown> }>("GET", `${V3}/admin/whois/${enc(alice.userId)}`, { user: alice });
    expect(mine.user_id).toBe(alice.userId);
    expect(Object.keys(mine.devices)).toEqual([alice.deviceId]);
    expect(mine.devices[alice.deviceId]).toHaveProperty("sessions");
    await call("GET", `${V3}/admin/whois/${enc(alice.userId)}`, { user: admin });
    await expectError("GET", `${V3}/admin/whois/${enc(alice.userId)}`, { user: bob }, 403, "M_FORBIDDEN");
    await expectError("GET", `${V3}/admin/whois/${enc("@ghost:test.local")}`, { user: admin }, 404, "M_NOT_FOUND");
    expect((await request("GET", `${V3}/admin/whois/${enc(alice.userId)}`)).status).toBe(401);
  });
});
