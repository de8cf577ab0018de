/** The push rules API (/pushrules) and pushers (/pushers, /pushers/set). */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request, testEnv, type TestUser } from "./helpers";
import { sync, type Obj } from "./keys-helpers";
import type { PushRule, Ruleset } from "../../src/push/types";

const P = "/_matrix/client/v3/pushrules";
const enc = encodeURIComponent;

async function ruleset(user: TestUser): Promise<Ruleset> {
  return (await call<{ global: Ruleset }>("GET", `${P}/`, { user })).global;
}

async function put(user: TestUser, kind: string, ruleId: string, body: Obj, query = ""): Promise<Response> {
  return request("PUT", `${P}/global/${kind}/${enc(ruleId)}${query}`, { user, body });
}

const userIds = (rules: PushRule[]) => rules.filter((r) => !r.default).map((r) => r.rule_id);

describe("push rules", () => {
  it("starts with the spec's default rules, master first", async () => {
    const alice = await createUserDirect();
    const rs = await ruleset(alice);
    expect(rs.override.map((r) => r.rule_id)).toEqual([
      ".m.rule.master",
      ".m.rule.suppress_notices",
      ".m.rule.invite_for_me",
      ".m.rule.member_event",
      ".m.rule.is_user_mention",
      ".m.rule.is_room_mention",
      ".m.rule.tombstone",
      ".m.rule.reaction",
      ".m.rule.room.server_acl",
      ".m.rule.suppress_edits",
    ]);
    expect(rs.underride.map((r) => r.rule_id)).toEqual([
      ".m.rule.call",
      ".m.rule.encrypted_room_one_to_one",
      ".m.rule.room_one_to_one",
      ".m.rule.message",
      ".m.rule.encrypted",
    ]);
    expect(rs.content).toEqual([]);
    expect(rs.override[0]).toEqual({ rule_id: ".m.rule.master", default: true, enabled: false, conditions: [], actions: [] });
    const invite = rs.override.find((r) => r.rule_id === ".m.rule.invite_for_me")!;
    expect(invite.conditions).toContainEqual({ kind: "event_match", key: "state_key", pattern: alice.userId });
    expect(await call("GET", `${P}/global/`, { user: alice })).toEqual(rs);
    expect(await call("GET", `${P}/global/underride/`, { user: alice })).toEqual(rs.underride);
  });

  it("creates, reads, updates and deletes rules of every kind", async () => {
    const alice = await createUserDirect();
    expect((await put(alice, "content", "cake", { pattern: "cake", actions: ["notify"] })).status).toBe(200);
    expect((await put(alice, "room", "!r:test.local", { actions: [] })).status).toBe(200);
    expect((await put(alice, "sender", "@spam:test.local", { actions: ["dont_notify"] })).status).toBe(200);
    expect((await put(alice, "override", "o", { conditions: [{ kind: "event_match", key: "type", pattern: "x" }], actions: ["notify"] })).status).toBe(200);
    expect((await put(alice, "underride", "u", { conditions: [], actions: ["notify", { set_tweak: "sound", value: "x" }] })).status).toBe(200);

    expect(await call("GET", `${P}/global/content/cake`, { user: alice })).toEqual({ rule_id: "cake", default: false, enabled: true, pattern: "cake", actions: ["notify"] });
    expect(await call("GET", `${P}/global/room/${enc("!r:test.local")}`, { user: alice })).toEqual({ rule_id: "!r:test.local", default: false, enabled: true, actions: [] });
    // The historical dont_notify is stripped.
    expect(await call("GET", `${P}/global/sender/${enc("@spam:test.local")}/actions`, { user: alice })).toEqual({ actions: [] });
    const rs = await ruleset(alice);
    expect(rs.override.map((r) => r.rule_id).slice(0, 2)).toEqual([".m.rule.master", "o"]);
    expect(rs.underride[0]!.rule_id).toBe("u");

    // Updating keeps the rule's place and enabled flag.
    await call("PUT", `${P}/global/content/cake/enabled`, { user: alice, body: { enabled: false } });
    await put(alice, "content", "cake", { pattern: "cakes", actions: [] });
    expect(await call("GET", `${P}/global/content/cake`, { user: alice })).toMatchObject({ pattern: "cakes", enabled: false, actions: [] });

    await call("DELETE", `${P}/global/content/cake`, { user: alice });
    expect((await request("GET", `${P}/global/content/cake`, { user: alice })).status).toBe(404);
    expect((await request("DELETE", `${P}/global/content/cake`, { user: alice })).status).toBe(404);
  });

  it("orders rules with before and after; new rules go first", async () => {
    const alice = await createUserDirect();
    const make = (id: string, query = "") => put(alice, "content", id, { pattern: id, actions: ["notify"] }, query);
    await make("a");
    await make("b"); // newest first: b, a
    expect(userIds((await ruleset(alice)).content)).toEqual(["b", "a"]);
    await make("c", "?after=b"); // b, c, a
    await make("d", "?before=b"); // d, b, c, a
    await make("e", "?after=a"); // d, b, c, a, e
    expect(userIds((await ruleset(alice)).content)).toEqual(["d", "b", "c", "a", "e"]);
    await make("a", "?before=d"); // moving an existing rule: a, d, b, c, e
    expect(userIds((await ruleset(alice)).content)).toEqual(["a", "d", "b", "c", "e"]);
    await make("f", "?before=c&after=a"); // before wins: a, d, b, f, c, e
    expect(userIds((await ruleset(alice)).content)).toEqual(["a", "d", "b", "f", "c", "e"]);

    let res = await make("g", "?before=nope");
    expect(res.status).toBe(400);
    res = await make("g", "?after=.m.rule.contains_user_name");
    expect(res.status).toBe(400);
    res = await make("a", "?before=a");
    expect(res.status).toBe(400);
    // Failed requests changed nothing.
    expect(userIds((await ruleset(alice)).content)).toEqual(["a", "d", "b", "f", "c", "e"]);
    // Anchors are per kind.
    expect((await put(alice, "override", "x", { actions: [] }, "?before=a")).status).toBe(400);
  });

  it("changes server-default rules' enabled flag and actions but never deletes or redefines them", async () => {
    const alice = await createUserDirect();
    await call("PUT", `${P}/global/override/.m.rule.master/enabled`, { user: alice, body: { enabled: true } });
    expect(await call("GET", `${P}/global/override/.m.rule.master/enabled`, { user: alice })).toEqual({ enabled: true });
    await call("PUT", `${P}/global/underride/.m.rule.message/actions`, { user: alice, body: { actions: ["notify", { set_tweak: "sound", value: "ping" }] } });
    expect(await call("GET", `${P}/global/underride/.m.rule.message`, { user: alice })).toMatchObject({
      default: true,
      enabled: true,
      actions: ["notify", { set_tweak: "sound", value: "ping" }],
      conditions: [{ kind: "event_match", key: "type", pattern: "m.room.message" }],
    });
    expect((await request("DELETE", `${P}/global/underride/.m.rule.message`, { user: alice })).status).toBe(400);
    expect((await put(alice, "underride", ".m.rule.message", { actions: [] })).status).toBe(400);
    expect((await put(alice, "override", ".custom", { actions: [] })).status).toBe(400);
    // Unknown rules: 404 for reads and attribute writes.
    expect((await request("GET", `${P}/global/override/.m.rule.nope`, { user: alice })).status).toBe(404);
    expect((await request("PUT", `${P}/global/override/nope/enabled`, { user: alice, body: { enabled: true } })).status).toBe(404);
    expect((await request("GET", `${P}/global/underride/.m.rule.master`, { user: alice })).status).toBe(404);
  });

  it("publishes the ruleset as m.push_rules account data through /sync", async () => {
    const alice = await createUserDirect();
    const initial = await sync(alice);
    const data = (s: Obj) => ((s.account_data as { events: { type: string; content: { global: Ruleset } }[] }).events ?? []).find((e) => e.type === "m.push_rules");
    expect(data(initial)?.content.global.override[0]!.rule_id).toBe(".m.rule.master");
    await put(alice, "content", "tea", { pattern: "tea", actions: ["notify"] });
    const next = await sync(alice, initial.next_batch);
    expect(userIds(data(next)!.content.global.content)).toEqual(["tea"]);
    expect((await call<{ global: Ruleset }>("GET", "/_matrix/client/v3/user/" + enc(alice.userId) + "/account_data/m.push_rules", { user: alice })).global.content[0]!.rule_id).toBe("tea");
  });

  it("rejects bad input", async () => {
    const alice = await createUserDirect();
    const cases: [string, string, Obj, number][] = [
      ["nope", "x", { actions: [] }, 400],
      ["content", "x", { actions: [] }, 400],
      ["content", "x", { pattern: "p" }, 400],
      ["override", "x", { actions: ["explode"] }, 400],
      ["override", "x", { actions: [], conditions: {} }, 400],
      ["room", "not-a-room", { actions: [] }, 400],
      ["sender", "not-a-user", { actions: [] }, 400],
    ];
    for (const [kind, id, body, status] of cases) {
      expect((await put(alice, kind, id, body)).status, `${kind}/${id} ${JSON.stringify(body)}`).toBe(status);
    }
    expect((await request("PUT", `${P}/global/underride/.m.rule.message/enabled`, { user: alice, body: { enabled: "yes" } })).status).toBe(400);
    expect((await request("PUT", `${P}/global/underride/.m.rule.message/actions`, { user: alice, body: {} })).status).toBe(400);
    expect((await request("GET", `${P}/global/nope/x`, { user: alice })).status).toBe(400);
    expect((await request("GET", `${P}/`)).status).toBe(401);
  });
});

describe("pushers", () => {
  const pusher = (pushkey: string, extra: Obj = {}) => ({
    kind: "http",
    app_id: "org.example.app",
    pushkey,
    app_display_name: "App",
    device_display_name: "Phone",
    lang: "en",
    data: { url: "https://push.example/_matrix/push/v1/notify", format: "event_id_only" },
    ...extra,
  });
  const list = async (u: TestUser) => (await call<{ pushers: Obj[] }>("GET", "/_matrix/client/v3/pushers", { user: u })).pushers;

  it("sets, updates, lists and deletes pushers", async () => {
    const alice = await createUserDirect();
    expect(await list(alice)).toEqual([]);
    await call("POST", "/_matrix/client/v3/pushers/set", { user: alice, body: pusher("k1", { profile_tag: "tag" }) });
    await call("POST", "/_matrix/client/v3/pushers/set", { user: alice, body: pusher("k2") });
    await call("POST", "/_matrix/client/v3/pushers/set", { user: alice, body: pusher("k1", { lang: "fr" }) });
    const ps = await list(alice);
    expect(ps).toHaveLength(2);
    expect(ps.find((p) => p.pushkey === "k1")).toEqual({ ...pusher("k1"), lang: "fr" });
    await call("POST", "/_matrix/client/v3/pushers/set", { user: alice, body: { kind: null, app_id: "org.example.app", pushkey: "k1" } });
    expect((await list(alice)).map((p) => p.pushkey)).toEqual(["k2"]);
  });

  it("takes a pushkey over from other users unless append is set", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    await call("POST", "/_matrix/client/v3/pushers/set", { user: alice, body: pusher("shared") });
    await call("POST", "/_matrix/client/v3/pushers/set", { user: bob, body: pusher("shared", { append: true }) });
    expect(await list(alice)).toHaveLength(1);
    await call("POST", "/_matrix/client/v3/pushers/set", { user: bob, body: pusher("shared") });
    expect(await list(alice)).toHaveLength(0);
    expect(await list(bob)).toHaveLength(1);
  });

  it("removes a device's pushers with the device", async () => {
    const alice = await createUserDirect();
    await call("POST", "/_matrix/client/v3/pushers/set", { user: alice, body: pusher("mine") });
    await call("POST", "/_matrix/client/v3/logout", { user: alice, body: {} });
    const row = await testEnv.DB.prepare("SELECT count(*) AS n FROM pushers WHERE user_id = ?").bind(alice.userId).first<{ n: number }>();
    expect(row!.n).toBe(0);
  });

  it("rejects bad pushers", async () => {
    const alice = await createUserDirect();
    const cases: Obj[] = [
      {},
      { ...pusher("k"), kind: "sms" },
      { ...pusher("k"), app_id: undefined },
      { ...pusher("k"), app_id: "x".repeat(65) },
      { ...pusher("x".repeat(513)) },
      { ...pusher("k"), data: {} },
      { ...pusher("k"), data: { url: "https://push.example/other" } },
      { ...pusher("k"), data: { url: "not a url" } },
      { ...pusher("k"), lang: undefined },
      { ...pusher("k"), append: "yes" },
    ];
    for (const body of cases) {
      expect((await request("POST", "/_matrix/client/v3/pushers/set", { user: alice, body })).status, JSON.stringify(body)).toBe(400);
    }
    expect(await list(alice)).toEqual([]);
    expect((await request("GET", "/_matrix/client/v3/pushers")).status).toBe(401);
  });
});
