/** Profiles (GET/PUT/DELETE, propagation into joined rooms) and POST /user_directory/search. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, testEnv } from "./helpers";
import { deactivateAccount, onUserRegistered } from "../../src/accounts/lifecycle";
import { V3, enc, expectError, invite, join, leave, newRoom, stateList, type ClientEventJson } from "./rooms-helpers";

async function memberContent(viewer: Parameters<typeof stateList>[0], roomId: string, userId: string) {
  return (await stateList(viewer, roomId)).find((e) => e.type === "m.room.member" && e.state_key === userId)!.content;
}

describe("profiles", () => {
  it("set, read, delete fields; custom fields and m.tz", async () => {
    const alice = await createUserDirect();
    const base = `${V3}/profile/${enc(alice.userId)}`;
    expect(await call("GET", base)).toEqual({});
    await expectError("GET", `${base}/displayname`, {}, 404, "M_NOT_FOUND");
    await call("PUT", `${base}/displayname`, { user: alice, body: { displayname: "Alice" } });
    await call("PUT", `${base}/avatar_url`, { user: alice, body: { avatar_url: "mxc://test.local/pic" } });
    await call("PUT", `${base}/m.tz`, { user: alice, body: { "m.tz": "Europe/Paris" } });
    await call("PUT", `${base}/org.example.pronouns`, { user: alice, body: { "org.example.pronouns": { en: "she/her" } } });
    expect(await call("GET", `${base}/displayname`)).toEqual({ displayname: "Alice" });
    expect(await call("GET", base)).toEqual({
      displayname: "Alice", avatar_url: "mxc://test.local/pic", "m.tz": "Europe/Paris", "org.example.pronouns": { en: "she/her" },
    });
    await call("DELETE", `${base}/org.example.pronouns`, { user: alice });
    expect(await call("GET", base)).toEqual({ displayname: "Alice", avatar_url: "mxc://test.local/pic", "m.tz": "Europe/Paris" });
  });

  it("bad input and other users' profiles", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const base = `${V3}/profile/${enc(alice.userId)}`;
    await expectError("PUT", `${base}/displayname`, { user: bob, body: { displayname: "hacked" } }, 403, "M_FORBIDDEN");
    await expectError("PUT", `${base}/displayname`, { user: alice, body: { displayname: 5 } }, 400, "M_BAD_JSON");
    await expectError("PUT", `${base}/displayname`, { user: alice, body: { displayname: "x".repeat(300) } }, 400, "M_BAD_JSON");
    await expectError("PUT", `${base}/displayname`, { user: alice, body: {} }, 400, "M_MISSING_PARAM");
    await expectError("PUT", `${base}/avatar_url`, { user: alice, body: { avatar_url: "https://example.org/x.png" } }, 400, "M_BAD_JSON");
    await expectError("PUT", `${base}/Not-Valid`, { user: alice, body: { "Not-Valid": 1 } }, 400, "M_INVALID_PARAM");
    await expectError("PUT", `${base}/org.example.${"k".repeat(260)}`, { user: alice, body: {} }, 400, "M_KEY_TOO_LARGE");
    await expectError("PUT", `${base}/org.example.big`, { user: alice, body: { "org.example.big": "x".repeat(70_000) } }, 400, "M_PROFILE_TOO_LARGE");
    await expectError("PUT", `${base}/displayname`, { body: { displayname: "x" } }, 401, "M_MISSING_TOKEN");
    await expectError("GET", `${V3}/profile/${enc("@ghost:test.local")}`, {}, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/profile/nobody`, {}, 400, "M_INVALID_PARAM");
  });

  it("display name and avatar changes reach every joined room, not others", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const a = await newRoom(alice);
    const b = await newRoom(alice, { preset: "public_chat" });
    const gone = await newRoom(alice, { preset: "public_chat" });
    await join(bob, b);
    await join(bob, gone);
    await leave(bob, gone);
    await invite(alice, a, bob.userId); // invited, not joined
    await call("PUT", `${V3}/profile/${enc(bob.userId)}/displayname`, { user: bob, body: { displayname: "Robert" } });
    expect(await memberContent(alice, b, bob.userId)).toEqual({ membership: "join", displayname: "Robert" });
    expect(await memberContent(alice, gone, bob.userId)).toEqual({ membership: "leave" });
    expect((await memberContent(alice, a, bob.userId)).membership).toBe("invite");
    await call("PUT", `${V3}/profile/${enc(bob.userId)}/avatar_url`, { user: bob, body: { avatar_url: "mxc://test.local/bob" } });
    expect(await memberContent(alice, b, bob.userId)).toEqual({ membership: "join", displayname: "Robert", avatar_url: "mxc://test.local/bob" });
    // Setting the same name again sends nothing new.
    const count = async () =>
      (await call<{ chunk: ClientEventJson[] }>("GET", `${V3}/rooms/${enc(b)}/messages?dir=b&limit=100`, { user: alice })).chunk.filter(
        (e) => e.state_key === bob.userId,
      ).length;
    const before = await count();
    await call("PUT", `${V3}/profile/${enc(bob.userId)}/displayname`, { user: bob, body: { displayname: "Robert" } });
    expect(await count()).toBe(before);
    await call("DELETE", `${V3}/profile/${enc(bob.userId)}/displayname`, { user: bob });
    expect(await memberContent(alice, b, bob.userId)).toEqual({ membership: "join", avatar_url: "mxc://test.local/bob" });
    // New joins carry the profile.
    await join(bob, (await newRoom(alice, { preset: "public_chat" })));
  });
});

describe("account lifecycle", () => {
  it("registration sets the initial display name (the localpart by default)", async () => {
    const alice = await createUserDirect();
    await onUserRegistered(testEnv, alice.userId);
    expect(await call("GET", `${V3}/profile/${enc(alice.userId)}`)).toEqual({ displayname: alice.userId.slice(1).split(":")[0] });
    const bob = await createUserDirect();
    await onUserRegistered(testEnv, bob.userId, { displayname: "Bobby" });
    expect(await call("GET", `${V3}/profile/${enc(bob.userId)}/displayname`)).toEqual({ displayname: "Bobby" });
  });

  it("deactivation leaves joined rooms, rejects invites and clears the profile", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    await call("PUT", `${V3}/profile/${enc(bob.userId)}/displayname`, { user: bob, body: { displayname: "Bob" } });
    const joined = await newRoom(alice, { preset: "public_chat" });
    const invited = await newRoom(alice);
    await join(bob, joined);
    await invite(alice, invited, bob.userId);
    // The invite reaches bob's UserDO through the room's outbox, in the background: wait for it.
    for (let i = 0; i < 50; i++) {
      const m = await testEnv.USERS.get(testEnv.USERS.idFromName(bob.userId)).memberships();
      if (m.some((r) => r.room_id === invited)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await deactivateAccount(testEnv, bob.userId);
    expect((await memberContent(alice, joined, bob.userId)).membership).toBe("leave");
    expect((await memberContent(alice, invited, bob.userId)).membership).toBe("leave");
    expect(await call("GET", `${V3}/profile/${enc(bob.userId)}`)).toEqual({});
  });
});

describe("user directory", () => {
  it("finds users sharing a room or in public rooms, by ID or display name; not strangers in private rooms", async () => {
    const tag = `zq${Date.now().toString(36)}`;
    const searcher = await createUserDirect(`searcher_${tag}`);
    const friend = await createUserDirect(`friend_${tag}`);
    const publicUser = await createUserDirect(`public_${tag}`);
    const hidden = await createUserDirect(`hidden_${tag}`);
    const other = await createUserDirect(`other_${tag}`);
    await call("PUT", `${V3}/profile/${enc(friend.userId)}/displayname`, { user: friend, body: { displayname: `Friendly ${tag}` } });
    const shared = await newRoom(searcher);
    await invite(searcher, shared, friend.userId);
    await join(friend, shared);
    const pub = await newRoom(publicUser, { preset: "public_chat" });
    const priv = await newRoom(hidden);
    await invite(hidden, priv, other.userId);
    await join(other, priv);

    const search = async (term: string, limit?: number) =>
      call<{ results: { user_id: string; display_name?: string }[]; limited: boolean }>("POST", `${V3}/user_directory/search`, {
        user: searcher,
        body: limit === undefined ? { search_term: term } : { search_term: term, limit },
      });
    const found = (await search(tag)).results.map((r) => r.user_id).sort();
    expect(found).toEqual([friend.userId, publicUser.userId, searcher.userId].sort());
    expect(found).not.toContain(hidden.userId);
    const byName = await search(`friendly ${tag}`);
    expect(byName.results).toEqual([{ user_id: friend.userId, display_name: `Friendly ${tag}` }]);
    const limited = await search(tag, 1);
    expect(limited.results).toHaveLength(1);
    expect(limited.limited).toBe(true);
    // After leaving the shared room, the friend is no longer found.
    await leave(friend, shared);
    expect((await search(`friend_${tag}`)).results).toEqual([]);
    expect(pub).toBeTruthy();

    await expectError("POST", `${V3}/user_directory/search`, { user: searcher, body: {} }, 400, "M_MISSING_PARAM");
    await expectError("POST", `${V3}/user_directory/search`, { user: searcher, body: { search_term: 3 } }, 400, "M_BAD_JSON");
    await expectError("POST", `${V3}/user_directory/search`, { body: { search_term: "x" } }, 401, "M_MISSING_TOKEN");
  });
});
