/**
 * /members?at= with a /sync token (next_batch), as matrix-js-sdk's lazy member loading sends it (found by the
 * matrix-js-sdk end-to-end test, test/e2e/matrix-js-sdk.e2e.ts): the token is translated through the user's
 * UserDO to where the room stood for them at that sync.
 */
import { describe, expect, it } from "vitest";
import { call, createUserDirect } from "./helpers";
import { V3, enc, expectError, join, leave, newRoom } from "./rooms-helpers";

interface Members {
  chunk: { state_key: string; content: { membership: string } }[];
}

const memberships = (m: Members) => Object.fromEntries(m.chunk.map((e) => [e.state_key, e.content.membership]));

describe("/members?at=<sync token>", () => {
  it("answers the members as of that sync, not as of now", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const carol = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const { next_batch: before } = await call<{ next_batch: string }>("GET", `${V3}/sync`, { user: alice });
    expect(before).toMatch(/^u\d+$/);
    await join(carol, roomId);
    await leave(bob, roomId);

    const then = await call<Members>("GET", `${V3}/rooms/${enc(roomId)}/members?at=${before}`, { user: alice });
    expect(memberships(then)).toEqual({ [alice.userId]: "join", [bob.userId]: "join" });
    const thenNotLeft = await call<Members>("GET", `${V3}/rooms/${enc(roomId)}/members?at=${before}&not_membership=leave`, { user: alice });
    expect(Object.keys(memberships(thenNotLeft)).sort()).toEqual([alice.userId, bob.userId].sort());

    const { next_batch: after } = await call<{ next_batch: string }>("GET", `${V3}/sync?since=${before}`, { user: alice });
    const now = await call<Members>("GET", `${V3}/rooms/${enc(roomId)}/members?at=${after}&not_membership=leave`, { user: alice });
    expect(Object.keys(memberships(now)).sort()).toEqual([alice.userId, carol.userId].sort());
  });

  it("still refuses tokens that are neither, and non-members", async () => {
    const alice = await createUserDirect();
    const eve = await createUserDirect();
    const roomId = await newRoom(alice, { preset: "private_chat" });
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/members?at=bogus`, { user: alice }, 400, "M_INVALID_PARAM");
    const { next_batch } = await call<{ next_batch: string }>("GET", `${V3}/sync`, { user: eve });
    await expectError("GET", `${V3}/rooms/${enc(roomId)}/members?at=${next_batch}`, { user: eve }, 403, "M_FORBIDDEN");
  });
});
