/**
 * Token-authenticated registration: REGISTRATION_REQUIRES_TOKEN, the `m.login.registration_token` stage, the
 * validity endpoint, token limits (uses, pending uses, expiry), and Synapse's admin API for tokens.
 */
import { describe, expect, it } from "vitest";
import { createUserDirect, testEnv, type TestUser } from "./helpers";
import { fromIp, json, requestWithEnv, uniqueIp } from "./accounts-helpers";

const REQUIRE = { REGISTRATION_REQUIRES_TOKEN: "true" };
const REGISTER = "/_matrix/client/v3/register";
const VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity";
const ADMIN = "/_synapse/admin/v1/registration_tokens";

async function makeAdmin(): Promise<TestUser> {
  const admin = await createUserDirect();
  await testEnv.DB.prepare("UPDATE users SET admin = 1 WHERE user_id = ?").bind(admin.userId).run();
  return admin;
}

async function newToken(admin: TestUser, body: Record<string, unknown> = {}) {
  const res = await requestWithEnv(REQUIRE, "POST", `${ADMIN}/new`, { token: admin.accessToken, body });
  expect(res.status).toBe(200);
  return json(res);
}

/** Starts a registration; returns the session and a function that sends one `auth` stage (same IP throughout). */
async function startRegistration(username: string) {
  const ip = uniqueIp();
  const post = (body: Record<string, unknown>) => requestWithEnv(REQUIRE, "POST", REGISTER, { body, headers: fromIp(ip) });
  const first = await post({ username, password: "pw" });
  expect(first.status).toBe(401);
  const body = await json(first);
  const stage = (auth: Record<string, unknown>) => post({ auth: { ...auth, session: body.session } });
  return { first: body, stage };
}

const tokenRow = async (admin: TestUser, token: string) =>
  json(await requestWithEnv(REQUIRE, "GET", `${ADMIN}/${token}`, { token: admin.accessToken }));

describe("registration with REGISTRATION_REQUIRES_TOKEN", () => {
  it("asks for a token, then the dummy stage; the use is pending, then completed", async () => {
    const admin = await makeAdmin();
    const { token } = await newToken(admin, { uses_allowed: 2 });
    const name = `tokuser_${Date.now().toString(36)}`;
    const { first, stage } = await startRegistration(name);
    expect(first.flows).toEqual([{ stages: ["m.login.registration_token", "m.login.dummy"] }]);

    // The dummy stage may not come first.
    expect((await json(await stage({ type: "m.login.dummy" }))).errcode).toBe("M_UNRECOGNIZED");
    const wrong = await stage({ type: "m.login.registration_token", token: "nottherighttoken" });
    expect(wrong.status).toBe(401);
    expect((await json(wrong)).errcode).toBe("M_UNAUTHORIZED");

    const afterToken = await json(await stage({ type: "m.login.registration_token", token }));
    expect(afterToken.completed).toEqual(["m.login.registration_token"]);
    expect(await tokenRow(admin, token)).toMatchObject({ token, uses_allowed: 2, pending: 1, completed: 0 });

    const done = await stage({ type: "m.login.dummy" });
    expect(done.status).toBe(200);
    expect((await json(done)).user_id).toBe(`@${name}:test.local`);
    expect(await tokenRow(admin, token)).toMatchObject({ pending: 0, completed: 1 });
  });

  it("a token's last use goes to one session only; an expired or used-up token is refused", async () => {
    const admin = await makeAdmin();
    const { token } = await newToken(admin, { uses_allowed: 1 });
    const a = await startRegistration(`racea_${Date.now().toString(36)}`);
    const b = await startRegistration(`raceb_${Date.now().toString(36)}`);
    const [ra, rb] = await Promise.all([
      a.stage({ type: "m.login.registration_token", token }),
      b.stage({ type: "m.login.registration_token", token }),
    ]);
    const codes = [(await json(ra)).errcode, (await json(rb)).errcode].sort();
    // Both answer 401 (one asks for the next stage, one refuses the token).
    expect(codes).toEqual(["M_UNAUTHORIZED", undefined].sort());
    expect(await tokenRow(admin, token)).toMatchObject({ pending: 1, completed: 0 });
    const validity = await json(await requestWithEnv(REQUIRE, "GET", `${VALIDITY}?token=${token}`, { headers: fromIp(uniqueIp()) }));
    expect(validity).toEqual({ valid: false });

    const expired = await newToken(admin, { expiry_time: Date.now() + 60_000 });
    await testEnv.DB.prepare("UPDATE registration_tokens SET expiry_time = ? WHERE token = ?").bind(Date.now() - 1, expired.token).run();
    const c = await startRegistration(`late_${Date.now().toString(36)}`);
    expect((await json(await c.stage({ type: "m.login.registration_token", token: expired.token }))).errcode).toBe("M_UNAUTHORIZED");
  });

  it("an abandoned session gives its pending use back when it expires", async () => {
    const admin = await makeAdmin();
    const { token } = await newToken(admin, { uses_allowed: 1 });
    const a = await startRegistration(`aband_${Date.now().toString(36)}`);
    await a.stage({ type: "m.login.registration_token", token });
    expect(await tokenRow(admin, token)).toMatchObject({ pending: 1 });
    await testEnv.DB.prepare("UPDATE uia_sessions SET created_ts = 0 WHERE session_id = ?").bind(a.first.session).run();
    expect(await tokenRow(admin, token)).toMatchObject({ pending: 0 });
    const validity = await json(await requestWithEnv(REQUIRE, "GET", `${VALIDITY}?token=${token}`, { headers: fromIp(uniqueIp()) }));
    expect(validity).toEqual({ valid: true });
  });

  it("without REGISTRATION_REQUIRES_TOKEN the dummy stage is enough", async () => {
    const res = await requestWithEnv({}, "POST", REGISTER, { body: { username: `free_${Date.now().toString(36)}`, password: "pw" }, headers: fromIp(uniqueIp()) });
    expect((await json(res)).flows).toEqual([{ stages: ["m.login.dummy"] }]);
  });
});

describe("GET /register/m.login.registration_token/validity", () => {
  it("answers valid for usable tokens, invalid otherwise; 400 without a token; 403 when registration is off", async () => {
    const admin = await makeAdmin();
    const { token } = await newToken(admin);
    const check = async (t: string, env = REQUIRE) => json(await requestWithEnv(env, "GET", `${VALIDITY}?token=${encodeURIComponent(t)}`, { headers: fromIp(uniqueIp()) }));
    expect(await check(token)).toEqual({ valid: true });
    expect(await check("unknown-token")).toEqual({ valid: false });
    expect(await check("bad token!")).toEqual({ valid: false });
    const missing = await requestWithEnv(REQUIRE, "GET", VALIDITY, { headers: fromIp(uniqueIp()) });
    expect(missing.status).toBe(400);
    expect((await check(token, { ...REQUIRE, ENABLE_REGISTRATION: "false" } as never)).errcode).toBe("M_FORBIDDEN");
  });
});

describe("admin API", () => {
  it("creates, lists, updates and deletes tokens; admins only", async () => {
    const admin = await makeAdmin();
    const user = await createUserDirect();
    const call = (method: string, path: string, body?: unknown, who = admin) => requestWithEnv(REQUIRE, method, path, { token: who.accessToken, body });

    expect((await call("GET", ADMIN, undefined, user)).status).toBe(403);
    expect((await call("POST", `${ADMIN}/new`, {}, user)).status).toBe(403);

    const random = await json(await call("POST", `${ADMIN}/new`, { length: 24 }));
    expect(random.token).toMatch(/^[A-Za-z0-9._~-]{24}$/);
    expect(random).toMatchObject({ uses_allowed: null, pending: 0, completed: 0, expiry_time: null });
    const named = await json(await call("POST", `${ADMIN}/new`, { token: `named-${Date.now()}`, uses_allowed: 5 }));
    expect((await call("POST", `${ADMIN}/new`, { token: named.token })).status).toBe(400);
    for (const bad of [{ token: "has space" }, { length: 65 }, { uses_allowed: -1 }, { expiry_time: 1 }, { token: 5 }]) {
      expect((await call("POST", `${ADMIN}/new`, bad)).status, JSON.stringify(bad)).toBe(400);
    }

    const updated = await json(await call("PUT", `${ADMIN}/${named.token}`, { uses_allowed: null, expiry_time: Date.now() + 3_600_000 }));
    expect(updated.uses_allowed).toBeNull();
    expect(updated.expiry_time).toBeGreaterThan(Date.now());

    const all = (await json(await call("GET", ADMIN))).registration_tokens.map((t: { token: string }) => t.token);
    expect(all).toEqual(expect.arrayContaining([random.token, named.token]));
    const valid = (await json(await call("GET", `${ADMIN}?valid=true`))).registration_tokens.map((t: { token: string }) => t.token);
    expect(valid).toEqual(expect.arrayContaining([random.token, named.token]));

    expect(await json(await call("DELETE", `${ADMIN}/${named.token}`))).toEqual({});
    expect((await call("GET", `${ADMIN}/${named.token}`)).status).toBe(404);
    expect((await call("DELETE", `${ADMIN}/${named.token}`)).status).toBe(404);
    expect((await call("PUT", `${ADMIN}/${named.token}`, { uses_allowed: 1 })).status).toBe(404);
  });
});
