/**
 * Relations over federation (docs/relations.md): a remote server's thread reply and its edit arrive as ordinary
 * PDUs; the accept path indexes them, so they show up in the local /threads, /relations and bundled aggregations.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { api, createRoom, e, enc, fullyStated, newUser, sendText, V3, waitFor } from "./servers";

const V1 = "/_matrix/client/v1";

beforeEach(() => {
  if (e.FEDERATION_HARNESS_ERROR) throw new Error(e.FEDERATION_HARNESS_ERROR);
});

describe("relations from a remote server", () => {
  it("a remote thread reply (and its edit) appears in the local /threads, /relations and m.thread aggregation", async () => {
    const alice = await newUser("test.local", "alice");
    const carol = await newUser("hs2.test", "carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await api(carol, "POST", `${V3}/join/${enc(roomId)}?server_name=test.local`, {});
    await fullyStated(roomId);
    const root = await sendText(alice, roomId, "local root");
    // carol's server must have the root before her reply can point at it.
    await waitFor(async () => {
      const r = await api(carol, "GET", `${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=5`);
      return (r.chunk as { event_id: string }[]).some((ev) => ev.event_id === root) || undefined;
    }, "root on hs2");

    const reply = (
      await api<{ event_id: string }>(carol, "PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/fed-rel-1`, {
        msgtype: "m.text",
        body: "remote reply",
        "m.relates_to": { rel_type: "m.thread", event_id: root },
      })
    ).event_id;
    const fix = (
      await api<{ event_id: string }>(carol, "PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/fed-rel-2`, {
        msgtype: "m.text",
        body: "* remote reply!",
        "m.new_content": { msgtype: "m.text", body: "remote reply!" },
        "m.relates_to": { rel_type: "m.replace", event_id: reply },
      })
    ).event_id;

    const listed = await waitFor(async () => {
      const page = await api<{ chunk: { event_id: string; unsigned?: Record<string, any> }[] }>(alice, "GET", `${V1}/rooms/${enc(roomId)}/threads`);
      const thread = page.chunk[0]?.unsigned?.["m.relations"]?.["m.thread"];
      return thread?.latest_event?.unsigned?.["m.relations"]?.["m.replace"] ? page : undefined;
    }, "remote reply and edit in the local /threads");
    expect(listed.chunk.map((ev) => ev.event_id)).toEqual([root]);
    const thread = listed.chunk[0]!.unsigned!["m.relations"]["m.thread"];
    expect(thread).toMatchObject({ count: 1, current_user_participated: true, latest_event: { event_id: reply, sender: carol.userId } });
    expect(thread.latest_event.unsigned["m.relations"]["m.replace"].event_id).toBe(fix);

    const rel = await api<{ chunk: { event_id: string }[] }>(alice, "GET", `${V1}/rooms/${enc(roomId)}/relations/${enc(root)}/m.thread`);
    expect(rel.chunk.map((ev) => ev.event_id)).toEqual([reply]);
    const participated = await api<{ chunk: { event_id: string }[] }>(carol, "GET", `${V1}/rooms/${enc(roomId)}/threads?include=participated`);
    expect(participated.chunk.map((ev) => ev.event_id)).toEqual([root]);
  });
});
