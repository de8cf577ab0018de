/**
 * Login tokens: POST /_matrix/client/v1/login/get_token (user-interactive re-authentication, rate limit) and
 * `m.login.token` logins (single use, expiry, deactivated accounts), and LOGIN_VIA_EXISTING_SESSION=false.
 */
import { describe, expect, it } from "vitest";
import { call, request, testEnv } from "./helpers";
import { fromIp, json, registerUser, requestWithEnv, tokenCount, uniqueIp } from "./accounts-helpers";
import { tokenHash } from "../../src/accounts/tokens";

const GET_TOKEN = "/_matrix/client/v1/login/get_token";
const LOGIN = "/_matrix/client/v3/login";
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Runs both UIA rounds of get_token with the user's password; returns the final response. */
async function getToken(user: { userId: string; accessToken: string; password: string }, password = user.password) {
  const first = await request("POST", GET_TOKEN, { body: {}, headers: bearer(user.accessToken) });
  expect(first.status).toBe(401);
  const { session, flows } = await json(first);
  expect(flows).toEqual([{ stages: ["m.login.password"] }]);
  return request("POST", GET_TOKEN, {
    body: { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: user.userId }, password, session } },
    headers: bearer(user.accessToken),
  });
}

const tokenLogin = (token: unknown, extra: Record<string, unknown> = {}) =>
  request("POST", LOGIN, { body: { type: "m.login.token", token, ...extra }, headers: fromIp(uniqueIp()) });

describe("POST /login/get_token", () => {
  it("hands out a short-lived token after re-authentication; a new device logs in with it once", async () => {
    const u = await registerUser(`tok_${Date.now().toString(36)}`, "pw");
    const res = await getToken(u);
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.login_token).toMatch(/^syl_/);
    expect(body.expires_in_ms).toBe(120_000);
    // Only the hash is stored.
    const stored = await testEnv.DB.prepare("SELECT token_hash FROM login_tokens WHERE user_id = ?").bind(u.userId).all();
    expect(stored.results).toEqual([{ token_hash: tokenHash(body.login_token) }]);

    const before = await tokenCount(u.userId);
    const login = await tokenLogin(body.login_token, { device_id: "NEWPHONE", initial_device_display_name: "Phone" });
    expect(login.status).toBe(200);
    const session = await json(login);
    expect(session).toMatchObject({ user_id: u.userId, device_id: "NEWPHONE" });
    expect(await tokenCount(u.userId)).toBe(before + 1);
    const me = await call("GET", "/_matrix/client/v3/account/whoami", { headers: bearer(session.access_token) });
    expect(me).toMatchObject({ user_id: u.userId, device_id: "NEWPHONE" });

    // Single use: the second attempt fails and creates nothing.
    const again = await tokenLogin(body.login_token);
    expect(again.status).toBe(403);
    expect((await json(again)).errcode).toBe("M_FORBIDDEN");
    expect(await tokenCount(u.userId)).toBe(before + 1);
  });

  it("two logins racing with one token: exactly one succeeds", async () => {
    const u = await registerUser(`race_${Date.now().toString(36)}`, "pw");
    const { login_token } = await json(await getToken(u));
    const results = await Promise.all([tokenLogin(login_token), tokenLogin(login_token), tokenLogin(login_token)]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 403, 403]);
  });

  it("requires the right password, an access token, and refuses a second token within the minute", async () => {
    const u = await registerUser(`reauth_${Date.now().toString(36)}`, "pw");
    expect((await request("POST", GET_TOKEN, { body: {} })).status).toBe(401);
    const wrong = await getToken(u, "not-the-password");
    expect(wrong.status).toBe(401);
    expect((await json(wrong)).errcode).toBe("M_FORBIDDEN");
    expect((await testEnv.DB.prepare("SELECT count(*) AS n FROM login_tokens WHERE user_id = ?").bind(u.userId).first())!.n).toBe(0);

    expect((await getToken(u)).status).toBe(200);
    const second = await getToken(u);
    expect(second.status).toBe(429);
    expect((await json(second)).errcode).toBe("M_LIMIT_EXCEEDED");
  });

  it("is off with LOGIN_VIA_EXISTING_SESSION=false: 404, no get_login_token in flows or capabilities", async () => {
    const u = await registerUser(`off_${Date.now().toString(36)}`, "pw");
    const off = { LOGIN_VIA_EXISTING_SESSION: "false" };
    const res = await requestWithEnv(off, "POST", GET_TOKEN, { body: {}, token: u.accessToken });
    expect(res.status).toBe(404);
    expect((await json(res)).errcode).toBe("M_UNRECOGNIZED");
    const flows = (await json(await requestWithEnv(off, "GET", LOGIN))).flows;
    expect(flows).toContainEqual({ type: "m.login.token" });
    const caps = (await json(await requestWithEnv(off, "GET", "/_matrix/client/v3/capabilities", { token: u.accessToken }))).capabilities;
    expect(caps["m.get_login_token"]).toEqual({ enabled: false });
  });
});

describe("POST /login with m.login.token", () => {
  it("refuses unknown, expired, missing and malformed tokens", async () => {
    expect((await json(await tokenLogin("syl_nonsense"))).errcode).toBe("M_FORBIDDEN");
    const missing = await tokenLogin(undefined);
    expect(missing.status).toBe(400);
    expect((await json(missing)).errcode).toBe("M_MISSING_PARAM");
    expect((await json(await tokenLogin(42))).errcode).toBe("M_BAD_JSON");

    const u = await registerUser(`exp_${Date.now().toString(36)}`, "pw");
    const { login_token } = await json(await getToken(u));
    await testEnv.DB.prepare("UPDATE login_tokens SET expires_ts = ? WHERE user_id = ?").bind(Date.now() - 1, u.userId).run();
    const expired = await tokenLogin(login_token);
    expect(expired.status).toBe(403);
    expect((await json(expired)).errcode).toBe("M_FORBIDDEN");
  });

  it("refuses a token of an account deactivated since", async () => {
    const u = await registerUser(`deact_${Date.now().toString(36)}`, "pw");
    const { login_token } = await json(await getToken(u));
    const first = await request("POST", "/_matrix/client/v3/account/deactivate", { body: {}, headers: bearer(u.accessToken) });
    const { session } = await json(first);
    const done = await request("POST", "/_matrix/client/v3/account/deactivate", {
      body: { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: "pw", session } },
      headers: bearer(u.accessToken),
    });
    expect(done.status).toBe(200);
    const res = await tokenLogin(login_token);
    expect(res.status).toBe(403);
    expect((await json(res)).errcode).toBe("M_USER_DEACTIVATED");
  });
});
