/**
 * Federation scenarios across the three real homeservers of the harness (test.local, hs2.test, hs3.test; see
 * harness-config.ts): remote joins by room ID and alias, messages both ways as each side's clients see them,
 * invites, rejections, leaves, backfill, restricted joins authorised by another server, server ACLs,
 * history-visibility redaction for servers, network partitions, and gap filling with /get_missing_events.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import type { DestinationDO } from "../../durable-objects/destination/DestinationDO";
import { setFederationFetch } from "../../src/federation/fetch";
import { roomStub } from "../rooms/helpers";
import { api, bodies, createRoom, e, enc, fullyStated, newUser, paginateBack, sendText, sync, V3, waitFor, type ScenarioUser } from "./servers";

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
});

/** The message bodies `user` sees in the room's /sync timeline (initial sync, limit 50). */
async function syncBodies(user: ScenarioUser, roomId: string): Promise<string[]> {
  const s = await sync(user, undefined, { room: { timeline: { limit: 50 } } });
  return bodies(s.rooms?.join?.[roomId]?.timeline?.events ?? []);
}

describe("remote joins", () => {
  it("a user joins a room on another server by ID; messages travel both ways, in /sync and /messages", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const roomId = await createRoom(alice, { preset: "public_chat", name: "Federated" });
    await sendText(alice, roomId, "before bob");

    const joined = await api<{ room_id: string }>(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    expect(joined.room_id).toBe(roomId);
    await fullyStated(roomId); // faster joins: eager syncs show the room once its resync is done

    // bob's sync shows the room with its state at once (read-your-writes for the join).
    const s = await sync(bob);
    const room = s.rooms.join[roomId];
    expect(room).toBeDefined();
    const stateTypes = [...room.state.events, ...room.timeline.events].map((ev: { type: string }) => ev.type);
    expect(stateTypes).toEqual(expect.arrayContaining(["m.room.create", "m.room.name", "m.room.power_levels", "m.room.join_rules"]));
    expect(room.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "join" } });

    // hs2 sees bob's join; messages both ways.
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob joined on hs2");
    await sendText(bob, roomId, "hello from test.local");
    await waitFor(async () => (await syncBodies(alice, roomId)).includes("hello from test.local"), "bob's message on hs2");
    await sendText(alice, roomId, "hello from hs2");
    await waitFor(async () => (await syncBodies(bob, roomId)).includes("hello from hs2"), "alice's message on test.local");

    // /messages on each side has both, in order (bob's side backfills what came before his join).
    const onHs2 = await paginateBack(alice, roomId, 10);
    expect(onHs2.bodies.slice(0, 3)).toEqual(["hello from hs2", "hello from test.local", "before bob"]);
    const onUs = await paginateBack(bob, roomId, 10);
    expect(onUs.bodies).toEqual(["hello from hs2", "hello from test.local", "before bob"]);
  });
});

describe("aliases, invites, leaves and knocks", () => {
  it("joins by a remote alias (resolved with /query/directory)", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const roomId = await createRoom(alice);
    const alias = `#lobby${Date.now().toString(36)}:hs2.test`;
    await api(alice, "PUT", `${V3}/directory/room/${enc(alias)}`, { room_id: roomId });
    expect(await api(bob, "GET", `${V3}/directory/room/${enc(alias)}`)).toEqual({ room_id: roomId, servers: ["hs2.test"] });
    expect((await api(bob, "POST", `${V3}/join/${enc(alias)}`, {})).room_id).toBe(roomId);
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob joined on hs2");
    await api(bob, "GET", `${V3}/directory/room/${enc(`#nothing:hs2.test`)}`, undefined, 404);
  });

  it("invites a user of another server: the invite shows in their /sync with the room's stripped state, and they join", async () => {
    const alice = await newUser("hs2.test", "alice");
    const carol = await newUser("test.local", "carol");
    const roomId = await createRoom(alice, { preset: "private_chat", name: "Secret plans" });
    await api(alice, "POST", `${V3}/rooms/${enc(roomId)}/invite`, { user_id: carol.userId });

    const s = await sync(carol);
    const invite = s.rooms.invite[roomId];
    expect(invite).toBeDefined();
    const events = invite.invite_state.events as { type: string; state_key: string; content: Record<string, unknown>; sender: string }[];
    expect(events.find((ev) => ev.type === "m.room.name")?.content).toEqual({ name: "Secret plans" });
    expect(events.find((ev) => ev.type === "m.room.create")).toBeDefined();
    expect(events.find((ev) => ev.type === "m.room.member" && ev.state_key === carol.userId)).toMatchObject({ sender: alice.userId, content: { membership: "invite" } });

    // Joining an invite-only room works through the inviting server, without naming it.
    await api(carol, "POST", `${V3}/rooms/${enc(roomId)}/join`, {});
    await fullyStated(roomId); // faster joins: eager syncs show the room once its resync is done
    const after = await sync(carol, s.next_batch);
    expect(after.rooms.join[roomId]).toBeDefined();
    expect(after.rooms.invite?.[roomId]).toBeUndefined();
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[carol.userId], "carol joined on hs2");
  });

  it("rejecting a remote invite tells the inviting server and shows the room as left", async () => {
    const alice = await newUser("hs2.test", "alice");
    const dave = await newUser("test.local", "dave");
    const roomId = await createRoom(alice, { preset: "private_chat" });
    await api(alice, "POST", `${V3}/rooms/${enc(roomId)}/invite`, { user_id: dave.userId });
    const s = await sync(dave);
    expect(s.rooms.invite[roomId]).toBeDefined();
    await api(dave, "POST", `${V3}/rooms/${enc(roomId)}/leave`, { reason: "no thanks" });
    const after = await sync(dave, s.next_batch);
    expect(after.rooms.invite?.[roomId]).toBeUndefined();
    expect(after.rooms.leave[roomId].timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: dave.userId, content: { membership: "leave", reason: "no thanks" } });
    // The inviting server has the rejection.
    await waitFor(async () => {
      const members = await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/members`);
      return members.chunk.find((m: { state_key: string; content: { membership: string } }) => m.state_key === dave.userId && m.content.membership === "leave");
    }, "dave's rejection on hs2");
    // A later initial sync no longer lists the invite.
    expect((await sync(dave)).rooms?.invite?.[roomId]).toBeUndefined();
  });

  it("invites a remote user from here; they join through us; leaving reaches the other side", async () => {
    const bob = await newUser("test.local", "bob");
    const alice = await newUser("hs2.test", "alice");
    const roomId = await createRoom(bob, { preset: "private_chat", name: "Ours" });
    await api(bob, "POST", `${V3}/rooms/${enc(roomId)}/invite`, { user_id: alice.userId });
    // The invite is in our room (co-signed by hs2) and in alice's sync on hs2.
    const members = await api(bob, "GET", `${V3}/rooms/${enc(roomId)}/members`);
    expect(members.chunk.find((m: { state_key: string }) => m.state_key === alice.userId).content.membership).toBe("invite");
    const s = await waitFor(async () => {
      const r = await sync(alice);
      return r.rooms?.invite?.[roomId] ? r : undefined;
    }, "the invite in alice's sync");
    expect(s.rooms.invite[roomId].invite_state.events.find((ev: { type: string }) => ev.type === "m.room.name").content.name).toBe("Ours");
    await api(alice, "POST", `${V3}/join/${enc(roomId)}`, {});
    await waitFor(async () => (await api(bob, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[alice.userId], "alice joined here");
    await sendText(alice, roomId, "thanks for having me");
    await waitFor(async () => (await syncBodies(bob, roomId)).includes("thanks for having me"), "alice's message here");
    await api(alice, "POST", `${V3}/rooms/${enc(roomId)}/leave`, {});
    await waitFor(async () => !(await api(bob, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[alice.userId], "alice's leave here");
  });

  it("knocks on a remote room; the resident invites the knocker in", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const roomId = await createRoom(alice, { preset: "private_chat", name: "Knock knock", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    await api(bob, "POST", `${V3}/knock/${enc(roomId)}?server_name=hs2.test`, { reason: "let me in" });
    const s = await sync(bob);
    const knock = s.rooms.knock[roomId];
    expect(knock.knock_state.events.find((ev: { type: string }) => ev.type === "m.room.name").content.name).toBe("Knock knock");
    await waitFor(async () => {
      const m = await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/members`);
      return m.chunk.find((ev: { state_key: string; content: { membership: string } }) => ev.state_key === bob.userId && ev.content.membership === "knock");
    }, "bob's knock on hs2");
    await api(alice, "POST", `${V3}/rooms/${enc(roomId)}/invite`, { user_id: bob.userId });
    await waitFor(async () => (await sync(bob)).rooms?.invite?.[roomId], "the invite after the knock");
    await api(bob, "POST", `${V3}/join/${enc(roomId)}`, {});
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob joined on hs2");
  });
});

describe("backfill", () => {
  it("pages back through 300 messages sent before the join: each seen exactly once, newest first; sync does not report them as new", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const roomId = await createRoom(alice);
    const sent: string[] = [];
    for (let i = 0; i < 300; i++) {
      const body = `m${i}`;
      await sendText(alice, roomId, body);
      sent.push(body);
    }
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await fullyStated(roomId); // faster joins: eager syncs show the room once its resync is done
    const first = await sync(bob);
    const { bodies: seen, pages } = await paginateBack(bob, roomId, 50);
    expect(seen).toEqual([...sent].reverse());
    expect(new Set(seen).size).toBe(300);
    expect(pages).toBeGreaterThan(6);
    // Backfilled history is old news: the next incremental sync has nothing for the room.
    const next = await sync(bob, first.next_batch);
    expect(next.rooms?.join?.[roomId]?.timeline?.events ?? []).toEqual([]);
    // Paging again reads the same history from here, without asking hs2.
    expect((await paginateBack(bob, roomId, 100)).bodies).toEqual([...sent].reverse());
  });
});

describe("restricted joins, server ACLs, visibility for servers", () => {
  it("joins a restricted room authorised by the resident server (and by us, for a third server)", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const eve = await newUser("test.local", "eve");
    const space = await createRoom(alice, { preset: "public_chat", creation_content: { type: "m.space" } });
    const restricted = await createRoom(alice, {
      preset: "private_chat",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    // Not in the space: refused by hs2.
    await api(eve, "POST", `${V3}/join/${enc(restricted)}?server_name=hs2.test`, {}, 403);
    await api(bob, "POST", `${V3}/join/${enc(space)}?server_name=hs2.test`, {});
    await api(bob, "POST", `${V3}/join/${enc(restricted)}?server_name=hs2.test`, {});
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(restricted)}/joined_members`)).joined[bob.userId], "bob in the restricted room");
    // Our copy of the join is the one hs2 co-signed as the authorising server.
    const join = await api(bob, "GET", `${V3}/rooms/${enc(restricted)}/state/m.room.member/${enc(bob.userId)}?format=event`);
    expect(join.content.join_authorised_via_users_server).toBe(alice.userId);

    // The other way round: a restricted room here, a user of hs3 who is in the allowed room here.
    const carol = await newUser("hs3.test", "carol");
    const ourSpace = await createRoom(bob, { preset: "public_chat" });
    const ourRoom = await createRoom(bob, {
      preset: "private_chat",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: ourSpace }] } }],
    });
    await api(carol, "POST", `${V3}/join/${enc(ourRoom)}?server_name=test.local`, {}, 403);
    await api(carol, "POST", `${V3}/join/${enc(ourSpace)}?server_name=test.local`, {});
    await api(carol, "POST", `${V3}/join/${enc(ourRoom)}?server_name=test.local`, {});
    const carolJoin = await api(bob, "GET", `${V3}/rooms/${enc(ourRoom)}/state/m.room.member/${enc(carol.userId)}?format=event`);
    expect(carolJoin.content).toMatchObject({ membership: "join", join_authorised_via_users_server: bob.userId });
  });

  it("a server denied by the room's ACL can neither join nor send", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const carol = await newUser("hs3.test", "carol");
    const roomId = await createRoom(alice);
    await api(alice, "PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.server_acl/`, { allow: ["*"], deny: ["hs3.test"], allow_ip_literals: false });
    const refused = await api(carol, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, 403);
    expect(refused.errcode).toBe("M_FORBIDDEN");
    // A server admitted at first and denied later: what it sends is no longer accepted.
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await waitFor(async () => (await api(alice, "GET", `${V3}/rooms/${enc(roomId)}/joined_members`)).joined[bob.userId], "bob on hs2");
    await fullyStated(roomId); // faster joins: once denied, test.local could not finish its resync
    await api(alice, "PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.server_acl/`, { allow: ["*"], deny: ["hs3.test", "test.local"] });
    await waitFor(async () => (await api(bob, "GET", `${V3}/rooms/${enc(roomId)}/state/m.room.server_acl/`)).deny?.includes("test.local"), "the ACL here");
    await sendText(bob, roomId, "am I still heard?");
    await sendText(alice, roomId, "after the ACL");
    await waitFor(async () => (await syncBodies(bob, roomId)).includes("after the ACL"), "alice's message here");
    expect(await syncBodies(alice, roomId)).not.toContain("am I still heard?");
  });

  it("backfill serves a server whose users joined later redacted copies of what they may not see", async () => {
    const bob = await newUser("test.local", "bob");
    const alice = await newUser("hs2.test", "alice");
    const roomId = await createRoom(bob, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }] });
    const secret = await sendText(bob, roomId, "before hs2 arrived");
    await api(alice, "POST", `${V3}/join/${enc(roomId)}?server_name=test.local`, {});
    await sendText(bob, roomId, "after hs2 arrived");
    await waitFor(async () => (await syncBodies(alice, roomId)).includes("after hs2 arrived"), "the later message on hs2");
    // alice pages back: hs2 backfills from us. She sees nothing from before her join...
    const seen = await paginateBack(alice, roomId, 20);
    expect(seen.bodies).toEqual(["after hs2 arrived"]);
    // ...and hs2 holds only the redacted copy of the earlier message (its content stripped by us).
    const timeline = JSON.parse(await e.HS2_CONTROL.fullTimeline(roomId)) as { event_id: string; stream_ordering: number; content: unknown }[];
    const held = timeline.find((ev) => ev.event_id === secret);
    expect(held).toBeDefined();
    expect(held!.stream_ordering).toBeLessThan(0); // placed as history
    expect(held!.content).toEqual({});
  });
});

describe("partitions and gaps", () => {
  /** Makes this server's (test.local's) outbound federation to `host` fail until the returned function is called. */
  function partitionFrom(host: string): () => void {
    return setFederationFetch(async (input, init) => {
      const url = new URL(new Request(input, init).url);
      if (url.host === host || url.hostname === host) throw new Error(`network partition: ${host} is unreachable`);
      return fetch(input, init);
    });
  }

  async function ourDestination(server: string, tune?: (d: DestinationDO) => void) {
    const stub = e.DESTINATIONS.get(e.DESTINATIONS.idFromName(server));
    if (tune) await runInDurableObject(stub, (d: DestinationDO) => tune(d));
    return stub;
  }

  it("a partition heals: both servers converge on the same extremities and state, every event exactly once; gaps are filled with /get_missing_events, never /state_ids", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const roomId = await createRoom(alice);
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    await sendText(alice, roomId, "shared");
    await waitFor(async () => (await syncBodies(bob, roomId)).includes("shared"), "the shared message here");

    // Cut both directions. Our side will then catch hs2 up with only the latest event (a long outage).
    const heal = partitionFrom("hs2.test");
    await e.HS2_CONTROL.blockFederation(["test.local"]);
    const dest = await ourDestination("hs2.test", (d) => {
      d.catchUpAfterMs = 0;
    });
    for (let i = 1; i <= 3; i++) {
      await sendText(alice, roomId, `a${i}`);
      await sendText(bob, roomId, `b${i}`);
    }
    await waitFor(async () => (await dest.status()).catching_up, "our sender in catch-up mode");
    expect(await syncBodies(alice, roomId)).not.toContain("b1");
    expect(await syncBodies(bob, roomId)).not.toContain("a1");

    heal();
    await e.HS2_CONTROL.blockFederation([]);
    await e.HS2_CONTROL.federationLog(); // start counting hs2's requests now
    await dest.retryNow();
    await e.HS2_CONTROL.retryDestination("test.local");

    const all = ["shared", "a1", "b1", "a2", "b2", "a3", "b3"];
    let last = "";
    await waitFor(async () => {
      const [a, b] = await Promise.all([paginateBack(alice, roomId, 50), paginateBack(bob, roomId, 50)]);
      last = `hs2: ${a.bodies.join(",")} / here: ${b.bodies.join(",")}`;
      return all.every((x) => a.bodies.includes(x) && b.bodies.includes(x));
    }, "everything on both servers", 20_000).catch((err: Error) => {
      throw new Error(`${err.message} (${last})`);
    });

    // hs2 closed the gap before b3 by asking us for the missing events, not for the state.
    const log = await e.HS2_CONTROL.federationLog();
    const toUs = log.filter((r) => r.host === "test.local");
    expect(toUs.some((r) => r.path.startsWith("/_matrix/federation/v1/get_missing_events/"))).toBe(true);
    expect(toUs.filter((r) => r.path.startsWith("/_matrix/federation/v1/state_ids/") || r.path.startsWith("/_matrix/federation/v1/state/"))).toEqual([]);

    // Same history, each event once, on both sides; same extremities and current state.
    const [onHs2, onUs] = await Promise.all([paginateBack(alice, roomId, 50), paginateBack(bob, roomId, 50)]);
    expect(new Set(onHs2.eventIds).size).toBe(onHs2.eventIds.length);
    expect([...onHs2.eventIds].sort()).toEqual([...onUs.eventIds].sort());
    for (const b of all) expect(onUs.bodies.filter((x) => x === b)).toHaveLength(1);
    const theirs = await e.HS2_CONTROL.roomShape(roomId, alice.userId);
    const ours = {
      extremities: [...(await roomStub(roomId).summary())!.forward_extremities].sort(),
      state: ((await api(bob, "GET", `${V3}/rooms/${enc(roomId)}/state`)) as unknown as { event_id: string }[]).map((ev) => ev.event_id).sort(),
    };
    expect(ours).toEqual(theirs);
  });
});

describe("EDUs and queries across servers", () => {
  it("typing and read receipts of local users reach the other server", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    const roomId = await createRoom(alice);
    await api(bob, "POST", `${V3}/join/${enc(roomId)}?server_name=hs2.test`, {});
    const msg = await sendText(alice, roomId, "read me");
    await waitFor(async () => (await syncBodies(bob, roomId)).includes("read me"), "the message here");
    await api(bob, "PUT", `${V3}/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 20_000 });
    await waitFor(async () => (await e.HS2_CONTROL.typingUsers(roomId)).includes(bob.userId), "bob typing on hs2");
    await api(bob, "POST", `${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(msg)}`, {});
    await waitFor(async () => {
      const s = await sync(alice);
      const receipts = (s.rooms.join[roomId].ephemeral.events as { type: string; content: Record<string, any> }[]).find((ev) => ev.type === "m.receipt");
      return receipts?.content[msg]?.["m.read"]?.[bob.userId];
    }, "bob's receipt on hs2");
  });

  it("profiles of remote users are asked from their server", async () => {
    const alice = await newUser("hs2.test", "alice");
    const bob = await newUser("test.local", "bob");
    await api(alice, "PUT", `${V3}/profile/${enc(alice.userId)}/displayname`, { displayname: "Alice of hs2" });
    expect(await api(bob, "GET", `${V3}/profile/${enc(alice.userId)}`)).toMatchObject({ displayname: "Alice of hs2" });
    expect(await api(bob, "GET", `${V3}/profile/${enc(alice.userId)}/displayname`)).toEqual({ displayname: "Alice of hs2" });
    await api(bob, "GET", `${V3}/profile/${enc("@nobody:hs2.test")}`, undefined, 404);
  });
});
