/**
 * Presence across servers (docs/presence.md): a change on one server reaches the other as an m.presence EDU and
 * shows up in the /sync of the users there who share a room; a remote user nobody here shares a room with is
 * not stored.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { api, createRoom, e, enc, fullyStated, newUser, sync, V3, waitFor } from "./servers";
import { handleEdus } from "../../src/federation/edus";
import { readPresence } from "../../src/presence/store";

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
});

type PresenceEv = { sender: string; content: Record<string, unknown> };
const presenceOf = (s: Record<string, any>, userId: string) =>
  (s.presence?.events as PresenceEv[] | undefined)?.find((ev) => ev.sender === userId)?.content;

describe("presence over federation", () => {
  it("goes both ways between users sharing a room", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const roomId = await createRoom(alice);
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob joined on hs2");
    await fullyStated(roomId);
    const b0 = await sync(bob);
    const a0 = await sync(alice);

    // hs2 → test.local
    await api(alice, "PUT", `${V3}/presence/${enc(alice.userId)}/status`, { presence: "online", status_msg: "from hs2" });
    const seen = await waitFor(async () => {
      // bob polls with set_presence=offline so that his own presence does not change while waiting
      const q = new URLSearchParams({ timeout: "0", since: b0.next_batch, set_presence: "offline" });
      const s = await api(bob, "GET", `${V3}/sync?${q}`);
      // (alice's first sync above made her online already, without a status: wait for the PUT)
      const p = presenceOf(s, alice.userId);
      return p?.status_msg === "from hs2" ? p : undefined;
    }, "alice's presence in bob's sync");
    expect(seen).toMatchObject({ presence: "online", status_msg: "from hs2", currently_active: true });
    expect(await api(bob, "GET", `${V3}/presence/${enc(alice.userId)}/status`)).toMatchObject({ presence: "online", status_msg: "from hs2" });

    // test.local → hs2
    await api(bob, "PUT", `${V3}/presence/${enc(bob.userId)}/status`, { presence: "unavailable", status_msg: "from test.local" });
    const there = await waitFor(async () => {
      const q = new URLSearchParams({ timeout: "0", since: a0.next_batch, set_presence: "offline" });
      return presenceOf(await api(alice, "GET", `${V3}/sync?${q}`), bob.userId)?.presence === "unavailable"
        ? presenceOf(await api(alice, "GET", `${V3}/sync?${q}`), bob.userId)
        : undefined;
    }, "bob's presence in alice's sync");
    expect(there).toMatchObject({ presence: "unavailable", status_msg: "from test.local" });
    expect(await api(alice, "GET", `${V3}/presence/${enc(bob.userId)}/status`)).toMatchObject({ presence: "unavailable" });
  });

  it("drops presence of a remote user nobody here shares a room with", async () => {
    const stranger = "@stranger_presence:hs3.test";
    await handleEdus(e, "hs3.test", [{ edu_type: "m.presence", content: { push: [{ user_id: stranger, presence: "online", last_active_ago: 10 }] } }]);
    // A server speaking for another server's user is ignored too.
    await handleEdus(e, "hs3.test", [{ edu_type: "m.presence", content: { push: [{ user_id: "@x:hs2.test", presence: "online" }] } }]);
    expect(await readPresence(e, "test.local", [stranger, "@x:hs2.test"])).toEqual([]);
  });
});
