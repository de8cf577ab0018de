/**
 * OpenID tokens for integrations (request_token, federation userinfo), TURN credentials, and
 * /.well-known/matrix/support.
 */
import { describe, expect, it } from "vitest";
import { hmac } from "@noble/hashes/hmac.js";
import { sha1 } from "@noble/hashes/legacy.js";
import { call, createUserDirect, request, testEnv, SERVER } from "./helpers";
import { V3, enc, expectError } from "./rooms-helpers";
import { json, requestWithEnv } from "./accounts-helpers";
import { turnCredentials } from "../../src/routes/client/voip";

describe("OpenID", () => {
  it("issues a token that federation userinfo resolves to the user, and nothing else accepts", async () => {
    const alice = await createUserDirect();
    const res = await call<{ access_token: string; token_type: string; matrix_server_name: string; expires_in: number }>(
      "POST", `${V3}/user/${enc(alice.userId)}/openid/request_token`, { user: alice, body: {} },
    );
    expect(res).toMatchObject({ token_type: "Bearer", matrix_server_name: SERVER, expires_in: 3600 });
    // No X-Matrix signature needed: integrations call this.
    const info = await call("GET", `/_matrix/federation/v1/openid/userinfo?access_token=${enc(res.access_token)}`);
    expect(info).toEqual({ sub: alice.userId });
    // The OpenID token is not an access token.
    await expectError("GET", `${V3}/account/whoami`, { headers: { authorization: `Bearer ${res.access_token}` } }, 401, "M_UNKNOWN_TOKEN");
    // Access tokens are not OpenID tokens.
    await expectError("GET", `/_matrix/federation/v1/openid/userinfo?access_token=${enc(alice.accessToken)}`, {}, 401, "M_UNKNOWN_TOKEN");
  });

  it("refuses other users' tokens, expired tokens, missing tokens", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    await expectError("POST", `${V3}/user/${enc(bob.userId)}/openid/request_token`, { user: alice, body: {} }, 403, "M_FORBIDDEN");
    await expectError("POST", `${V3}/user/${enc(alice.userId)}/openid/request_token`, { body: {} }, 401, "M_MISSING_TOKEN");
    const { access_token } = await call<{ access_token: string }>("POST", `${V3}/user/${enc(alice.userId)}/openid/request_token`, { user: alice, body: {} });
    await testEnv.DB.prepare("UPDATE openid_tokens SET expires_ts = ? WHERE user_id = ?").bind(Date.now() - 1, alice.userId).run();
    await expectError("GET", `/_matrix/federation/v1/openid/userinfo?access_token=${enc(access_token)}`, {}, 401, "M_UNKNOWN_TOKEN");
    await expectError("GET", "/_matrix/federation/v1/openid/userinfo", {}, 401, "M_MISSING_TOKEN");
    // Other federation endpoints still need a signature.
    await expectError("GET", `/_matrix/federation/v1/query/profile?user_id=${enc(alice.userId)}`, {}, 401, "M_UNAUTHORIZED");
  });
});

describe("GET /voip/turnServer", () => {
  it("answers {} when no TURN server is configured, and needs authentication", async () => {
    const alice = await createUserDirect();
    expect(await call("GET", `${V3}/voip/turnServer`, { user: alice })).toEqual({});
    await expectError("GET", `${V3}/voip/turnServer`, {}, 401, "M_MISSING_TOKEN");
  });

  it("hands out time-limited HMAC credentials with a shared secret (coturn's use-auth-secret)", async () => {
    const alice = await createUserDirect();
    const env = { TURN_URIS: "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349", TURN_SHARED_SECRET: "s3cret" };
    const res = await requestWithEnv(env, "GET", `${V3}/voip/turnServer`, { token: alice.accessToken });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.uris).toEqual(["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]);
    expect(body.ttl).toBe(86400);
    const [expiry, user] = [body.username.split(":")[0], body.username.slice(body.username.indexOf(":") + 1)];
    expect(user).toBe(alice.userId);
    expect(Number(expiry)).toBeGreaterThan(Date.now() / 1000 + 86000);
    const enc8 = new TextEncoder();
    const expected = btoa(String.fromCharCode(...hmac(sha1, enc8.encode("s3cret"), enc8.encode(body.username))));
    expect(body.password).toBe(expected);
  });

  it("hands out fixed credentials, and refuses bad configuration", async () => {
    expect(turnCredentials({ uris: ["turn:t.example"], username: "u", password: "p", userLifetimeMs: 60_000 }, "@a:b")).toEqual({
      username: "u", password: "p", ttl: 60, uris: ["turn:t.example"],
    });
    // Credentials without URIs are useless: {}.
    expect(turnCredentials({ uris: [], sharedSecret: "x", userLifetimeMs: 1000 }, "@a:b")).toEqual({});
    const alice = await createUserDirect();
    const bad = await requestWithEnv({ TURN_URIS: "https://not-turn" }, "GET", `${V3}/voip/turnServer`, { token: alice.accessToken });
    expect(bad.status).toBe(500);
    expect((await json(bad)).error).toMatch(/TURN_URIS/);
  });
});

describe("GET /.well-known/matrix/support", () => {
  it("404 without SUPPORT_CONTACTS; the configured document with it", async () => {
    await expectError("GET", "/.well-known/matrix/support", {}, 404, "M_NOT_FOUND");
    const doc = { contacts: [{ role: "m.role.admin", matrix_id: "@admin:test.local", email_address: "admin@example.org" }], support_page: "https://example.org/help" };
    const res = await requestWithEnv({ SUPPORT_CONTACTS: JSON.stringify(doc) }, "GET", "/.well-known/matrix/support");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(doc);
    const bad = await requestWithEnv({ SUPPORT_CONTACTS: JSON.stringify({ contacts: [{ matrix_id: "@a:b" }] }) }, "GET", "/.well-known/matrix/support");
    expect(bad.status).toBe(500);
    expect((await request("GET", "/.well-known/matrix/client")).status).toBe(200);
  });
});
