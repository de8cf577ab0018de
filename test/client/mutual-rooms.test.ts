/** GET /_matrix/client/v1/mutual_rooms. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, testEnv } from "./helpers";
import { enc, expectError, join, leave, newRoom } from "./rooms-helpers";
import { MUTUAL_ROOMS_PAGE } from "../../src/routes/client/mutual-rooms";

const V1 = "/_matrix/client/v1";
type Answer = { joined: string[]; count: number; next_batch?: string };

describe("GET /mutual_rooms", () => {
  it("lists the rooms both users are joined to, and follows joins and leaves", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const shared1 = await newRoom(alice, { preset: "public_chat" });
    const shared2 = await newRoom(bob, { preset: "public_chat" });
    await newRoom(alice); // alice only
    await join(bob, shared1);
    await join(alice, shared2);
    const a = await call<Answer>("GET", `${V1}/mutual_rooms?user_id=${enc(bob.userId)}`, { user: alice });
    expect(a.joined.sort()).toEqual([shared1, shared2].sort());
    expect(a.count).toBe(2);
    expect(a.next_batch).toBeUndefined();
    await leave(bob, shared1);
    const b = await call<Answer>("GET", `${V1}/mutual_rooms?user_id=${enc(alice.userId)}`, { user: bob });
    expect(b).toEqual({ joined: [shared2], count: 1 });
    // Unknown users share nothing.
    expect(await call("GET", `${V1}/mutual_rooms?user_id=${enc("@nobody:elsewhere.example")}`, { user: bob })).toEqual({ joined: [], count: 0 });
  });

  it("pages through many rooms, each exactly once", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    // The D1 directory is what the endpoint reads; fill it directly rather than creating 250 rooms.
    const rooms = Array.from({ length: MUTUAL_ROOMS_PAGE * 2 + 50 }, (_, i) => `!mutual${String(i).padStart(4, "0")}_${Date.now()}:test.local`);
    await testEnv.DB.batch(
      rooms.flatMap((r) => [alice, bob].map((u) => testEnv.DB.prepare("INSERT INTO room_members (room_id, user_id) VALUES (?, ?)").bind(r, u.userId))),
    );
    const seen: string[] = [];
    let from: string | undefined;
    let pages = 0;
    do {
      const page: Answer = await call<Answer>("GET", `${V1}/mutual_rooms?user_id=${enc(bob.userId)}${from ? `&from=${enc(from)}` : ""}`, { user: alice });
      expect(page.count).toBe(rooms.length);
      seen.push(...page.joined);
      from = page.next_batch;
      pages++;
    } while (from);
    expect(pages).toBe(3);
    expect(seen).toEqual([...rooms].sort());
  });

  it("refuses bad parameters", async () => {
    const alice = await createUserDirect();
    await expectError("GET", `${V1}/mutual_rooms`, { user: alice }, 400, "M_MISSING_PARAM");
    await expectError("GET", `${V1}/mutual_rooms?user_id=bob`, { user: alice }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V1}/mutual_rooms?user_id=${enc(alice.userId)}`, { user: alice }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V1}/mutual_rooms?user_id=${enc("@b:test.local")}&from=garbage`, { user: alice }, 400, "M_INVALID_PARAM");
    await expectError("GET", `${V1}/mutual_rooms?user_id=${enc("@b:test.local")}`, {}, 401, "M_MISSING_TOKEN");
  });
});
