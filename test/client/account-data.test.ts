/** Account data (global and per room) and room tags. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request } from "./helpers";

const ROOM = "!someroom:test.local";
const base = (userId: string) => `/_matrix/client/v3/user/${encodeURIComponent(userId)}`;
const room = (userId: string, roomId = ROOM) => `${base(userId)}/rooms/${encodeURIComponent(roomId)}`;

describe("account data", () => {
  it("stores and returns global and room account data, separately", async () => {
    const alice = await createUserDirect();
    await call("PUT", `${base(alice.userId)}/account_data/org.example.cfg`, { user: alice, body: { theme: "dark" } });
    await call("PUT", `${room(alice.userId)}/account_data/org.example.cfg`, { user: alice, body: { theme: "light" } });
    expect(await call("GET", `${base(alice.userId)}/account_data/org.example.cfg`, { user: alice })).toEqual({ theme: "dark" });
    expect(await call("GET", `${room(alice.userId)}/account_data/org.example.cfg`, { user: alice })).toEqual({ theme: "light" });
    await call("PUT", `${base(alice.userId)}/account_data/org.example.cfg`, { user: alice, body: { theme: "blue" } });
    expect(await call("GET", `${base(alice.userId)}/account_data/org.example.cfg`, { user: alice })).toEqual({ theme: "blue" });
    // No inheritance between room and global.
    const missing = await request("GET", `${room(alice.userId, "!other:test.local")}/account_data/org.example.cfg`, { user: alice });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ errcode: "M_NOT_FOUND" });
  });

  it("is only for oneself", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    for (const [method, p] of [
      ["PUT", `${base(alice.userId)}/account_data/x.y`],
      ["GET", `${base(alice.userId)}/account_data/x.y`],
      ["PUT", `${room(alice.userId)}/account_data/x.y`],
      ["GET", `${room(alice.userId)}/account_data/x.y`],
      ["GET", `${room(alice.userId)}/tags`],
      ["PUT", `${room(alice.userId)}/tags/u.x`],
      ["DELETE", `${room(alice.userId)}/tags/u.x`],
    ] as const) {
      const res = await request(method, p, { user: bob, body: method === "PUT" ? {} : undefined });
      expect(res.status, `${method} ${p}`).toBe(403);
      expect(((await res.json()) as { errcode: string }).errcode).toBe("M_FORBIDDEN");
    }
    const anon = await request("GET", `${base(alice.userId)}/account_data/x.y`);
    expect(anon.status).toBe(401);
  });

  it("refuses server-managed types with 405 M_BAD_JSON, and bad bodies and room IDs", async () => {
    const alice = await createUserDirect();
    for (const type of ["m.fully_read", "m.push_rules"]) {
      for (const p of [`${base(alice.userId)}/account_data/${type}`, `${room(alice.userId)}/account_data/${type}`]) {
        const res = await request("PUT", p, { user: alice, body: { event_id: "$x" } });
        expect(res.status).toBe(405);
        expect(await res.json()).toMatchObject({ errcode: "M_BAD_JSON" });
      }
    }
    const arr = await request("PUT", `${base(alice.userId)}/account_data/x.y`, { user: alice, body: [1] });
    expect(arr.status).toBe(400);
    expect(await arr.json()).toMatchObject({ errcode: "M_BAD_JSON" });
    const nj = await request("PUT", `${base(alice.userId)}/account_data/x.y`, { user: alice, body: "nope" });
    expect(await nj.json()).toMatchObject({ errcode: "M_NOT_JSON" });
    const badRoom = await request("PUT", `${room(alice.userId, "@notaroom:test.local")}/account_data/x.y`, { user: alice, body: {} });
    expect(badRoom.status).toBe(400);
    expect(await badRoom.json()).toMatchObject({ errcode: "M_INVALID_PARAM" });
  });
});

describe("room tags", () => {
  it("adds, lists and removes tags", async () => {
    const alice = await createUserDirect();
    expect(await call("GET", `${room(alice.userId)}/tags`, { user: alice })).toEqual({ tags: {} });
    await call("PUT", `${room(alice.userId)}/tags/m.favourite`, { user: alice, body: { order: 0.25 } });
    await call("PUT", `${room(alice.userId)}/tags/u.work`, { user: alice, body: {} });
    expect(await call("GET", `${room(alice.userId)}/tags`, { user: alice })).toEqual({ tags: { "m.favourite": { order: 0.25 }, "u.work": {} } });
    // Tags are the room's m.tag account data.
    expect(await call("GET", `${room(alice.userId)}/account_data/m.tag`, { user: alice })).toEqual({
      tags: { "m.favourite": { order: 0.25 }, "u.work": {} },
    });
    await call("DELETE", `${room(alice.userId)}/tags/m.favourite`, { user: alice });
    await call("DELETE", `${room(alice.userId)}/tags/never-set`, { user: alice });
    expect(await call("GET", `${room(alice.userId)}/tags`, { user: alice })).toEqual({ tags: { "u.work": {} } });
  });

  it("rejects a bad order", async () => {
    const alice = await createUserDirect();
    const res = await request("PUT", `${room(alice.userId)}/tags/u.x`, { user: alice, body: { order: "first" } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ errcode: "M_BAD_JSON" });
  });
});
