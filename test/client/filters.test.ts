/** POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}, plus the filter matching rules. */
import { describe, expect, it } from "vitest";
import { call, createUserDirect, request } from "./helpers";
import { globMatch, matchesEvent, parseFilter, selectFields } from "../../src/sync/filter";

const path = (userId: string, rest = "") => `/_matrix/client/v3/user/${encodeURIComponent(userId)}/filter${rest}`;

describe("filter API", () => {
  it("stores a filter and gives it back", async () => {
    const alice = await createUserDirect();
    const filter = {
      event_fields: ["type", "content.body"],
      event_format: "client",
      presence: { not_types: ["*"] },
      room: { timeline: { limit: 5, types: ["m.room.message"] }, state: { lazy_load_members: true }, include_leave: true },
    };
    const { filter_id } = await call<{ filter_id: string }>("POST", path(alice.userId), { user: alice, body: filter });
    expect(filter_id).toMatch(/^\d+$/);
    expect(await call("GET", path(alice.userId, `/${filter_id}`), { user: alice })).toEqual(filter);
    const second = await call<{ filter_id: string }>("POST", path(alice.userId), { user: alice, body: {} });
    expect(second.filter_id).not.toBe(filter_id);
  });

  it("is only for oneself", async () => {
    const alice = await createUserDirect();
    const bob = await createUserDirect();
    const { filter_id } = await call<{ filter_id: string }>("POST", path(alice.userId), { user: alice, body: {} });
    await call("POST", path(alice.userId), { user: bob, body: {}, expect: 403 });
    const res = await request("GET", path(alice.userId, `/${filter_id}`), { user: bob });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ errcode: "M_FORBIDDEN" });
    await call("GET", path(alice.userId, `/${filter_id}`), { expect: 401 });
  });

  it("rejects malformed filters with M_BAD_JSON, unknown IDs with 404, bad IDs with M_INVALID_PARAM", async () => {
    const alice = await createUserDirect();
    for (const body of [
      { room: { timeline: { limit: -1 } } },
      { room: { timeline: { limit: 1.5 } } },
      { room: { timeline: { types: "m.room.message" } } },
      { room: { rooms: [1] } },
      { room: "all" },
      { event_format: "xml" },
      { event_fields: [3] },
      { room: { state: { lazy_load_members: "yes" } } },
      [],
    ]) {
      const res = await request("POST", path(alice.userId), { user: alice, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { errcode: string }).errcode, JSON.stringify(body)).toBe("M_BAD_JSON");
    }
    const notJson = await request("POST", path(alice.userId), { user: alice, body: "{" });
    expect(((await notJson.json()) as { errcode: string }).errcode).toBe("M_NOT_JSON");
    const missing = await request("GET", path(alice.userId, "/424242"), { user: alice });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ errcode: "M_NOT_FOUND" });
    const bad = await request("GET", path(alice.userId, "/abc"), { user: alice });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ errcode: "M_INVALID_PARAM" });
  });
});

describe("filter rules", () => {
  it("matches types with * wildcards, not_* winning over the lists", () => {
    expect(globMatch("m.*", "m.room.message")).toBe(true);
    expect(globMatch("m.room.*.x", "m.room.a.b.x")).toBe(true);
    expect(globMatch("*", "")).toBe(true);
    expect(globMatch("m.room", "m.room.message")).toBe(false);
    expect(globMatch("a*a", "a")).toBe(false);
    const f = { types: ["m.*"], not_types: ["m.room.member"], not_senders: ["@spam:x"] };
    expect(matchesEvent(f, { type: "m.room.message", sender: "@a:x" })).toBe(true);
    expect(matchesEvent(f, { type: "m.room.member", sender: "@a:x" })).toBe(false);
    expect(matchesEvent(f, { type: "m.room.message", sender: "@spam:x" })).toBe(false);
    expect(matchesEvent(f, { type: "org.other", sender: "@a:x" })).toBe(false);
    expect(matchesEvent({ contains_url: true }, { type: "m.room.message", sender: "@a:x", content: { url: "mxc://x/y" } })).toBe(true);
    expect(matchesEvent({ contains_url: true }, { type: "m.room.message", sender: "@a:x", content: {} })).toBe(false);
    expect(matchesEvent({ contains_url: false }, { type: "m.room.message", sender: "@a:x", content: {} })).toBe(true);
  });

  it("selects event fields, with escaped dots", () => {
    const e = { type: "t", content: { body: "b", "m.x": { y: 1 }, other: 2 }, sender: "@a:x" };
    expect(selectFields(e, ["type", "content.body", "content.m\\.x.y"])).toEqual({ type: "t", content: { body: "b", "m.x": { y: 1 } } });
    expect(selectFields(e, undefined)).toBe(e);
  });

  it("keeps known keys and drops unknown ones", () => {
    expect(parseFilter({ unknown: 1, room: { timeline: { limit: 0, x: 1 } } })).toEqual({ room: { timeline: { limit: 0 } } });
  });
});
