/**
 * Many /createRoom requests by one user with the same body at the same time (found by bench/client.mjs, which
 * builds rooms 8 at a time): a v12 room ID is the hash of the create event, and such create events differ only
 * in their timestamp. In the Workers runtime the clock stands still between I/O, so simultaneous requests often
 * read the same time. Every request must still get a room of its own.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { call, createUserDirect } from "./helpers";
import { V3 } from "./rooms-helpers";

async function createRooms(n: number, concurrent: boolean): Promise<string[]> {
  const alice = await createUserDirect();
  const one = () => call<{ room_id: string }>("POST", `${V3}/createRoom`, { user: alice, body: { preset: "private_chat" } }).then((r) => r.room_id);
  const ids: string[] = [];
  if (concurrent) ids.push(...(await Promise.all(Array.from({ length: n }, one))));
  else for (let i = 0; i < n; i++) ids.push(await one());
  expect(new Set(ids).size).toBe(n);
  const joined = await call<{ joined_rooms: string[] }>("GET", `${V3}/joined_rooms`, { user: alice });
  for (const id of ids) expect(joined.joined_rooms).toContain(id);
  return ids;
}

describe("/createRoom with colliding create events", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("gives each of 12 identical simultaneous requests its own room", async () => {
    await createRooms(12, true);
  });

  it("still does when the clock reads the same time for every request", async () => {
    const frozen = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(frozen);
    await createRooms(10, false);
    await createRooms(10, true);
  });
});
