/**
 * `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` and MSC3266's unstable paths (src/routes/client/spaces.ts,
 * src/rooms/spaces.ts): the fields, with and without an access token, aliases, the `membership` field, who may see
 * what (404 otherwise), and bad input.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { call, createUserDirect, request, type TestUser } from "./helpers";
import { V3, enc, expectError, invite, join, leave, newRoom, putState } from "./rooms-helpers";

const V1 = "/_matrix/client/v1";
const summaryPath = (idOrAlias: string, query = "") => `${V1}/room_summary/${enc(idOrAlias)}${query}`;
const summary = (idOrAlias: string, user?: TestUser, query = "") => call("GET", summaryPath(idOrAlias, query), { user });

describe("/room_summary", () => {
  let owner: TestUser;
  let other: TestUser;
  let space: string;
  let pub: string;
  let secret: string;
  let restricted: string;
  let alias: string;

  beforeAll(async () => {
    owner = await createUserDirect();
    other = await createUserDirect();
    space = await newRoom(owner, { preset: "public_chat", name: "Space", creation_content: { type: "m.space" } });
    pub = await newRoom(owner, { preset: "public_chat", name: "Cheese", topic: "Tasty", room_version: "11" });
    await putState(owner, pub, "m.room.avatar", { url: "mxc://test.local/cheese" });
    await putState(owner, pub, "m.room.guest_access", { guest_access: "can_join" });
    await putState(owner, pub, "m.room.encryption", { algorithm: "m.megolm.v1.aes-sha2" });
    alias = `#cheese_${Date.now().toString(36)}:test.local`;
    await call("PUT", `${V3}/directory/room/${enc(alias)}`, { user: owner, body: { room_id: pub } });
    await putState(owner, pub, "m.room.canonical_alias", { alias });
    secret = await newRoom(owner, { preset: "private_chat", name: "Secret" });
    restricted = await newRoom(owner, {
      preset: "private_chat",
      name: "Members of the space",
      initial_state: [{ type: "m.room.join_rules", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
  });

  it("summarises a public room without an access token, without membership", async () => {
    const s = await summary(pub);
    expect(s).toEqual({
      room_id: pub,
      name: "Cheese",
      topic: "Tasty",
      avatar_url: "mxc://test.local/cheese",
      canonical_alias: alias,
      num_joined_members: 1,
      join_rule: "public",
      guest_can_join: true,
      world_readable: false,
      room_version: "11",
      encryption: "m.megolm.v1.aes-sha2",
    });
    // A space has its room type.
    expect(await summary(space)).toMatchObject({ room_id: space, room_type: "m.space", name: "Space" });
  });

  it("adds the user's membership when authenticated: join, invite, leave (none), leave (left)", async () => {
    expect((await summary(pub, owner)).membership).toBe("join");
    expect((await summary(pub, other)).membership).toBe("leave");
    await join(other, pub);
    expect(await summary(pub, other)).toMatchObject({ membership: "join", num_joined_members: 2 });
    await leave(other, pub);
    expect(await summary(pub, other)).toMatchObject({ membership: "leave", num_joined_members: 1 });
  });

  it("resolves aliases (and an unknown one is 404)", async () => {
    expect(await summary(alias)).toMatchObject({ room_id: pub, name: "Cheese" });
    expect(await summary(alias, owner)).toMatchObject({ room_id: pub, membership: "join" });
    await expectError("GET", summaryPath("#nothing_here:test.local"), {}, 404, "M_NOT_FOUND");
  });

  it("hides rooms the requester may not see behind 404, like unknown ones; members and invitees see them", async () => {
    await expectError("GET", summaryPath(secret), {}, 404, "M_NOT_FOUND");
    await expectError("GET", summaryPath(secret), { user: other }, 404, "M_NOT_FOUND");
    expect(await summary(secret, owner)).toMatchObject({ room_id: secret, name: "Secret", join_rule: "invite", membership: "join" });
    const invitee = await createUserDirect();
    await invite(owner, secret, invitee.userId);
    expect(await summary(secret, invitee)).toMatchObject({ room_id: secret, membership: "invite" });
    await expectError("GET", summaryPath("!unknown:test.local"), {}, 404, "M_NOT_FOUND");
    await expectError("GET", summaryPath("!unknown:test.local"), { user: other }, 404, "M_NOT_FOUND");
  });

  it("restricted rooms: seen by members of an allowed room, with allowed_room_ids", async () => {
    const spaceMember = await createUserDirect();
    await expectError("GET", summaryPath(restricted), { user: spaceMember }, 404, "M_NOT_FOUND");
    await join(spaceMember, space);
    expect(await summary(restricted, spaceMember)).toMatchObject({
      room_id: restricted, join_rule: "restricted", allowed_room_ids: [space], membership: "leave",
    });
    await expectError("GET", summaryPath(restricted), {}, 404, "M_NOT_FOUND");
  });

  it("knock and world-readable rooms are visible to anyone", async () => {
    const knock = await newRoom(owner, { preset: "private_chat", initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    expect(await summary(knock)).toMatchObject({ room_id: knock, join_rule: "knock" });
    const readable = await newRoom(owner, { preset: "private_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    expect(await summary(readable)).toMatchObject({ room_id: readable, join_rule: "invite", world_readable: true });
  });

  it("answers under MSC3266's unstable paths too", async () => {
    const stable = await summary(pub, owner);
    expect(await call("GET", `/_matrix/client/unstable/im.nheko.summary/summary/${enc(pub)}`, { user: owner })).toEqual(stable);
    expect(await call("GET", `/_matrix/client/unstable/im.nheko.summary/rooms/${enc(alias)}/summary`)).toEqual(
      Object.fromEntries(Object.entries(stable).filter(([k]) => k !== "membership")),
    );
  });

  it("rejects bad input: a bad token (401), not an ID or alias, bad via (400)", async () => {
    const res = await request("GET", summaryPath(pub), { headers: { authorization: "Bearer nope" } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { errcode: string }).errcode).toBe("M_UNKNOWN_TOKEN");
    await expectError("GET", summaryPath("cheese"), {}, 400, "M_INVALID_PARAM");
    await expectError("GET", summaryPath("#bad alias"), {}, 400, "M_INVALID_PARAM");
    await expectError("GET", summaryPath(pub, "?via=not%20a%20server"), {}, 400, "M_INVALID_PARAM");
    // A via for a room held here changes nothing.
    expect(await summary(pub, undefined, "?via=elsewhere.test")).toMatchObject({ room_id: pub });
  });
});
