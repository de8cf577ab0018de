/**
 * Device management: list, get, rename, delete (with UIA), bulk delete, token revocation, last-seen tracking.
 */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv } from "./helpers";
import { eventually, fromIp, json, loginRequest, registerUser, uniqueIp } from "./accounts-helpers";
import { forgetRecentActivity, LAST_SEEN_INTERVAL_MS } from "../../src/accounts/activity";

const DEVICES = "/_matrix/client/v3/devices";
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const whoami = (token: string) => request("GET", "/_matrix/client/v3/account/whoami", { headers: bearer(token) });
const passwordAuth = (session: string, user: string, password: string) => ({ type: "m.login.password", session, identifier: { type: "m.id.user", user }, password });

describe("GET /devices and /devices/{id}", () => {
  it("lists the user's own devices only", async () => {
    const u = await registerUser("dev_lister", "pw", { device_id: "FIRST", initial_device_display_name: "First" });
    await loginRequest("dev_lister", "pw", { device_id: "SECOND" });
    const stranger = await registerUser("dev_stranger", "pw", { device_id: "STRANGER" });
    const { devices } = await call<{ devices: Record<string, unknown>[] }>("GET", DEVICES, { user: u });
    expect(devices.map((d) => d.device_id).sort()).toEqual(["FIRST", "SECOND"]);
    expect(devices.find((d) => d.device_id === "FIRST")!.display_name).toBe("First");
    expect(devices.find((d) => d.device_id === "SECOND")!.display_name).toBeUndefined();

    expect(await call("GET", `${DEVICES}/FIRST`, { user: u })).toMatchObject({ device_id: "FIRST", display_name: "First" });
    const other = await request("GET", `${DEVICES}/STRANGER`, { user: u });
    expect(other.status).toBe(404);
    expect((await json(other)).errcode).toBe("M_NOT_FOUND");
    expect((await request("GET", `${DEVICES}/NOPE`, { user: stranger })).status).toBe(404);
  });

  it("handles device IDs that need escaping", async () => {
    await registerUser("dev_escape", "pw");
    const l = await json(await loginRequest("dev_escape", "pw", { device_id: "a/b c?d" }));
    const d = await call("GET", `${DEVICES}/${encodeURIComponent("a/b c?d")}`, { headers: bearer(l.access_token) });
    expect(d.device_id).toBe("a/b c?d");
  });

  it("needs a token", async () => {
    expect((await request("GET", DEVICES)).status).toBe(401);
    expect((await request("GET", `${DEVICES}/X`)).status).toBe(401);
    expect((await request("PUT", `${DEVICES}/X`, { body: {} })).status).toBe(401);
    expect((await request("DELETE", `${DEVICES}/X`, { body: {} })).status).toBe(401);
    expect((await request("POST", "/_matrix/client/v3/delete_devices", { body: { devices: [] } })).status).toBe(401);
  });
});

describe("PUT /devices/{id}", () => {
  it("renames an existing device and leaves it alone without display_name", async () => {
    const u = await createUserDirect();
    expect(await call("PUT", `${DEVICES}/${u.deviceId}`, { user: u, body: { display_name: "Kitchen tablet" } })).toEqual({});
    expect((await call("GET", `${DEVICES}/${u.deviceId}`, { user: u })).display_name).toBe("Kitchen tablet");
    await call("PUT", `${DEVICES}/${u.deviceId}`, { user: u, body: {} });
    expect((await call("GET", `${DEVICES}/${u.deviceId}`, { user: u })).display_name).toBe("Kitchen tablet");
  });

  it("does not create devices for ordinary clients, nor touch other users' devices", async () => {
    const u = await createUserDirect();
    const v = await createUserDirect();
    const res = await request("PUT", `${DEVICES}/BRANDNEW`, { user: u, body: { display_name: "x" } });
    expect(res.status).toBe(404);
    expect((await request("GET", `${DEVICES}/BRANDNEW`, { user: u })).status).toBe(404);
    expect((await request("PUT", `${DEVICES}/${v.deviceId}`, { user: u, body: { display_name: "pwned" } })).status).toBe(404);
    const vd = await call("GET", `${DEVICES}/${v.deviceId}`, { user: v });
    expect(vd.display_name).toBeUndefined();
  });

  it("validates the body", async () => {
    const u = await createUserDirect();
    const path = `${DEVICES}/${u.deviceId}`;
    expect((await json(await request("PUT", path, { user: u, body: "{" }))).errcode).toBe("M_NOT_JSON");
    expect((await json(await request("PUT", path, { user: u, body: { display_name: 3 } }))).errcode).toBe("M_BAD_JSON");
    const long = await request("PUT", path, { user: u, body: { display_name: "x".repeat(101) } });
    expect(long.status).toBe(400);
    expect((await json(long)).errcode).toBe("M_TOO_LARGE");
    expect((await call("GET", path, { user: u })).display_name).toBeUndefined();
  });
});

describe("DELETE /devices/{id}", () => {
  it("needs UIA with the password, then revokes the device's tokens and deletes it", async () => {
    const u = await registerUser("dev_deleter", "pw");
    const phone = await json(await loginRequest("dev_deleter", "pw", { device_id: "PHONE", refresh_token: true }));

    const first = await request("DELETE", `${DEVICES}/PHONE`, { user: u, body: {} });
    expect(first.status).toBe(401);
    const { session, flows } = await json(first);
    expect(flows).toEqual([{ stages: ["m.login.password"] }]);
    expect((await whoami(phone.access_token)).status).toBe(200);

    const wrong = await request("DELETE", `${DEVICES}/PHONE`, { user: u, body: { auth: passwordAuth(session, u.userId, "nope") } });
    expect(wrong.status).toBe(401);
    expect((await json(wrong)).errcode).toBe("M_FORBIDDEN");
    expect((await whoami(phone.access_token)).status).toBe(200);

    expect(await call("DELETE", `${DEVICES}/PHONE`, { user: u, body: { auth: passwordAuth(session, u.userId, "pw") } })).toEqual({});
    const revoked = await whoami(phone.access_token);
    expect(revoked.status).toBe(401);
    expect((await json(revoked)).soft_logout).toBe(false);
    const refresh = await request("POST", "/_matrix/client/v3/refresh", { body: { refresh_token: phone.refresh_token } });
    expect(refresh.status).toBe(401);
    expect((await request("GET", `${DEVICES}/PHONE`, { user: u })).status).toBe(404);
    // The session is complete: a retry succeeds again (the device is already gone).
    expect(await call("DELETE", `${DEVICES}/PHONE`, { user: u, body: { auth: { session } } })).toEqual({});
  });

  it("does not let a session started for one user be completed by another", async () => {
    const u = await registerUser("dev_owner", "pw");
    const first = await json(await request("DELETE", `${DEVICES}/${u.deviceId}`, { user: u, body: {} }));
    const other = await registerUser("dev_other", "pw2");
    const res = await request("DELETE", `${DEVICES}/${other.deviceId}`, { user: other, body: { auth: passwordAuth(first.session, other.userId, "pw2") } });
    expect(res.status).toBe(403);
    expect((await whoami(other.accessToken)).status).toBe(200);
  });

  it("offers no flow to accounts without a password", async () => {
    const u = await createUserDirect();
    const res = await request("DELETE", `${DEVICES}/${u.deviceId}`, { user: u, body: { auth: { type: "m.login.dummy" } } });
    expect(res.status).toBe(401);
    expect((await json(res)).flows).toEqual([]);
    expect((await whoami(u.accessToken)).status).toBe(200);
  });
});

describe("POST /delete_devices", () => {
  const DELETE_DEVICES = "/_matrix/client/v3/delete_devices";

  it("deletes several devices after UIA, ignoring unknown ones", async () => {
    const u = await registerUser("bulk_deleter", "pw", { device_id: "KEEP" });
    const a = await json(await loginRequest("bulk_deleter", "pw", { device_id: "A" }));
    const b = await json(await loginRequest("bulk_deleter", "pw", { device_id: "B" }));
    const body = { devices: ["A", "B", "UNKNOWN"] };
    const first = await request("POST", DELETE_DEVICES, { user: u, body });
    expect(first.status).toBe(401);
    const { session } = await json(first);
    await call("POST", DELETE_DEVICES, { user: u, body: { ...body, auth: passwordAuth(session, "bulk_deleter", "pw") } });
    expect((await whoami(a.access_token)).status).toBe(401);
    expect((await whoami(b.access_token)).status).toBe(401);
    const { devices } = await call<{ devices: { device_id: string }[] }>("GET", DEVICES, { user: u });
    expect(devices.map((d) => d.device_id)).toEqual(["KEEP"]);
  });

  it("validates the body before starting UIA", async () => {
    const u = await createUserDirect();
    const before = (await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM uia_sessions").first<{ n: number }>())!.n;
    expect((await json(await request("POST", DELETE_DEVICES, { user: u, body: {} }))).errcode).toBe("M_MISSING_PARAM");
    expect((await json(await request("POST", DELETE_DEVICES, { user: u, body: { devices: "A" } }))).errcode).toBe("M_BAD_JSON");
    expect((await json(await request("POST", DELETE_DEVICES, { user: u, body: { devices: [1] } }))).errcode).toBe("M_BAD_JSON");
    expect((await json(await request("POST", DELETE_DEVICES, { user: u, body: "x" }))).errcode).toBe("M_NOT_JSON");
    expect((await testEnv.DB.prepare("SELECT COUNT(*) AS n FROM uia_sessions").first<{ n: number }>())!.n).toBe(before);
  });

  it("rate limits failed password stages per account", async () => {
    const u = await registerUser("uia_guesser", "pw");
    const { session } = await json(await request("POST", DELETE_DEVICES, { user: u, body: { devices: [] } }));
    for (let i = 0; i < 3; i++) {
      const r = await request("POST", DELETE_DEVICES, { user: u, body: { devices: [], auth: passwordAuth(session, "uia_guesser", "bad") } });
      expect(r.status).toBe(401);
    }
    const limited = await request("POST", DELETE_DEVICES, { user: u, body: { devices: [], auth: passwordAuth(session, "uia_guesser", "pw") } });
    expect(limited.status).toBe(429);
  });
});

describe("last seen", () => {
  it("records the IP and time of use, at most once per interval per device", async () => {
    const u = await createUserDirect();
    forgetRecentActivity();
    const ip = uniqueIp();
    const before = Date.now();
    await call("GET", "/_matrix/client/v3/account/whoami", { user: u, headers: fromIp(ip) });
    const seen = await eventually(async () => {
      const d = await call("GET", `${DEVICES}/${u.deviceId}`, { user: u, headers: fromIp(ip) });
      return d.last_seen_ts ? d : undefined;
    });
    expect(seen.last_seen_ip).toBe(ip);
    expect(seen.last_seen_ts).toBeGreaterThanOrEqual(before);

    // Within the interval, further requests (even from another IP) write nothing.
    await call("GET", "/_matrix/client/v3/account/whoami", { user: u, headers: fromIp(uniqueIp()) });
    await new Promise((r) => setTimeout(r, 50));
    const again = await call("GET", `${DEVICES}/${u.deviceId}`, { user: u });
    expect(again).toEqual(seen);
    expect(LAST_SEEN_INTERVAL_MS).toBeGreaterThanOrEqual(60_000);
  });

  it("updates a stale record when another isolate-local window starts", async () => {
    const u = await createUserDirect();
    await testEnv.DB.prepare("UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ?")
      .bind(Date.now() - LAST_SEEN_INTERVAL_MS - 1000, "192.0.2.1", u.userId)
      .run();
    forgetRecentActivity();
    const ip = uniqueIp();
    await call("GET", "/_matrix/client/v3/account/whoami", { user: u, headers: fromIp(ip) });
    await eventually(async () => (await call("GET", `${DEVICES}/${u.deviceId}`, { user: u })).last_seen_ip === ip);
  });
});
