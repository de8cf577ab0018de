/**
 * The client API as application services use it: as_token authentication, masquerading (user and device),
 * registration and login of their users, exclusive namespaces, rate-limit exemption, timestamp massaging,
 * ping, third-party lookups, user and alias queries, and the admin view.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv, type TestUser } from "../client/helpers";
import { V3, enc, expectError, newRoom } from "../client/rooms-helpers";
import { fromIp, requestWithEnv, uniqueIp } from "../client/accounts-helpers";
import { as, asSender, installFakeAppservices, SERVER, type FakeAppservices } from "./helpers";
import { rateLimitExempt } from "../../src/appservices/auth";
import type { Requester } from "../../src/http/app";

const REG = `${V3}/register`;
const bridge = asSender("bridge");
const observer = asSender("observer");
let fake: FakeAppservices;
let n = 0;
const unique = (prefix: string) => `${prefix}${++n}_${Date.now().toString(36)}`;

beforeEach(() => {
  fake = installFakeAppservices();
});

/** Registers a user through an appservice (inhibit_login unless `login`). */
async function registerPuppet(appservice: TestUser, localpart: string, login = false): Promise<Record<string, unknown>> {
  return call("POST", REG, { user: appservice, body: { type: "m.login.application_service", username: localpart, inhibit_login: !login } });
}

describe("as_token authentication and masquerading", () => {
  it("acts as the sender by default, registering it on first use, with no device", async () => {
    expect(await call("GET", `${V3}/account/whoami`, { user: bridge })).toEqual({ user_id: `@_asb_bot:${SERVER}`, is_guest: false });
    const row = await testEnv.DB.prepare("SELECT appservice_id FROM users WHERE user_id = ?").bind(`@_asb_bot:${SERVER}`).first();
    expect(row).toEqual({ appservice_id: "bridge" });
  });

  it("acts as a registered user of its namespace with ?user_id=", async () => {
    const puppet = `@${unique("_asb_p")}:${SERVER}`;
    await registerPuppet(bridge, puppet.slice(1).split(":")[0]!);
    expect(await call("GET", as(`${V3}/account/whoami`, puppet), { user: bridge })).toEqual({ user_id: puppet, is_guest: false });
  });

  it("refuses users outside its namespaces and unregistered ones with 403 M_FORBIDDEN", async () => {
    const alice = await createUserDirect();
    await expectError("GET", as(`${V3}/account/whoami`, alice.userId), { user: bridge }, 403, "M_FORBIDDEN");
    await expectError("GET", as(`${V3}/account/whoami`, `@_asb_ghost:${SERVER}`), { user: bridge }, 403, "M_FORBIDDEN");
    // Another appservice's user, and a remote user matching nothing.
    await expectError("GET", as(`${V3}/account/whoami`, `@_aso_x:${SERVER}`), { user: bridge }, 403, "M_FORBIDDEN");
    await expectError("GET", as(`${V3}/account/whoami`, `@_asb_x:elsewhere.test`), { user: bridge }, 403, "M_FORBIDDEN");
  });

  it("acts as a device of the user with ?device_id= (or org.matrix.msc3202.device_id); unknown devices are 400 M_UNKNOWN_DEVICE", async () => {
    const localpart = unique("_asb_d");
    const reg = await registerPuppet(bridge, localpart, true);
    const userId = reg.user_id as string;
    expect(reg.access_token).toEqual(expect.any(String));
    const device = reg.device_id as string;
    expect(await call("GET", as(`${V3}/account/whoami`, userId, { device_id: device }), { user: bridge })).toEqual({ user_id: userId, device_id: device, is_guest: false });
    expect(await call("GET", as(`${V3}/account/whoami`, userId, { "org.matrix.msc3202.device_id": device }), { user: bridge })).toMatchObject({ device_id: device });
    await expectError("GET", as(`${V3}/account/whoami`, userId, { device_id: "NOPE" }), { user: bridge }, 400, "M_UNKNOWN_DEVICE");
  });

  it("leaves ordinary tokens to the normal authentication", async () => {
    const alice = await createUserDirect();
    expect(await call("GET", as(`${V3}/account/whoami`, "@whoever:test.local"), { user: alice })).toMatchObject({ user_id: alice.userId });
    await expectError("GET", `${V3}/account/whoami`, { user: { ...alice, accessToken: "as-token-nope" } }, 401, "M_UNKNOWN_TOKEN");
  });
});

describe("registration and login for appservices", () => {
  it("registers passwordless users in its namespace, without UIA, with or without a login", async () => {
    const localpart = unique("_asb_r");
    const res = await registerPuppet(bridge, localpart);
    expect(res).toEqual({ user_id: `@${localpart}:${SERVER}`, home_server: SERVER });
    const row = await testEnv.DB.prepare("SELECT password_hash, appservice_id FROM users WHERE user_id = ?").bind(res.user_id).first();
    expect(row).toEqual({ password_hash: null, appservice_id: "bridge" });
    // Upper case is lowered, as for everyone.
    const upper = unique("_ASB_U");
    expect((await registerPuppet(bridge, upper)).user_id).toBe(`@${upper.toLowerCase()}:${SERVER}`);
  });

  it("works with open registration off and is not rate-limited", async () => {
    const ip = uniqueIp();
    for (let i = 0; i < 5; i++) {
      const res = await requestWithEnv({ ENABLE_REGISTRATION: "false" }, "POST", REG, {
        token: bridge.accessToken,
        headers: fromIp(ip),
        body: { type: "m.login.application_service", username: unique("_asb_q"), inhibit_login: true },
      });
      expect(res.status).toBe(200);
    }
  });

  it("refuses names outside its namespaces (400 M_EXCLUSIVE), taken names, bad names and missing tokens", async () => {
    await expectError("POST", REG, { user: bridge, body: { type: "m.login.application_service", username: unique("plain") } }, 400, "M_EXCLUSIVE");
    await expectError("POST", REG, { user: bridge, body: { type: "m.login.application_service", username: unique("_aso_") } }, 400, "M_EXCLUSIVE");
    const taken = unique("_asb_t");
    await registerPuppet(bridge, taken);
    await expectError("POST", REG, { user: bridge, body: { type: "m.login.application_service", username: taken } }, 400, "M_USER_IN_USE");
    await expectError("POST", REG, { user: bridge, body: { type: "m.login.application_service", username: "_asb_a b" } }, 400, "M_INVALID_USERNAME");
    await expectError("POST", REG, { user: bridge, body: { type: "m.login.application_service" } }, 400, "M_MISSING_PARAM");
    await expectError("POST", REG, { body: { type: "m.login.application_service", username: "_asb_x" } }, 401, "M_MISSING_TOKEN");
    const alice = await createUserDirect();
    await expectError("POST", REG, { user: alice, body: { type: "m.login.application_service", username: "_asb_x" } }, 401, "M_UNKNOWN_TOKEN");
  });

  it("keeps exclusive user namespaces from ordinary registration (400 M_EXCLUSIVE), also in /register/available", async () => {
    const name = unique("reserved_");
    await expectError("GET", `${V3}/register/available?username=${name}`, {}, 400, "M_EXCLUSIVE");
    const res = await request("POST", REG, { body: { username: name, password: "pw-1234567", auth: { type: "m.login.dummy" } }, headers: fromIp(uniqueIp()) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errcode: string }).errcode).toBe("M_EXCLUSIVE");
    // A name no appservice claims is fine.
    expect(await call("GET", `${V3}/register/available?username=${unique("free")}`)).toEqual({ available: true });
  });

  it("logs its users in with m.login.application_service", async () => {
    const flows = await call<{ flows: { type: string }[] }>("GET", `${V3}/login`);
    expect(flows.flows.map((f) => f.type)).toContain("m.login.application_service");
    const localpart = unique("_asb_l");
    await registerPuppet(bridge, localpart);
    const res = await call("POST", `${V3}/login`, {
      user: bridge,
      body: { type: "m.login.application_service", identifier: { type: "m.id.user", user: localpart }, device_id: "BRIDGEDEV" },
    });
    expect(res).toMatchObject({ user_id: `@${localpart}:${SERVER}`, device_id: "BRIDGEDEV", access_token: expect.any(String) });
    const puppet = { userId: res.user_id as string, deviceId: "BRIDGEDEV", accessToken: res.access_token as string };
    expect(await call("GET", `${V3}/account/whoami`, { user: puppet })).toMatchObject({ user_id: puppet.userId, device_id: "BRIDGEDEV" });
    // A full user ID works too.
    await call("POST", `${V3}/login`, { user: bridge, body: { type: "m.login.application_service", identifier: { type: "m.id.user", user: puppet.userId } } });
  });

  it("refuses logins outside its namespaces (403 M_EXCLUSIVE), unknown users (403) and requests without its token (401)", async () => {
    const alice = await createUserDirect();
    const body = (user: string) => ({ type: "m.login.application_service", identifier: { type: "m.id.user", user } });
    await expectError("POST", `${V3}/login`, { user: bridge, body: body(alice.userId) }, 403, "M_EXCLUSIVE");
    await expectError("POST", `${V3}/login`, { user: bridge, body: body(unique("_asb_none")) }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/login`, { body: body("_asb_x") }, 401, "M_MISSING_TOKEN");
    await expectError("POST", `${V3}/login`, { user: alice, body: body("_asb_x") }, 401, "M_UNKNOWN_TOKEN");
    await expectError("POST", `${V3}/login`, { user: bridge, body: { type: "m.login.application_service", identifier: { type: "m.id.thirdparty" } } }, 400, "M_UNKNOWN");
  });
});

describe("rate limits", () => {
  it("do not apply to an appservice registered with rate_limited: false, but do to others", async () => {
    const ip = uniqueIp();
    const bLocal = unique("_asb_rl");
    await registerPuppet(bridge, bLocal);
    const loginAs = (token: TestUser, user: string) =>
      request("POST", `${V3}/login`, { user: token, headers: fromIp(ip), body: { type: "m.login.application_service", identifier: { type: "m.id.user", user } } });
    for (let i = 0; i < 8; i++) expect((await loginAs(bridge, bLocal)).status).toBe(200);

    const oLocal = unique("_aso_rl");
    await registerPuppet(observer, oLocal);
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await loginAs(observer, oLocal)).status);
    expect(statuses).toContain(429);
  });

  it("exempt an appservice acting as its sender (the spec: the sender is excluded), not its masqueraded users", () => {
    const ctx = (requester: Requester) => ({ env: testEnv, get: () => requester }) as unknown as Parameters<typeof rateLimitExempt>[0];
    expect(rateLimitExempt(ctx({ userId: observer.userId, deviceId: "", isGuest: false, appserviceId: "observer" }))).toBe(true);
    expect(rateLimitExempt(ctx({ userId: `@_aso_x:${SERVER}`, deviceId: "", isGuest: false, appserviceId: "observer" }))).toBe(false);
    expect(rateLimitExempt(ctx({ userId: `@_asb_x:${SERVER}`, deviceId: "", isGuest: false, appserviceId: "bridge" }))).toBe(true);
    expect(rateLimitExempt(ctx({ userId: "@alice:test.local", deviceId: "D", isGuest: false }))).toBe(false);
  });

  it("ignore ?user_id= on /register and /login (bridges name the user they are about to create)", async () => {
    const localpart = unique("_asb_new");
    const res = await call("POST", as(REG, `@${localpart}:${SERVER}`), { user: bridge, body: { type: "m.login.application_service", username: localpart, inhibit_login: true } });
    expect(res.user_id).toBe(`@${localpart}:${SERVER}`);
  });
});

describe("timestamp massaging (?ts=)", () => {
  it("sets origin_server_ts of /send and /state events sent by an appservice", async () => {
    const roomId = await newRoom(bridge);
    const sent = await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/t1?ts=1234567`, { user: bridge, body: { msgtype: "m.text", body: "old" } });
    const ev = await call<{ origin_server_ts: number }>("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(sent.event_id)}`, { user: bridge });
    expect(ev.origin_server_ts).toBe(1234567);
    const state = await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.topic/?ts=7654321`, { user: bridge, body: { topic: "t" } });
    const sev = await call<{ origin_server_ts: number }>("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(state.event_id)}`, { user: bridge });
    expect(sev.origin_server_ts).toBe(7654321);
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/t2?ts=soon`, { user: bridge, body: { body: "x" } }, 400, "M_INVALID_PARAM");
    await expectError("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/t3?ts=-5`, { user: bridge, body: { body: "x" } }, 400, "M_INVALID_PARAM");
  });

  it("is ignored for ordinary users", async () => {
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    const before = Date.now();
    const sent = await call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/t1?ts=1000`, { user: alice, body: { body: "now" } });
    const ev = await call<{ origin_server_ts: number }>("GET", `${V3}/rooms/${enc(roomId)}/event/${enc(sent.event_id)}`, { user: alice });
    expect(ev.origin_server_ts).toBeGreaterThanOrEqual(before - 1000);
  });
});

describe("aliases", () => {
  it("an appservice creates aliases in its namespace only; others may not take an exclusive one", async () => {
    const roomId = await newRoom(bridge);
    await call("PUT", `${V3}/directory/room/${enc(`#${unique("_asb_a")}:${SERVER}`)}`, { user: bridge, body: { room_id: roomId } });
    await expectError("PUT", `${V3}/directory/room/${enc(`#${unique("other")}:${SERVER}`)}`, { user: bridge, body: { room_id: roomId } }, 400, "M_EXCLUSIVE");

    const alice = await createUserDirect();
    const aliceRoom = await newRoom(alice);
    await expectError("PUT", `${V3}/directory/room/${enc(`#${unique("_asb_a")}:${SERVER}`)}`, { user: alice, body: { room_id: aliceRoom } }, 400, "M_EXCLUSIVE");
    await expectError("PUT", `${V3}/directory/room/${enc(`#${unique("reserved_")}:${SERVER}`)}`, { user: alice, body: { room_id: aliceRoom } }, 400, "M_EXCLUSIVE");
    await expectError("POST", `${V3}/createRoom`, { user: alice, body: { room_alias_name: unique("_asb_c") } }, 400, "M_EXCLUSIVE");
    // Non-exclusive namespaces (the observer's) are open to everyone.
    await call("PUT", `${V3}/directory/room/${enc(`#${unique("_aso_a")}:${SERVER}`)}`, { user: alice, body: { room_id: aliceRoom } });
  });
});

describe("user and alias queries", () => {
  it("asks the appservice about an unknown user of its namespace; a 200 means the user exists now", async () => {
    const localpart = unique("_asb_ghost");
    const userId = `@${localpart}:${SERVER}`;
    fake.routes[`GET bridge.as.test/base/_matrix/app/v1/users/${enc(userId)}`] = async () => {
      await registerPuppet(bridge, localpart);
      return Response.json({});
    };
    const alice = await createUserDirect();
    expect(await call("GET", `${V3}/profile/${enc(userId)}`, { user: alice })).toEqual(expect.any(Object));
    const q = fake.requests.find((r) => r.url.pathname.endsWith(`/users/${enc(userId)}`));
    expect(q?.authorization).toBe("Bearer hs-token-bridge");
  });

  it("answers 404 when the appservice says no, and does not ask about users outside namespaces", async () => {
    const alice = await createUserDirect();
    await expectError("GET", `${V3}/profile/${enc(`@${unique("_asb_nobody")}:${SERVER}`)}`, { user: alice }, 404, "M_NOT_FOUND");
    expect(fake.requests.filter((r) => r.url.pathname.includes("/users/"))).toHaveLength(1);
    await expectError("GET", `${V3}/profile/${enc(`@${unique("nobody")}:${SERVER}`)}`, { user: alice }, 404, "M_NOT_FOUND");
    expect(fake.requests.filter((r) => r.url.pathname.includes("/users/"))).toHaveLength(1);
  });

  it("asks about an unknown invitee of its namespace", async () => {
    const localpart = unique("_asb_inv");
    const userId = `@${localpart}:${SERVER}`;
    fake.routes[`GET bridge.as.test/base/_matrix/app/v1/users/${enc(userId)}`] = async () => {
      await registerPuppet(bridge, localpart);
      return Response.json({});
    };
    const alice = await createUserDirect();
    const roomId = await newRoom(alice);
    await call("POST", `${V3}/rooms/${enc(roomId)}/invite`, { user: alice, body: { user_id: userId } });
  });

  it("asks about an unknown alias of its namespace; the appservice creates it before answering", async () => {
    const alias = `#${unique("_asb_lobby")}:${SERVER}`;
    let roomId = "";
    fake.routes[`GET bridge.as.test/base/_matrix/app/v1/rooms/${enc(alias)}`] = async () => {
      roomId = (await call<{ room_id: string }>("POST", `${V3}/createRoom`, { user: bridge, body: { room_alias_name: alias.slice(1).split(":")[0] } })).room_id;
      return Response.json({});
    };
    const alice = await createUserDirect();
    const res = await call<{ room_id: string }>("GET", `${V3}/directory/room/${enc(alias)}`, { user: alice });
    expect(res.room_id).toBe(roomId);
    await expectError("GET", `${V3}/directory/room/${enc(`#${unique("_asb_none")}:${SERVER}`)}`, { user: alice }, 404, "M_NOT_FOUND");
  });
});

describe("POST /_matrix/client/v1/appservice/{id}/ping", () => {
  const PING = (id: string) => `/_matrix/client/v1/appservice/${id}/ping`;

  it("pings the appservice with the transaction id and reports the duration", async () => {
    fake.routes["POST bridge.as.test/base/_matrix/app/v1/ping"] = () => Response.json({});
    const res = await call<{ duration_ms: number }>("POST", PING("bridge"), { user: bridge, body: { transaction_id: "meow" } });
    expect(res.duration_ms).toEqual(expect.any(Number));
    const sent = fake.requests.find((r) => r.url.pathname === "/base/_matrix/app/v1/ping")!;
    expect(sent.body).toEqual({ transaction_id: "meow" });
    expect(sent.authorization).toBe("Bearer hs-token-bridge");
  });

  it("reports the appservice's errors: M_BAD_STATUS with status and body, M_CONNECTION_FAILED", async () => {
    fake.routes["POST bridge.as.test/base/_matrix/app/v1/ping"] = () => Response.json({ errcode: "M_FORBIDDEN" }, { status: 403 });
    const body = await expectError("POST", PING("bridge"), { user: bridge, body: {} }, 502, "M_BAD_STATUS");
    expect(body.status).toBe(403);
    expect(JSON.parse(body.body as string)).toEqual({ errcode: "M_FORBIDDEN" });
    fake.routes["POST bridge.as.test/base/_matrix/app/v1/ping"] = () => {
      throw new TypeError("connection refused");
    };
    await expectError("POST", PING("bridge"), { user: bridge, body: {} }, 502, "M_CONNECTION_FAILED");
  });

  it("is only for the appservice itself, needs a URL and a string transaction id", async () => {
    const alice = await createUserDirect();
    await expectError("POST", PING("bridge"), { user: alice, body: {} }, 403, "M_FORBIDDEN");
    await expectError("POST", PING("bridge"), { user: observer, body: {} }, 403, "M_FORBIDDEN");
    await expectError("POST", PING("bridge"), { body: {} }, 401, "M_MISSING_TOKEN");
    await expectError("POST", PING("silent"), { user: asSender("silent"), body: {} }, 400, "M_URL_NOT_SET");
    await expectError("POST", PING("bridge"), { user: bridge, body: { transaction_id: 5 } }, 400, "M_INVALID_PARAM");
  });
});

describe("third-party lookups", () => {
  const protocolInfo = (network: string) => ({
    user_fields: ["network", "nickname"],
    location_fields: ["network", "channel"],
    icon: "mxc://example.org/icon",
    field_types: { network: { regexp: "[a-z]+", placeholder: "libera" } },
    instances: [{ desc: network, network_id: network, fields: { network }, icon: "mxc://x/y" }],
  });

  beforeEach(() => {
    fake.routes["GET bridge.as.test/base/_matrix/app/v1/thirdparty/protocol/irc"] = () => Response.json(protocolInfo("libera"));
    fake.routes["GET observer.as.test/_matrix/app/v1/thirdparty/protocol/irc"] = () => Response.json(protocolInfo("oftc"));
    fake.routes["GET bridge.as.test/base/_matrix/app/v1/thirdparty/protocol/chat"] = () => Response.json({ nonsense: true });
  });

  it("merges protocol metadata from every appservice that registered the protocol, with instance ids", async () => {
    const alice = await createUserDirect();
    const all = await call<Record<string, { instances: { instance_id: string; network_id: string }[] }>>("GET", `${V3}/thirdparty/protocols`, { user: alice });
    expect(Object.keys(all)).toEqual(["irc"]); // chat answered nonsense: left out
    expect(all.irc!.instances.map((i) => i.instance_id).sort()).toEqual(["bridge|libera", "observer|oftc"]);
    const one = await call<{ icon: string; instances: unknown[] }>("GET", `${V3}/thirdparty/protocol/irc`, { user: alice });
    expect(one.instances).toHaveLength(2);
    expect(one.icon).toBe("mxc://example.org/icon");
    await expectError("GET", `${V3}/thirdparty/protocol/chat`, { user: alice }, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/thirdparty/protocol/xmpp`, { user: alice }, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/thirdparty/protocols`, {}, 401, "M_MISSING_TOKEN");
  });

  it("forwards location and user lookups with their fields and concatenates valid results", async () => {
    fake.routes["GET bridge.as.test/base/_matrix/app/v1/thirdparty/location/irc"] = (r) =>
      Response.json([
        { alias: "#_asb_libera_matrix:test.local", protocol: "irc", fields: { network: r.url.searchParams.get("network"), channel: r.url.searchParams.get("channel") } },
        { alias: "#bad", protocol: "other", fields: {} },
        "junk",
      ]);
    fake.routes["GET observer.as.test/_matrix/app/v1/thirdparty/location/irc"] = () => Response.json({ errcode: "M_UNKNOWN" }, { status: 500 });
    fake.routes["GET bridge.as.test/base/_matrix/app/v1/thirdparty/user/irc"] = () =>
      Response.json([{ userid: "@_asb_nick:test.local", protocol: "irc", fields: { nickname: "nick" } }]);
    fake.routes["GET observer.as.test/_matrix/app/v1/thirdparty/user/irc"] = () =>
      Response.json([{ userid: "@_aso_nick:test.local", protocol: "irc", fields: { nickname: "nick" } }]);
    fake.routes["GET bridge.as.test/base/_matrix/app/v1/thirdparty/location"] = (r) =>
      Response.json([{ alias: r.url.searchParams.get("alias"), protocol: "irc", fields: { channel: "#matrix" } }]);
    fake.routes["GET bridge.as.test/base/_matrix/app/v1/thirdparty/user"] = (r) =>
      Response.json([{ userid: r.url.searchParams.get("userid"), protocol: "irc", fields: { nickname: "n" } }]);

    const alice = await createUserDirect();
    const locations = await call<unknown[]>("GET", `${V3}/thirdparty/location/irc?network=libera&channel=%23matrix`, { user: alice });
    expect(locations).toEqual([{ alias: "#_asb_libera_matrix:test.local", protocol: "irc", fields: { network: "libera", channel: "#matrix" } }]);
    const users = await call<{ userid: string }[]>("GET", `${V3}/thirdparty/user/irc?nickname=nick`, { user: alice });
    expect(users.map((u) => u.userid).sort()).toEqual(["@_asb_nick:test.local", "@_aso_nick:test.local"]);
    expect(await call("GET", `${V3}/thirdparty/location?alias=${enc("#x:test.local")}`, { user: alice })).toEqual([
      { alias: "#x:test.local", protocol: "irc", fields: { channel: "#matrix" } },
    ]);
    expect(await call("GET", `${V3}/thirdparty/user?userid=${enc("@x:test.local")}`, { user: alice })).toEqual([
      { userid: "@x:test.local", protocol: "irc", fields: { nickname: "n" } },
    ]);
    await expectError("GET", `${V3}/thirdparty/location/xmpp`, { user: alice }, 404, "M_NOT_FOUND");
    await expectError("GET", `${V3}/thirdparty/location`, { user: alice }, 400, "M_MISSING_PARAM");
    await expectError("GET", `${V3}/thirdparty/user`, { user: alice }, 400, "M_MISSING_PARAM");
  });
});

describe("GET /_axon/admin/v1/appservices", () => {
  it("lists every appservice's delivery state for server admins only", async () => {
    const alice = await createUserDirect();
    await expectError("GET", "/_axon/admin/v1/appservices", { user: alice }, 403, "M_FORBIDDEN");
    await expectError("GET", "/_axon/admin/v1/appservices", {}, 401, "M_MISSING_TOKEN");
    await testEnv.DB.prepare("UPDATE users SET admin = 1 WHERE user_id = ?").bind(alice.userId).run();
    const res = await call<{ appservices: { id: string; state: string; backlog: Record<string, number>; last_txn_id: number; next_retry_ts: number | null; url: string | null }[] }>(
      "GET", "/_axon/admin/v1/appservices", { user: alice },
    );
    expect(res.appservices.map((a) => a.id)).toEqual(["bridge", "observer", "faulty", "bulk", "silent"]);
    const silent = res.appservices.find((a) => a.id === "silent")!;
    expect(silent).toMatchObject({ state: "up", url: null, last_txn_id: 0, next_retry_ts: null, backlog: { queued: 0, in_transactions: 0, rooms_behind: 0 } });
  });
});
