/** Server-side key backup: /room_keys/version and /room_keys/keys. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, type TestUser } from "./helpers";
import { shouldReplaceBackupKey, type BackupKey } from "../../src/e2ee/backup";
import type { Obj } from "./keys-helpers";

const V = "/_matrix/client/v3/room_keys/version";
const K = "/_matrix/client/v3/room_keys/keys";
const ALG = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM = "!room:test.local";
const enc = encodeURIComponent;

type Info = { algorithm: string; auth_data: Obj; count: number; etag: string; version: string };
type Update = { etag: string; count: number };

function key(first_message_index: number, forwarded_count: number, is_verified: boolean, tag = "x") {
  return { first_message_index, forwarded_count, is_verified, session_data: { ciphertext: tag, mac: "m", ephemeral: "e" } };
}

async function newVersion(user: TestUser, authData: Obj = { public_key: "pk" }): Promise<string> {
  return (await call<{ version: string }>("POST", V, { user, body: { algorithm: ALG, auth_data: authData } })).version;
}

async function errcode(res: Response): Promise<unknown> {
  return ((await res.json()) as Obj).errcode;
}

describe("backup versions", () => {
  it("creates, reads, updates and deletes versions; the newest live one is current", async () => {
    const alice = await createUserDirect();
    let res = await request("GET", V, { user: alice });
    expect(res.status).toBe(404);
    expect(await errcode(res)).toBe("M_NOT_FOUND");

    const v1 = await newVersion(alice, { public_key: "one" });
    const v2 = await newVersion(alice, { public_key: "two" });
    expect(Number(v2)).toBeGreaterThan(Number(v1));
    expect(await call<Info>("GET", V, { user: alice })).toEqual({ algorithm: ALG, auth_data: { public_key: "two" }, count: 0, etag: "0", version: v2 });
    expect((await call<Info>("GET", `${V}/${v1}`, { user: alice })).auth_data).toEqual({ public_key: "one" });

    await call("PUT", `${V}/${v2}`, { user: alice, body: { algorithm: ALG, auth_data: { public_key: "two", signatures: {} }, version: v2 } });
    expect((await call<Info>("GET", V, { user: alice })).auth_data).toEqual({ public_key: "two", signatures: {} });
    res = await request("PUT", `${V}/${v2}`, { user: alice, body: { algorithm: "other", auth_data: {} } });
    expect(res.status).toBe(400);
    res = await request("PUT", `${V}/${v2}`, { user: alice, body: { algorithm: ALG, auth_data: {}, version: v1 } });
    expect(res.status).toBe(400);
    expect((await request("PUT", `${V}/999`, { user: alice, body: { algorithm: ALG, auth_data: {} } })).status).toBe(404);

    await call("DELETE", `${V}/${v2}`, { user: alice });
    await call("DELETE", `${V}/${v2}`, { user: alice }); // deleting twice succeeds
    expect((await request("DELETE", `${V}/12345`, { user: alice })).status).toBe(404);
    expect((await request("GET", `${V}/${v2}`, { user: alice })).status).toBe(404);
    expect((await call<Info>("GET", V, { user: alice })).version).toBe(v1);
    // A version number is never reused.
    expect(Number(await newVersion(alice))).toBeGreaterThan(Number(v2));
  });

  it("is per user, and rejects bad bodies", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const v = await newVersion(alice);
    expect((await request("GET", `${V}/${v}`, { user: bob })).status).toBe(404);
    for (const body of [{}, { algorithm: ALG }, { algorithm: 5, auth_data: {} }, { algorithm: ALG, auth_data: "x" }]) {
      expect((await request("POST", V, { user: alice, body })).status, JSON.stringify(body)).toBe(400);
    }
    expect((await request("GET", V)).status).toBe(401);
  });
});

describe("backup keys", () => {
  it("stores keys at every level, with etag and count", async () => {
    const alice = await createUserDirect();
    const v = await newVersion(alice);
    let u = await call<Update>("PUT", `${K}/${enc(ROOM)}/s1?version=${v}`, { user: alice, body: key(0, 0, false) });
    expect(u).toEqual({ etag: "1", count: 1 });
    u = await call<Update>("PUT", `${K}/${enc(ROOM)}?version=${v}`, { user: alice, body: { sessions: { s2: key(0, 0, false), s3: key(1, 0, true) } } });
    expect(u).toEqual({ etag: "2", count: 3 });
    u = await call<Update>("PUT", `${K}?version=${v}`, { user: alice, body: { rooms: { "!other:test.local": { sessions: { s4: key(0, 0, false) } } } } });
    expect(u).toEqual({ etag: "3", count: 4 });

    expect(await call("GET", `${K}/${enc(ROOM)}/s3?version=${v}`, { user: alice })).toEqual(key(1, 0, true));
    expect(Object.keys((await call<{ sessions: Obj }>("GET", `${K}/${enc(ROOM)}?version=${v}`, { user: alice })).sessions).sort()).toEqual(["s1", "s2", "s3"]);
    const all = await call<{ rooms: Record<string, { sessions: Obj }> }>("GET", `${K}?version=${v}`, { user: alice });
    expect(Object.keys(all.rooms).sort()).toEqual(["!other:test.local", ROOM].sort());
    expect(await call("GET", `${K}/${enc("!empty:test.local")}?version=${v}`, { user: alice })).toEqual({ sessions: {} });
    const missing = await request("GET", `${K}/${enc(ROOM)}/nope?version=${v}`, { user: alice });
    expect(missing.status).toBe(404);
    expect(await errcode(missing)).toBe("M_NOT_FOUND");
    expect((await call<Info>("GET", V, { user: alice })).count).toBe(4);
    expect((await call<Info>("GET", V, { user: alice })).etag).toBe("3");

    // Deleting at every level.
    expect(await call<Update>("DELETE", `${K}/${enc(ROOM)}/s1?version=${v}`, { user: alice })).toMatchObject({ count: 3 });
    expect(await call<Update>("DELETE", `${K}/${enc(ROOM)}?version=${v}`, { user: alice })).toMatchObject({ count: 1 });
    const last = await call<Update>("DELETE", `${K}?version=${v}`, { user: alice });
    expect(last.count).toBe(0);
    expect(Number(last.etag)).toBeGreaterThan(3);
    expect(await call("GET", `${K}?version=${v}`, { user: alice })).toEqual({ rooms: {} });
  });

  it("keeps the better copy of a session key (verified, then lower first_message_index, then lower forwarded_count)", async () => {
    const alice = await createUserDirect();
    const v = await newVersion(alice);
    const path = `${K}/${enc(ROOM)}/s?version=${v}`;
    const put = (body: Obj) => call<Update>("PUT", path, { user: alice, body });
    const stored = async () => call<Obj>("GET", path, { user: alice });

    await put(key(5, 2, false, "a"));
    expect((await put(key(6, 0, false, "b"))).etag).toBe("1"); // higher index: kept "a", etag unchanged
    expect((await stored()).session_data).toMatchObject({ ciphertext: "a" });
    await put(key(5, 1, false, "c")); // same index, fewer forwards: replaces
    expect((await stored()).session_data).toMatchObject({ ciphertext: "c" });
    await put(key(9, 9, true, "d")); // verified beats unverified whatever the index
    expect((await stored()).session_data).toMatchObject({ ciphertext: "d" });
    await put(key(0, 0, false, "e")); // unverified never replaces verified
    expect((await stored()).session_data).toMatchObject({ ciphertext: "d" });
    await put(key(9, 9, true, "f")); // equal on all three: the stored copy stays
    expect((await stored()).session_data).toMatchObject({ ciphertext: "d" });
    expect((await put(key(2, 9, true, "g"))).count).toBe(1);
    expect((await stored()).session_data).toMatchObject({ ciphertext: "g" });
  });

  it("refuses writes to any version but the current one with M_WRONG_ROOM_KEYS_VERSION", async () => {
    const alice = await createUserDirect();
    const old = await newVersion(alice);
    const current = await newVersion(alice);
    let res = await request("PUT", `${K}/${enc(ROOM)}/s?version=${old}`, { user: alice, body: key(0, 0, false) });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ errcode: "M_WRONG_ROOM_KEYS_VERSION", current_version: current });
    res = await request("PUT", `${K}?version=${old}`, { user: alice, body: { rooms: {} } });
    expect(res.status).toBe(403);
    // Unknown versions are 404; the old version can still be read.
    expect((await request("PUT", `${K}/${enc(ROOM)}/s?version=77`, { user: alice, body: key(0, 0, false) })).status).toBe(404);
    expect((await request("PUT", `${K}/${enc(ROOM)}/s?version=abc`, { user: alice, body: key(0, 0, false) })).status).toBe(404);
    expect(await call("GET", `${K}?version=${old}`, { user: alice })).toEqual({ rooms: {} });
    expect((await request("GET", `${K}?version=77`, { user: alice })).status).toBe(404);
    // No backup at all.
    const bob = await createUserDirect();
    expect((await request("PUT", `${K}/${enc(ROOM)}/s?version=1`, { user: bob, body: key(0, 0, false) })).status).toBe(404);
  });

  it("rejects bad key data and a missing version", async () => {
    const alice = await createUserDirect();
    const v = await newVersion(alice);
    const path = `${K}/${enc(ROOM)}/s?version=${v}`;
    for (const body of [
      {},
      { ...key(0, 0, false), is_verified: "yes" },
      { ...key(0, 0, false), first_message_index: -1 },
      { ...key(0, 0, false), forwarded_count: 1.5 },
      { ...key(0, 0, false), session_data: "x" },
    ]) {
      expect((await request("PUT", path, { user: alice, body })).status, JSON.stringify(body)).toBe(400);
    }
    expect((await request("PUT", `${K}/${enc(ROOM)}?version=${v}`, { user: alice, body: { sessions: [] } })).status).toBe(400);
    expect((await request("PUT", `${K}?version=${v}`, { user: alice, body: { rooms: { [ROOM]: {} } } })).status).toBe(400);
    const res = await request("PUT", `${K}/${enc(ROOM)}/s`, { user: alice, body: key(0, 0, false) });
    expect(res.status).toBe(400);
    expect(await errcode(res)).toBe("M_MISSING_PARAM");
    expect((await call<Info>("GET", V, { user: alice })).count).toBe(0);
  });
});

describe("replacement rule", () => {
  const k = (first_message_index: number, forwarded_count: number, is_verified: boolean): BackupKey => ({
    first_message_index, forwarded_count, is_verified, session_data: "{}",
  });
  it.each([
    [k(0, 0, true), k(5, 5, false), false],
    [k(5, 5, false), k(9, 9, true), true],
    [k(5, 0, false), k(4, 9, false), true],
    [k(5, 0, false), k(6, 0, false), false],
    [k(5, 3, true), k(5, 2, true), true],
    [k(5, 3, true), k(5, 3, true), false],
  ])("stored %j, uploaded %j → replace %s", (stored, uploaded, expected) => {
    expect(shouldReplaceBackupKey(stored, uploaded)).toBe(expected);
  });
});
