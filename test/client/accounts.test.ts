/**
 * Registration (/register with UIA, /register/available), shared-secret registration, whoami, password change,
 * deactivation, 3PID endpoints, capabilities, and the password KDF.
 */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv, SERVER } from "./helpers";
import { fromIp, json, loginRequest, registerUser, requestWithEnv, tokenCount, uniqueIp } from "./accounts-helpers";
import { hashPassword, needsRehash, PBKDF2_ITERATIONS, verifyPassword, constantTimeEqual } from "../../src/accounts/passwords";
import { registrationMac } from "../../src/routes/synapse-admin";
import { supportedRoomVersions } from "../../src/protocol/room-versions";

const REG = "/_matrix/client/v3/register";
const userCount = async (userId: string) =>
  (await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM users WHERE user_id = ?").bind(userId).first<{ n: number }>())!.n;
const sessionCount = async () => (await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM uia_sessions").first<{ n: number }>())!.n;

describe("password hashing", () => {
  it("hashes with PBKDF2-SHA-256, a random salt and the iteration count in the hash", async () => {
    const a = await hashPassword("hunter2");
    const b = await hashPassword("hunter2");
    expect(a).toMatch(new RegExp(`^pbkdf2-sha256\\$${PBKDF2_ITERATIONS}\\$[A-Za-z0-9+/]+\\$[A-Za-z0-9+/]{43}$`));
    expect(a).not.toBe(b);
    expect(await verifyPassword("hunter2", a)).toBe(true);
    expect(await verifyPassword("hunter3", a)).toBe(false);
    expect(await verifyPassword("hunter2", null)).toBe(false);
    expect(await verifyPassword("hunter2", "bcrypt$2b$12$whatever")).toBe(false);
    expect(needsRehash(a)).toBe(false);
    expect(needsRehash(await hashPassword("x", 10_000))).toBe(true);
    expect(await verifyPassword("x", await hashPassword("x", 10_000))).toBe(true);
  });

  it("refuses stored hashes that ask for more work than allowed", async () => {
    const h = await hashPassword("pw");
    expect(await verifyPassword("pw", h.replace(`$${PBKDF2_ITERATIONS}$`, "$5000000$"))).toBe(false);
  });

  it("compares in constant time", () => {
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(constantTimeEqual(new Uint8Array([1]), new Uint8Array([1, 2]))).toBe(false);
  });
});

describe("POST /register", () => {
  it("asks for UIA first, with flows and a session, and persists no account", async () => {
    const ip = uniqueIp();
    const res = await request("POST", REG, { body: { username: "alice_uia", password: "pw" }, headers: fromIp(ip) });
    expect(res.status).toBe(401);
    const body = await json(res);
    expect(body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    expect(body.params).toEqual({});
    expect(typeof body.session).toBe("string");
    expect(body.errcode).toBeUndefined();
    expect(await userCount(`@alice_uia:${SERVER}`)).toBe(0);
  });

  it("registers after the dummy stage and returns a working login", async () => {
    const u = await registerUser("Bob_Reg", "pw1", { initial_device_display_name: "Bob's phone" });
    expect(u.userId).toBe(`@bob_reg:${SERVER}`);
    expect(u.accessToken).toMatch(/^syt_/);
    expect(u.refreshToken).toBeUndefined();
    const who = await call("GET", "/_matrix/client/v3/account/whoami", { user: u });
    expect(who).toEqual({ user_id: u.userId, device_id: u.deviceId, is_guest: false });
    const dev = await call("GET", `/_matrix/client/v3/devices/${u.deviceId}`, { user: u });
    expect(dev.display_name).toBe("Bob's phone");
    // The password works for login.
    expect((await loginRequest("bob_reg", "pw1")).status).toBe(200);
  });

  it("accepts the session alone on the second request (parameters come from the session)", async () => {
    const ip = uniqueIp();
    const first = await json(await request("POST", REG, { body: { username: "carol", password: "pw", device_id: "CAROLDEV" }, headers: fromIp(ip) }));
    const res = await call("POST", REG, { body: { auth: { type: "m.login.dummy", session: first.session } }, headers: fromIp(ip) });
    expect(res.user_id).toBe(`@carol:${SERVER}`);
    expect(res.device_id).toBe("CAROLDEV");
    expect(res.home_server).toBe(SERVER);
    expect((await loginRequest("carol", "pw")).status).toBe(200);
  });

  it("answers a retry of a completed session with the same account, not a second one", async () => {
    const ip = uniqueIp();
    const first = await json(await request("POST", REG, { body: { username: "dave", password: "pw" }, headers: fromIp(ip) }));
    const auth = { type: "m.login.dummy", session: first.session };
    const a = await call("POST", REG, { body: { username: "dave", password: "pw", auth }, headers: fromIp(ip) });
    const b = await call("POST", REG, { body: { username: "dave", password: "pw", auth }, headers: fromIp(ip) });
    expect(b.user_id).toBe(a.user_id);
    expect(b.access_token).not.toBe(a.access_token);
  });

  it("supports inhibit_login, device_id and refresh tokens", async () => {
    const inhibited = await registerUser("erin", "pw", { inhibit_login: true });
    expect(inhibited.accessToken).toBeUndefined();
    expect(inhibited.deviceId).toBeUndefined();
    expect(await tokenCount(`@erin:${SERVER}`)).toBe(0);

    const withRefresh = await registerUser("frank", "pw", { refresh_token: true, device_id: "FRANKDEV" });
    expect(withRefresh.deviceId).toBe("FRANKDEV");
    expect(withRefresh.refreshToken).toMatch(/^syr_/);
  });

  it("generates a localpart when no username is given", async () => {
    const u = await registerUser(undefined as unknown as string, "pw");
    expect(u.userId).toMatch(new RegExp(`^@\\d{12}:${SERVER.replace(".", "\\.")}$`));
  });

  it("rejects bad and taken usernames before UIA, creating no session", async () => {
    await registerUser("taken_name", "pw");
    const before = await sessionCount();
    const cases: [unknown, string][] = [
      ["taken_name", "M_USER_IN_USE"],
      ["TAKEN_NAME", "M_USER_IN_USE"],
      ["has space", "M_INVALID_USERNAME"],
      ["émile", "M_INVALID_USERNAME"],
      ["_reserved", "M_INVALID_USERNAME"],
      ["12345", "M_INVALID_USERNAME"],
      ["", "M_INVALID_USERNAME"],
      ["x".repeat(250), "M_INVALID_USERNAME"],
      [42, "M_INVALID_USERNAME"],
    ];
    for (const [username, errcode] of cases) {
      const res = await request("POST", REG, { body: { username, password: "pw" }, headers: fromIp(uniqueIp()) });
      expect(res.status, String(username)).toBe(400);
      expect((await json(res)).errcode, String(username)).toBe(errcode);
    }
    expect(await sessionCount()).toBe(before);
  });

  it("accepts the longest user ID that fits in 255 bytes", async () => {
    const localpart = "a".repeat(255 - `@:${SERVER}`.length);
    const u = await registerUser(localpart, "pw");
    expect(u.userId.length).toBe(255);
  });

  it("refuses guests with M_GUEST_ACCESS_FORBIDDEN and unknown kinds", async () => {
    const guest = await request("POST", `${REG}?kind=guest`, { body: {}, headers: fromIp(uniqueIp()) });
    expect(guest.status).toBe(403);
    expect((await json(guest)).errcode).toBe("M_GUEST_ACCESS_FORBIDDEN");
    const other = await request("POST", `${REG}?kind=robot`, { body: {}, headers: fromIp(uniqueIp()) });
    expect(other.status).toBe(400);
  });

  it("rejects bad JSON and bad field types", async () => {
    const notJson = await request("POST", REG, { body: "{nope", headers: fromIp(uniqueIp()) });
    expect(notJson.status).toBe(400);
    expect((await json(notJson)).errcode).toBe("M_NOT_JSON");
    const array = await request("POST", REG, { body: "[]", headers: fromIp(uniqueIp()) });
    expect((await json(array)).errcode).toBe("M_BAD_JSON");
    const badPassword = await request("POST", REG, { body: { username: "gina", password: 5 }, headers: fromIp(uniqueIp()) });
    expect((await json(badPassword)).errcode).toBe("M_BAD_JSON");
    const badAuth = await request("POST", REG, { body: { username: "gina", password: "pw", auth: "x" }, headers: fromIp(uniqueIp()) });
    expect((await json(badAuth)).errcode).toBe("M_BAD_JSON");
    expect(await userCount(`@gina:${SERVER}`)).toBe(0);
  });

  it("rejects unknown sessions, unknown stages and sessions of another endpoint", async () => {
    const ip = uniqueIp();
    const unknown = await request("POST", REG, { body: { username: "hank", password: "pw", auth: { type: "m.login.dummy", session: "nope" } }, headers: fromIp(ip) });
    expect(unknown.status).toBe(400);

    const first = await json(await request("POST", REG, { body: { username: "hank", password: "pw" }, headers: fromIp(ip) }));
    const wrongStage = await request("POST", REG, {
      body: { username: "hank", password: "pw", auth: { type: "m.login.recaptcha", session: first.session } },
      headers: fromIp(ip),
    });
    expect(wrongStage.status).toBe(401);
    const wb = await json(wrongStage);
    expect(wb.session).toBe(first.session);
    expect(wb.errcode).toBeDefined();
    expect(await userCount(`@hank:${SERVER}`)).toBe(0);

    // The same session used on another endpoint is refused.
    const user = await createUserDirect();
    const elsewhere = await request("POST", "/_matrix/client/v3/account/password", {
      user,
      body: { new_password: "x", auth: { type: "m.login.dummy", session: first.session } },
    });
    expect(elsewhere.status).toBe(403);
  });

  it("requires a password", async () => {
    const ip = uniqueIp();
    const first = await json(await request("POST", REG, { body: { username: "ivan" }, headers: fromIp(ip) }));
    const res = await request("POST", REG, { body: { username: "ivan", auth: { type: "m.login.dummy", session: first.session } }, headers: fromIp(ip) });
    expect(res.status).toBe(400);
    expect((await json(res)).errcode).toBe("M_MISSING_PARAM");
    expect(await userCount(`@ivan:${SERVER}`)).toBe(0);
  });

  it("refuses open registration when ENABLE_REGISTRATION is off", async () => {
    const res = await requestWithEnv({ ENABLE_REGISTRATION: "false" }, "POST", REG, { body: { username: "jill", password: "pw" }, headers: fromIp(uniqueIp()) });
    expect(res.status).toBe(403);
    expect((await json(res)).errcode).toBe("M_FORBIDDEN");
    const avail = await requestWithEnv({ ENABLE_REGISTRATION: "false" }, "GET", "/_matrix/client/v3/register/available?username=jill");
    expect(avail.status).toBe(403);
  });

  it("rate limits account creation per IP (429 with retry_after_ms and Retry-After)", async () => {
    const ip = uniqueIp();
    const one = async (username: string) => {
      const first = await request("POST", REG, { body: { username, password: "pw" }, headers: fromIp(ip) });
      if (first.status !== 401) return first;
      const { session } = await json(first);
      return request("POST", REG, { body: { username, password: "pw", auth: { type: "m.login.dummy", session } }, headers: fromIp(ip) });
    };
    // Synapse's default: a burst of 3.
    for (const name of ["rl_a", "rl_b", "rl_c"]) expect((await one(name)).status).toBe(200);
    const limited = await one("rl_d");
    expect(limited.status).toBe(429);
    const body = await json(limited);
    expect(body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(body.retry_after_ms).toBeGreaterThan(0);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await userCount(`@rl_d:${SERVER}`)).toBe(0);
    // Another IP is not affected.
    expect((await registerUser("rl_e")).userId).toBe(`@rl_e:${SERVER}`);
  });

  it("answers an application-service registration without a valid as_token with 401", async () => {
    const res = await request("POST", REG, { body: { type: "m.login.application_service", username: "bridge_x" } });
    expect(res.status).toBe(401);
    expect((await json(res)).errcode).toBe("M_MISSING_TOKEN");
    const withToken = await request("POST", REG, {
      body: { type: "m.login.application_service", username: "bridge_x" },
      headers: { authorization: "Bearer as_token_nobody_knows" },
    });
    expect(withToken.status).toBe(401);
    expect((await json(withToken)).errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("is served under r0 too", async () => {
    const res = await request("POST", "/_matrix/client/r0/register", { body: {}, headers: fromIp(uniqueIp()) });
    expect(res.status).toBe(401);
  });
});

describe("GET /register/available", () => {
  it("reports free, taken and invalid names", async () => {
    await registerUser("avail_taken");
    expect(await call("GET", `${REG}/available?username=avail_free`)).toEqual({ available: true });
    const taken = await request("GET", `${REG}/available?username=Avail_Taken`);
    expect(taken.status).toBe(400);
    expect((await json(taken)).errcode).toBe("M_USER_IN_USE");
    const invalid = await request("GET", `${REG}/available?username=${encodeURIComponent("no way")}`);
    expect((await json(invalid)).errcode).toBe("M_INVALID_USERNAME");
    const missing = await request("GET", `${REG}/available`);
    expect((await json(missing)).errcode).toBe("M_MISSING_PARAM");
  });
});

describe("shared-secret registration (/_synapse/admin/v1/register)", () => {
  const SECRET = "s3cret-for-tests";
  const ADMIN = "/_synapse/admin/v1/register";
  const env = { REGISTRATION_SHARED_SECRET: SECRET, ENABLE_REGISTRATION: "false" };
  const nonce = async () => (await json(await requestWithEnv(env, "GET", ADMIN, { headers: fromIp(uniqueIp()) }))).nonce as string;

  it("registers with a correct MAC even when open registration is off, and spends the nonce", async () => {
    const n = await nonce();
    expect(n).toMatch(/^[0-9a-f]{64}$/);
    const mac = await registrationMac(SECRET, n, "Admin_Alice", "pw", true);
    const res = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n, username: "Admin_Alice", password: "pw", admin: true, mac } });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.user_id).toBe(`@admin_alice:${SERVER}`);
    expect(body.access_token).toMatch(/^syt_/);
    expect(body.device_id).toBeTruthy();
    const row = await testEnv.DB.prepare("SELECT admin FROM users WHERE user_id = ?").bind(body.user_id).first<{ admin: number }>();
    expect(row!.admin).toBe(1);
    // The nonce is single-use.
    const again = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n, username: "admin_alice2", password: "pw", admin: true, mac } });
    expect(again.status).toBe(400);
  });

  it("covers user_type in the MAC", async () => {
    const n = await nonce();
    const mac = await registrationMac(SECRET, n, "botty", "pw", false, "bot");
    const res = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n, username: "botty", password: "pw", user_type: "bot", mac } });
    expect(res.status).toBe(200);
    const row = await testEnv.DB.prepare("SELECT admin, user_type FROM users WHERE user_id = ?").bind(`@botty:${SERVER}`).first();
    expect(row).toEqual({ admin: 0, user_type: "bot" });
  });

  it("refuses a wrong MAC (and still spends the nonce)", async () => {
    const n = await nonce();
    const mac = await registrationMac(SECRET, n, "mallory", "pw", true);
    // The MAC says admin, the request does not.
    const res = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n, username: "mallory", password: "pw", admin: false, mac } });
    expect(res.status).toBe(403);
    expect((await json(res)).errcode).toBe("M_FORBIDDEN");
    expect(await userCount(`@mallory:${SERVER}`)).toBe(0);
    const good = await registrationMac(SECRET, n, "mallory", "pw", false);
    const retry = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n, username: "mallory", password: "pw", admin: false, mac: good } });
    expect(retry.status).toBe(400);
  });

  it("refuses expired nonces, missing fields and bad user types", async () => {
    const n = await nonce();
    await testEnv.DB.prepare("UPDATE registration_nonces SET created_ts = created_ts - 120000 WHERE nonce = ?").bind(n).run();
    const mac = await registrationMac(SECRET, n, "late", "pw", false);
    expect((await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n, username: "late", password: "pw", mac } })).status).toBe(400);

    const missingNonce = await requestWithEnv(env, "POST", ADMIN, { body: { username: "x", password: "pw", mac: "00" } });
    expect((await json(missingNonce)).errcode).toBe("M_BAD_JSON");
    const n2 = await nonce();
    const noMac = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n2, username: "x", password: "pw" } });
    expect((await json(noMac)).errcode).toBe("M_BAD_JSON");
    const n3 = await nonce();
    const badType = await requestWithEnv(env, "POST", ADMIN, {
      body: { nonce: n3, username: "x", password: "pw", user_type: "wizard", mac: await registrationMac(SECRET, n3, "x", "pw", false, "wizard") },
    });
    expect(badType.status).toBe(400);
  });

  it("refuses taken and invalid usernames", async () => {
    await registerUser("ss_taken");
    const n = await nonce();
    const res = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n, username: "ss_taken", password: "pw", mac: await registrationMac(SECRET, n, "ss_taken", "pw", false) } });
    expect((await json(res)).errcode).toBe("M_USER_IN_USE");
    const n2 = await nonce();
    const bad = await requestWithEnv(env, "POST", ADMIN, { body: { nonce: n2, username: "bad name", password: "pw", mac: await registrationMac(SECRET, n2, "bad name", "pw", false) } });
    expect((await json(bad)).errcode).toBe("M_INVALID_USERNAME");
  });

  it("is disabled without a shared secret", async () => {
    expect((await request("GET", ADMIN)).status).toBe(400);
    expect((await request("POST", ADMIN, { body: { nonce: "x" } })).status).toBe(400);
  });
});

describe("GET /account/whoami", () => {
  it("needs a valid token", async () => {
    const missing = await request("GET", "/_matrix/client/v3/account/whoami");
    expect(missing.status).toBe(401);
    expect((await json(missing)).errcode).toBe("M_MISSING_TOKEN");
    const unknown = await request("GET", "/_matrix/client/v3/account/whoami", { headers: { authorization: "Bearer syt_nope" } });
    expect(unknown.status).toBe(401);
    expect(await json(unknown)).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: false });
    const user = await createUserDirect();
    const viaQuery = await call("GET", `/_matrix/client/v3/account/whoami?access_token=${user.accessToken}`);
    expect(viaQuery.user_id).toBe(user.userId);
  });
});

describe("POST /account/password", () => {
  const PW = "/_matrix/client/v3/account/password";

  it("changes the password after UIA with the old one and logs out other devices", async () => {
    const u = await registerUser("pw_changer", "old-pw");
    const other = await json(await loginRequest("pw_changer", "old-pw", { device_id: "OTHER" }));
    const first = await request("POST", PW, { user: u, body: { new_password: "new-pw" } });
    expect(first.status).toBe(401);
    const { session, flows } = await json(first);
    expect(flows).toEqual([{ stages: ["m.login.password"] }]);

    const wrong = await request("POST", PW, {
      user: u,
      body: { new_password: "new-pw", auth: { type: "m.login.password", session, identifier: { type: "m.id.user", user: u.userId }, password: "nope" } },
    });
    expect(wrong.status).toBe(401);
    const wb = await json(wrong);
    expect(wb.errcode).toBe("M_FORBIDDEN");
    expect(wb.session).toBe(session);
    expect(wb.completed).toBeUndefined();
    expect((await loginRequest("pw_changer", "old-pw")).status).toBe(200); // unchanged so far

    await call("POST", PW, {
      user: u,
      body: { new_password: "new-pw", auth: { type: "m.login.password", session, identifier: { type: "m.id.user", user: "pw_changer" }, password: "old-pw" } },
    });
    expect((await loginRequest("pw_changer", "old-pw")).status).toBe(403);
    expect((await loginRequest("pw_changer", "new-pw")).status).toBe(200);
    // This device still works; the other one is gone.
    await call("GET", "/_matrix/client/v3/account/whoami", { user: u });
    const gone = await request("GET", "/_matrix/client/v3/account/whoami", { headers: { authorization: `Bearer ${other.access_token}` } });
    expect(gone.status).toBe(401);
    const devices = await call<{ devices: { device_id: string }[] }>("GET", "/_matrix/client/v3/devices", { user: u });
    expect(devices.devices.map((d) => d.device_id)).not.toContain("OTHER");
  });

  it("keeps other devices with logout_devices: false", async () => {
    const u = await registerUser("pw_keeper", "old-pw");
    const other = await json(await loginRequest("pw_keeper", "old-pw"));
    const { session } = await json(await request("POST", PW, { user: u, body: { new_password: "n", logout_devices: false } }));
    await call("POST", PW, {
      user: u,
      body: { new_password: "n", logout_devices: false, auth: { type: "m.login.password", session, user: "pw_keeper", password: "old-pw" } },
    });
    await call("GET", "/_matrix/client/v3/account/whoami", { headers: { authorization: `Bearer ${other.access_token}` } });
  });

  it("refuses to authenticate as someone else, and needs a token", async () => {
    const u = await registerUser("pw_victim", "pw");
    const attacker = await registerUser("pw_attacker", "pw2");
    const { session } = await json(await request("POST", PW, { user: attacker, body: { new_password: "x" } }));
    const res = await request("POST", PW, {
      user: attacker,
      body: { new_password: "x", auth: { type: "m.login.password", session, identifier: { type: "m.id.user", user: u.userId }, password: "pw" } },
    });
    expect(res.status).toBe(401);
    expect((await json(res)).errcode).toBe("M_FORBIDDEN");
    expect((await request("POST", PW, { body: { new_password: "x" } })).status).toBe(401);
    // Another user's session cannot be borrowed.
    const { session: victimSession } = await json(await request("POST", PW, { user: u, body: { new_password: "x" } }));
    const borrowed = await request("POST", PW, {
      user: attacker,
      body: { new_password: "x", auth: { type: "m.login.password", session: victimSession, user: "pw_attacker", password: "pw2" } },
    });
    expect(borrowed.status).toBe(403);
  });

  it("rejects a bad new_password type without starting a session", async () => {
    const u = await createUserDirect();
    const before = await sessionCount();
    const res = await request("POST", PW, { user: u, body: { new_password: 12 } });
    expect(res.status).toBe(400);
    expect((await json(res)).errcode).toBe("M_BAD_JSON");
    expect(await sessionCount()).toBe(before);
  });
});

describe("POST /account/deactivate", () => {
  const DEACT = "/_matrix/client/v3/account/deactivate";

  it("deactivates after UIA: tokens revoked, devices gone, no more login", async () => {
    const u = await registerUser("leaver", "pw");
    const second = await json(await loginRequest("leaver", "pw"));
    const first = await request("POST", DEACT, { user: u, body: {} });
    expect(first.status).toBe(401);
    const { session } = await json(first);
    const res = await call("POST", DEACT, { user: u, body: { auth: { type: "m.login.password", session, user: "leaver", password: "pw" } } });
    expect(res).toEqual({ id_server_unbind_result: "success" });

    for (const token of [u.accessToken, second.access_token]) {
      const r = await request("GET", "/_matrix/client/v3/account/whoami", { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(401);
      expect((await json(r)).errcode).toBe("M_UNKNOWN_TOKEN");
    }
    const login = await loginRequest("leaver", "pw");
    expect(login.status).toBe(403);
    expect(await tokenCount(u.userId)).toBe(0);
    const devices = await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM devices WHERE user_id = ?").bind(u.userId).first<{ n: number }>();
    expect(devices!.n).toBe(0);
    const row = await testEnv.DB.prepare("SELECT deactivated, password_hash FROM users WHERE user_id = ?").bind(u.userId).first();
    expect(row).toEqual({ deactivated: 1, password_hash: null });
    // The name stays taken.
    const avail = await request("GET", `${REG}/available?username=leaver`);
    expect((await json(avail)).errcode).toBe("M_USER_IN_USE");
  });

  it("does nothing with a wrong password", async () => {
    const u = await registerUser("stayer", "pw");
    const { session } = await json(await request("POST", DEACT, { user: u, body: {} }));
    const res = await request("POST", DEACT, { user: u, body: { auth: { type: "m.login.password", session, user: "stayer", password: "bad" } } });
    expect(res.status).toBe(401);
    await call("GET", "/_matrix/client/v3/account/whoami", { user: u });
  });

  it("rejects a bad erase flag", async () => {
    const u = await createUserDirect();
    const res = await request("POST", DEACT, { user: u, body: { erase: "yes" } });
    expect((await json(res)).errcode).toBe("M_BAD_JSON");
  });
});

describe("third-party identifiers", () => {
  it("lists none and refuses changes", async () => {
    const u = await createUserDirect();
    expect(await call("GET", "/_matrix/client/v3/account/3pid", { user: u })).toEqual({ threepids: [] });
    for (const path of ["/account/3pid", "/account/3pid/add", "/account/3pid/delete", "/account/3pid/bind", "/account/3pid/unbind"]) {
      const res = await request("POST", `/_matrix/client/v3${path}`, { user: u, body: { medium: "email", address: "a@b.c" } });
      expect(res.status, path).toBe(403);
      expect((await json(res)).errcode).toBe("M_FORBIDDEN");
    }
    expect((await request("GET", "/_matrix/client/v3/account/3pid")).status).toBe(401);
    const token = await request("POST", "/_matrix/client/v3/account/3pid/email/requestToken", { user: u, body: {} });
    expect(token.status).toBe(404);
    expect((await json(token)).errcode).toBe("M_UNRECOGNIZED");
  });
});

describe("GET /capabilities", () => {
  it("lists room versions and account capabilities", async () => {
    const u = await createUserDirect();
    const { capabilities } = await call<{ capabilities: Record<string, any> }>("GET", "/_matrix/client/v3/capabilities", { user: u });
    expect(capabilities["m.room_versions"].default).toBe("12");
    expect(Object.keys(capabilities["m.room_versions"].available).sort()).toEqual(supportedRoomVersions().sort());
    expect(Object.values(capabilities["m.room_versions"].available).every((s) => s === "stable")).toBe(true);
    expect(capabilities["m.change_password"]).toEqual({ enabled: true });
    expect(capabilities["m.set_displayname"]).toEqual({ enabled: true });
    expect(capabilities["m.set_avatar_url"]).toEqual({ enabled: true });
    expect(capabilities["m.3pid_changes"]).toEqual({ enabled: false });
    expect(capabilities["m.get_login_token"]).toEqual({ enabled: true });
    expect((await request("GET", "/_matrix/client/v3/capabilities")).status).toBe(401);
  });
});
