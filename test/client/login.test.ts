/**
 * /login, /logout, /logout/all, /refresh, soft logout of expired tokens, and the rate limiter.
 */
import { describe, expect, it } from "vitest";
import { call, request, testEnv, SERVER } from "./helpers";
import { eventually, fromIp, json, loginRequest, registerUser, requestWithEnv, tokenCount, uniqueIp } from "./accounts-helpers";
import { tokenHash } from "../../src/accounts/tokens";
import { forgetRecentActivity } from "../../src/accounts/activity";

const LOGIN = "/_matrix/client/v3/login";
const WHOAMI = "/_matrix/client/v3/account/whoami";
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const whoami = (token: string) => request("GET", WHOAMI, { headers: bearer(token) });

describe("GET /login", () => {
  it("offers password and token login (with get_login_token), and appservice login", async () => {
    // m.login.application_service is offered because the test server has appservices (test/appservices/registrations.ts).
    const flows = {
      flows: [{ type: "m.login.password" }, { type: "m.login.token", get_login_token: true }, { type: "m.login.application_service" }],
    };
    expect(await call("GET", LOGIN)).toEqual(flows);
    expect(await call("GET", "/_matrix/client/r0/login")).toEqual(flows);
  });
});

describe("POST /login", () => {
  it("logs in with a localpart, a full user ID, or the legacy user field", async () => {
    const u = await registerUser("lena", "pw");
    const byLocalpart = await json(await loginRequest("lena", "pw"));
    expect(byLocalpart).toMatchObject({ user_id: u.userId, home_server: SERVER });
    expect(byLocalpart.access_token).toMatch(/^syt_/);
    expect(byLocalpart.device_id).toMatch(/^[A-Z]{10}$/);
    expect(byLocalpart.refresh_token).toBeUndefined();
    expect(byLocalpart.expires_in_ms).toBeUndefined();
    const byId = await json(await loginRequest(`@lena:${SERVER}`, "pw"));
    expect(byId.user_id).toBe(u.userId);
    const byCase = await json(await loginRequest(`@LENA:${SERVER}`, "pw"));
    expect(byCase.user_id).toBe(u.userId);
    const legacy = await request("POST", LOGIN, { body: { type: "m.login.password", user: "lena", password: "pw" }, headers: fromIp(uniqueIp()) });
    expect(legacy.status).toBe(200);
    // Each login is its own device, and its token works.
    expect(new Set([byLocalpart.device_id, byId.device_id, byCase.device_id]).size).toBe(3);
    expect((await json(await whoami(byId.access_token))).device_id).toBe(byId.device_id);
  });

  it("refuses wrong passwords and unknown users alike with 403 M_FORBIDDEN, persisting nothing", async () => {
    const u = await registerUser("mona", "pw");
    const before = await tokenCount(u.userId);
    for (const [user, pw] of [["mona", "wrong"], ["nobody_here", "pw"], [`@mona:other.server`, "pw"]]) {
      const res = await loginRequest(user!, pw!);
      expect(res.status, user).toBe(403);
      expect((await json(res)).errcode).toBe("M_FORBIDDEN");
    }
    expect(await tokenCount(u.userId)).toBe(before);
  });

  it("validates the request", async () => {
    const ip = uniqueIp();
    const post = (body: unknown) => request("POST", LOGIN, { body, headers: fromIp(ip) });
    expect((await json(await post("{"))).errcode).toBe("M_NOT_JSON");
    expect((await json(await post("[1]"))).errcode).toBe("M_BAD_JSON");
    const badType = await post({ type: "m.login.sso", token: "x" });
    expect(badType.status).toBe(400);
    expect((await json(badType)).errcode).toBe("M_UNKNOWN");
    expect((await json(await post({ type: "m.login.password", identifier: { type: "m.id.user", user: "x" } }))).errcode).toBe("M_MISSING_PARAM");
    expect((await json(await post({ type: "m.login.password", identifier: { type: "m.id.user", user: 5 }, password: "x" }))).errcode).toBe("M_BAD_JSON");
    expect((await json(await post({ type: "m.login.password", identifier: "bob", password: "x" }))).errcode).toBe("M_BAD_JSON");
    const threepid = await post({ type: "m.login.password", identifier: { type: "m.id.thirdparty", medium: "email", address: "a@b.c" }, password: "x" });
    expect(threepid.status).toBe(403);
  });

  it("reuses a device ID: same device, old token revoked, display name kept", async () => {
    const u = await registerUser("nina", "pw", { device_id: "NINAPHONE", initial_device_display_name: "Phone" });
    const again = await json(await loginRequest("nina", "pw", { device_id: "NINAPHONE", initial_device_display_name: "Ignored" }));
    expect(again.device_id).toBe("NINAPHONE");
    expect((await whoami(u.accessToken)).status).toBe(401);
    expect((await whoami(again.access_token)).status).toBe(200);
    const device = await call("GET", "/_matrix/client/v3/devices/NINAPHONE", { headers: bearer(again.access_token) });
    expect(device.display_name).toBe("Phone");
    const devices = await call<{ devices: unknown[] }>("GET", "/_matrix/client/v3/devices", { headers: bearer(again.access_token) });
    expect(devices.devices).toHaveLength(1);
  });

  it("names a new device from initial_device_display_name", async () => {
    await registerUser("olga", "pw");
    const l = await json(await loginRequest("olga", "pw", { device_id: "NEWDEV", initial_device_display_name: "Laptop" }));
    const device = await call("GET", "/_matrix/client/v3/devices/NEWDEV", { headers: bearer(l.access_token) });
    expect(device).toMatchObject({ device_id: "NEWDEV", display_name: "Laptop" });
  });

  it("refuses deactivated accounts", async () => {
    const u = await registerUser("pia", "pw");
    const { session } = await json(await request("POST", "/_matrix/client/v3/account/deactivate", { user: u, body: {} }));
    await call("POST", "/_matrix/client/v3/account/deactivate", { user: u, body: { auth: { type: "m.login.password", session, user: "pia", password: "pw" } } });
    const res = await loginRequest("pia", "pw");
    expect(res.status).toBe(403);
    expect(["M_FORBIDDEN", "M_USER_DEACTIVATED"]).toContain((await json(res)).errcode);
  });

  it("says M_USER_DEACTIVATED when a deactivated account still has its password", async () => {
    const u = await registerUser("quinn", "pw");
    await testEnv.DB.prepare("UPDATE users SET deactivated = 1 WHERE user_id = ?").bind(u.userId).run();
    const res = await loginRequest("quinn", "pw");
    expect(res.status).toBe(403);
    expect((await json(res)).errcode).toBe("M_USER_DEACTIVATED");
    expect((await whoami(u.accessToken)).status).toBe(401);
  });

  it("upgrades password hashes made with fewer iterations on login", async () => {
    const u = await registerUser("rhea", "pw");
    const { hashPassword } = await import("../../src/accounts/passwords");
    await testEnv.DB.prepare("UPDATE users SET password_hash = ? WHERE user_id = ?").bind(await hashPassword("pw", 10_000), u.userId).run();
    expect((await loginRequest("rhea", "pw")).status).toBe(200);
    const row = await testEnv.DB.prepare("SELECT password_hash FROM users WHERE user_id = ?").bind(u.userId).first<{ password_hash: string }>();
    expect(row!.password_hash).toMatch(/^pbkdf2-sha256\$100000\$/);
  });
});

describe("rate limits on /login", () => {
  it("limits attempts per IP (Synapse default burst 5) with 429, retry_after_ms and Retry-After", async () => {
    await registerUser("sam", "pw");
    const ip = uniqueIp();
    // Five attempts at different accounts from one IP (so no per-account limit is involved).
    for (let i = 0; i < 5; i++) expect((await loginRequest(`ghost${i}`, "bad", {}, ip)).status).toBe(403);
    const res = await loginRequest("sam", "pw", {}, ip);
    expect(res.status).toBe(429);
    const body = await json(res);
    expect(body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(body.retry_after_ms).toBeGreaterThan(60_000); // 0.003/s: one more attempt in ~5.5 minutes
    expect(Number(res.headers.get("retry-after"))).toBe(Math.ceil(body.retry_after_ms / 1000));
    // Another IP can still log in.
    expect((await loginRequest("sam", "pw")).status).toBe(200);
  });

  it("limits failed attempts per account across IPs (burst 3), before checking the password", async () => {
    await registerUser("tara", "pw");
    for (let i = 0; i < 3; i++) expect((await loginRequest("tara", "bad")).status).toBe(403);
    const res = await loginRequest("tara", "pw"); // right password, but the account is cooling down
    expect(res.status).toBe(429);
    expect((await json(res)).errcode).toBe("M_LIMIT_EXCEEDED");
  });

  it("limits successful logins per account across IPs (burst 5)", async () => {
    await registerUser("uma", "pw");
    for (let i = 0; i < 5; i++) expect((await loginRequest("uma", "pw")).status).toBe(200);
    expect((await loginRequest("uma", "pw")).status).toBe(429);
  });

  it("is configurable through RATE_LIMITS, and null disables a limit", async () => {
    await registerUser("vera", "pw");
    const ip = uniqueIp();
    const tight = { RATE_LIMITS: JSON.stringify({ login_address: { per_second: 0.001, burst_count: 1 } }) };
    const post = (e: object) =>
      requestWithEnv(e, "POST", LOGIN, { body: { type: "m.login.password", user: "vera", password: "bad" }, headers: fromIp(ip) });
    expect((await post(tight)).status).toBe(403);
    expect((await post(tight)).status).toBe(429);
    const off = { RATE_LIMITS: JSON.stringify({ login_address: null, login_failed: null }) };
    for (let i = 0; i < 4; i++) expect((await post(off)).status).toBe(403);
    const broken = await post({ RATE_LIMITS: "{nope" });
    expect(broken.status).toBe(500);
    expect((await json(broken)).error).toContain("RATE_LIMITS");
  });
});

describe("RateLimiterDO", () => {
  const stub = (name: string) => testEnv.RATE_LIMITER.get(testEnv.RATE_LIMITER.idFromName(name));

  it("is a token bucket: burst, then refusals with the time until the next token", async () => {
    const s = stub("unit-1");
    const rule = { perSecond: 0.5, burst: 2 };
    expect(await s.take(rule)).toEqual({ allowed: true, retryAfterMs: 0 });
    expect(await s.take(rule)).toEqual({ allowed: true, retryAfterMs: 0 });
    const refused = await s.take(rule);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBeGreaterThan(1000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(2000);
    // A check does not count.
    expect((await s.take(rule, false)).allowed).toBe(false);
    await s.reset();
    expect((await s.take(rule, false)).allowed).toBe(true);
    expect((await s.take(rule, false)).allowed).toBe(true);
    expect((await s.take(rule)).allowed).toBe(true);
  });

  it("refills over time", async () => {
    const s = stub("unit-2");
    // Slow enough that the second take comes before the refill even on a loaded machine.
    const rule = { perSecond: 2, burst: 1 };
    expect((await s.take(rule)).allowed).toBe(true);
    expect((await s.take(rule)).allowed).toBe(false);
    await new Promise((r) => setTimeout(r, 600));
    expect((await s.take(rule)).allowed).toBe(true);
  });

  it("keeps separate buckets per name", async () => {
    const rule = { perSecond: 0.01, burst: 1 };
    expect((await stub("unit-3a").take(rule)).allowed).toBe(true);
    expect((await stub("unit-3b").take(rule)).allowed).toBe(true);
    expect((await stub("unit-3a").take(rule)).allowed).toBe(false);
  });
});

describe("logout", () => {
  it("POST /logout revokes the token and deletes the device", async () => {
    const u = await registerUser("wes", "pw");
    const other = await json(await loginRequest("wes", "pw"));
    await call("POST", "/_matrix/client/v3/logout", { user: u });
    expect((await whoami(u.accessToken)).status).toBe(401);
    expect((await whoami(other.access_token)).status).toBe(200);
    const devices = await call<{ devices: { device_id: string }[] }>("GET", "/_matrix/client/v3/devices", { headers: bearer(other.access_token) });
    expect(devices.devices.map((d) => d.device_id)).toEqual([other.device_id]);
    expect((await request("POST", "/_matrix/client/v3/logout", { user: u })).status).toBe(401);
  });

  it("POST /logout/all revokes every token and device", async () => {
    const u = await registerUser("xena", "pw");
    const other = await json(await loginRequest("xena", "pw"));
    await call("POST", "/_matrix/client/v3/logout/all", { user: u });
    expect((await whoami(u.accessToken)).status).toBe(401);
    expect((await whoami(other.access_token)).status).toBe(401);
    expect(await tokenCount(u.userId)).toBe(0);
    const n = await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM devices WHERE user_id = ?").bind(u.userId).first<{ n: number }>();
    expect(n!.n).toBe(0);
  });

  it("needs a token", async () => {
    expect((await request("POST", "/_matrix/client/v3/logout")).status).toBe(401);
    expect((await request("POST", "/_matrix/client/v3/logout/all")).status).toBe(401);
  });
});

describe("refresh tokens", () => {
  const REFRESH = "/_matrix/client/v3/refresh";
  const refresh = (token: string) => request("POST", REFRESH, { body: { refresh_token: token } });

  it("issues expiring access tokens with a refresh token when asked", async () => {
    await registerUser("yara", "pw");
    const l = await json(await loginRequest("yara", "pw", { refresh_token: true }));
    expect(l.refresh_token).toMatch(/^syr_/);
    expect(l.expires_in_ms).toBe(5 * 60_000);
    const row = await testEnv.DB.prepare("SELECT expires_ts FROM access_tokens WHERE token_hash = ?").bind(tokenHash(l.access_token)).first<{ expires_ts: number }>();
    expect(row!.expires_ts).toBeGreaterThan(Date.now());
  });

  it("answers an expired access token with 401 M_UNKNOWN_TOKEN and soft_logout: true", async () => {
    await registerUser("zane", "pw");
    const l = await json(await loginRequest("zane", "pw", { refresh_token: true }));
    await testEnv.DB.prepare("UPDATE access_tokens SET expires_ts = ? WHERE token_hash = ?").bind(Date.now() - 1, tokenHash(l.access_token)).run();
    const res = await whoami(l.access_token);
    expect(res.status).toBe(401);
    expect(await json(res)).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: true });
    // Refreshing brings the session back.
    const r = await json(await refresh(l.refresh_token));
    expect((await whoami(r.access_token)).status).toBe(200);
  });

  it("rotates: the old access token dies at once; the old refresh token dies once the new pair is used", async () => {
    await registerUser("abel", "pw");
    const l = await json(await loginRequest("abel", "pw", { refresh_token: true, device_id: "ABELDEV" }));
    const r1res = await refresh(l.refresh_token);
    expect(r1res.status).toBe(200);
    const r1 = await json(r1res);
    expect(r1.access_token).not.toBe(l.access_token);
    expect(r1.refresh_token).not.toBe(l.refresh_token);
    expect(r1.expires_in_ms).toBe(5 * 60_000);

    // The old access token is invalid (soft logout: the client holds a refresh token).
    const old = await whoami(l.access_token);
    expect(old.status).toBe(401);
    expect((await json(old)).soft_logout).toBe(true);

    // The response may have been lost: replaying the old refresh token replaces the unused pair.
    const r2 = await json(await refresh(l.refresh_token));
    expect((await whoami(r1.access_token)).status).toBe(401);

    // Using the new pair retires the old refresh token for good.
    forgetRecentActivity();
    const me = await json(await whoami(r2.access_token));
    expect(me).toMatchObject({ device_id: "ABELDEV" });
    await eventually(async () => (await testEnv.DB.prepare("SELECT 1 AS x FROM access_tokens WHERE token_hash = ?").bind(tokenHash(l.access_token)).first()) === null);
    const replay = await refresh(l.refresh_token);
    expect(replay.status).toBe(401);
    expect(await json(replay)).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: false });

    // Refreshing the new pair works, and retires it in turn.
    const r3 = await json(await refresh(r2.refresh_token));
    const r4 = await json(await refresh(r3.refresh_token));
    expect((await refresh(r2.refresh_token)).status).toBe(401);
    expect((await whoami(r4.access_token)).status).toBe(200);
    // Only the live pair and the one it replaced remain for the device.
    expect(await tokenCount(`@abel:${SERVER}`)).toBeLessThanOrEqual(2);
  });

  it("rejects unknown refresh tokens, logged-out sessions and deactivated users", async () => {
    expect((await refresh("syr_nope")).status).toBe(401);
    const u = await registerUser("bea", "pw", { refresh_token: true });
    await call("POST", "/_matrix/client/v3/logout", { user: u });
    const res = await refresh(u.refreshToken!);
    expect(res.status).toBe(401);
    expect((await json(res)).errcode).toBe("M_UNKNOWN_TOKEN");

    const v = await registerUser("cleo", "pw", { refresh_token: true });
    await testEnv.DB.prepare("UPDATE users SET deactivated = 1 WHERE user_id = ?").bind(v.userId).run();
    expect((await refresh(v.refreshToken!)).status).toBe(401);
  });

  it("validates the body", async () => {
    expect((await json(await request("POST", REFRESH, { body: {} }))).errcode).toBe("M_MISSING_PARAM");
    expect((await json(await request("POST", REFRESH, { body: { refresh_token: 1 } }))).errcode).toBe("M_BAD_JSON");
    expect((await json(await request("POST", REFRESH, { body: "nope" }))).errcode).toBe("M_NOT_JSON");
  });

  it("honours ACCESS_TOKEN_LIFETIME_MS", async () => {
    await registerUser("dora", "pw");
    const res = await requestWithEnv({ ACCESS_TOKEN_LIFETIME_MS: "60000" }, "POST", LOGIN, {
      body: { type: "m.login.password", user: "dora", password: "pw", refresh_token: true },
      headers: fromIp(uniqueIp()),
    });
    expect((await json(res)).expires_in_ms).toBe(60_000);
  });
});
