#!/usr/bin/python3
"""matrix-nio (Debian's python3-matrix-nio, unmodified) against a running Axon.

Usage: /usr/bin/python3 test/e2e/matrix-nio.py <base URL> [message count]

Two users go through what a nio bot does with an asyncio AsyncClient: register (nio sends m.login.dummy
straight away), log in again with the password, create a room, invite, join (second user), send both ways,
sync (with a stored filter, then long-polling), paginate the history back with room_messages from the sync's
prev_batch, set the topic, type, leave. nio speaks the legacy `/_matrix/client/r0` prefix and authenticates
with `?access_token=` on the query string; every request it sends is recorded to show that.

Prints one JSON object (the summary test/e2e/matrix-nio.e2e.ts asserts) on stdout; exits 0 even when a step
fails (the summary's "errors" says which), 2 on bad usage.
"""

import asyncio
import json
import random
import string
import sys
import time
from urllib.parse import parse_qs, urlsplit

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPutStateResponse,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    TypingNoticeEvent,
    UploadFilterResponse,
)
from nio.api import MATRIX_API_PATH


class StepFailed(Exception):
    pass


def expect(response, kind, step):
    """The response of a nio call, or StepFailed naming the step and what came back instead."""
    if not isinstance(response, kind):
        raise StepFailed(f"{step}: expected {kind.__name__}, got {type(response).__name__}: {response}")
    return response


def recording(client, log):
    """Wraps client.send so every request's method, path, and how it authenticated are recorded."""
    original = client.send

    async def send(method, path, data=None, headers=None, trace_context=None, timeout=None):
        url = urlsplit(path)
        log.append(
            {
                "method": method,
                "path": url.path,
                "query_token": "access_token" in parse_qs(url.query),
                "header_token": bool(headers and "Authorization" in headers),
            }
        )
        return await original(method, path, data, headers, trace_context, timeout)

    client.send = send


def bodies(events):
    return [e.body for e in events if isinstance(e, RoomMessageText)]


async def run(base_url, count):
    summary = {"api_prefix": MATRIX_API_PATH, "errors": []}
    requests = []
    config = AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
    alice = AsyncClient(base_url, f"nio_alice_{suffix}", config=config)
    bob = AsyncClient(base_url, f"nio_bob_{suffix}", config=config)
    for c in (alice, bob):
        recording(c, requests)
    try:
        # Register both (nio: POST /r0/register with m.login.dummy in the first request).
        ra = expect(await alice.register(f"nio_alice_{suffix}", "alice's password", "nio alice"), RegisterResponse, "register alice")
        rb = expect(await bob.register(f"nio_bob_{suffix}", "bob's password", "nio bob"), RegisterResponse, "register bob")
        summary["registered"] = [ra.user_id, rb.user_id]
        # Log alice in again with her password: a second device, the session the rest uses.
        la = expect(await alice.login("alice's password", device_name="nio alice 2"), LoginResponse, "login alice")
        # (nio logs in with the device it already has, so this keeps the registration's device.)
        summary["login"] = {"user_id": la.user_id, "same_device": la.device_id == ra.device_id}
        who = await alice.whoami()
        summary["whoami"] = getattr(who, "user_id", None)

        created = expect(await alice.room_create(name="nio room", topic="nio topic"), RoomCreateResponse, "room_create")
        room_id = created.room_id
        summary["room_id"] = room_id
        expect(await alice.room_invite(room_id, bob.user_id), RoomInviteResponse, "room_invite")

        # Bob sees the invite in his first sync, then joins.
        first = expect(await bob.sync(timeout=0), SyncResponse, "bob first sync")
        summary["bob_invited_in_sync"] = room_id in first.rooms.invite
        summary["bob_invite_name"] = bob.invited_rooms[room_id].name if room_id in bob.invited_rooms else None
        joined = expect(await bob.join(room_id), JoinResponse, "join")
        summary["joined"] = joined.room_id == room_id

        # Alice sends `count` messages; bob replies once.
        sent = []
        for i in range(count):
            r = expect(
                await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"nio message {i}"}),
                RoomSendResponse,
                f"send {i}",
            )
            sent.append(r.event_id)
        reply = expect(
            await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "reply from bob"}),
            RoomSendResponse,
            "bob's reply",
        )
        summary["sent"] = len(sent)

        # Alice receives bob's reply through her sync (event callbacks, as a nio bot does).
        alice_seen = []
        alice.add_event_callback(lambda room, event: alice_seen.append((room.room_id, event.body, event.event_id)), RoomMessageText)
        deadline = time.monotonic() + 15
        while not any(eid == reply.event_id for _, _, eid in alice_seen) and time.monotonic() < deadline:
            expect(await alice.sync(timeout=5000, since=alice.next_batch), SyncResponse, "alice sync")
        summary["alice_got_reply"] = any(eid == reply.event_id and rid == room_id for rid, _, eid in alice_seen)

        # Bob syncs with a stored filter limiting the timeline to 10, then pages back from prev_batch.
        flt = expect(await bob.upload_filter(room={"timeline": {"limit": 10}}), UploadFilterResponse, "upload_filter")
        # A fresh device of bob, so its sync is an initial one.
        bob2 = AsyncClient(base_url, bob.user_id, config=config)
        recording(bob2, requests)
        try:
            expect(await bob2.login("bob's password", device_name="nio bob 2"), LoginResponse, "login bob 2")
            flt2 = expect(await bob2.upload_filter(room={"timeline": {"limit": 10}}), UploadFilterResponse, "upload_filter 2")
            synced = expect(await bob2.sync(timeout=0, sync_filter=flt2.filter_id), SyncResponse, "bob initial sync")
            joined_room = synced.rooms.join.get(room_id)
            if joined_room is None:
                raise StepFailed("bob's initial sync has no entry for the room")
            timeline = joined_room.timeline
            summary["sync"] = {
                "timeline": bodies(timeline.events),
                "limited": timeline.limited,
                "has_prev_batch": bool(timeline.prev_batch),
                "filter_id": flt.filter_id is not None,
                "room_name": bob2.rooms[room_id].name if room_id in bob2.rooms else None,
                "room_topic": bob2.rooms[room_id].topic if room_id in bob2.rooms else None,
                "members": sorted(bob2.rooms[room_id].users) if room_id in bob2.rooms else [],
            }
            # Page back, 15 at a time, until the start of the room.
            older = []
            older_ids = []
            token = timeline.prev_batch
            pages = 0
            for _ in range(100):
                page = expect(
                    await bob2.room_messages(room_id, start=token, direction=MessageDirection.back, limit=15),
                    RoomMessagesResponse,
                    "room_messages",
                )
                pages += 1
                older.extend(page.chunk)
                older_ids.extend(e.event_id for e in page.chunk)
                if not page.end or not page.chunk:
                    break
                token = page.end
            older.reverse()
            older_ids.reverse()
            timeline_ids = [e.event_id for e in timeline.events]
            all_ids = older_ids + timeline_ids
            everything = bodies(older) + bodies(timeline.events)
            summary["pagination"] = {
                "pages": pages,
                "messages": everything,
                "unique_events": len(set(all_ids)) == len(all_ids),
                "sent_in_order": [i for i in all_ids if i in set(sent)] == sent,
                "first_type": older[0].source.get("type") if older else None,
            }
        finally:
            await bob2.close()

        # Topic change and typing, seen by bob's sync.
        expect(await alice.room_put_state(room_id, "m.room.topic", {"topic": "changed by nio"}), RoomPutStateResponse, "topic")
        expect(await alice.room_typing(room_id, True, 10000), RoomTypingResponse, "typing")
        typing_seen = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            s = expect(await bob.sync(timeout=3000, since=bob.next_batch), SyncResponse, "bob sync")
            room = s.rooms.join.get(room_id)
            if room and any(isinstance(e, TypingNoticeEvent) and alice.user_id in e.users for e in room.ephemeral):
                typing_seen = True
            if typing_seen and bob.rooms[room_id].topic == "changed by nio":
                break
        summary["bob_saw_typing"] = typing_seen
        summary["bob_room_topic"] = bob.rooms[room_id].topic

        expect(await bob.room_leave(room_id), RoomLeaveResponse, "leave")
        s = expect(await bob.sync(timeout=0, since=bob.next_batch), SyncResponse, "bob sync after leave")
        summary["bob_left"] = room_id in s.rooms.leave
    except StepFailed as e:
        summary["errors"].append(str(e))
    except Exception as e:  # noqa: BLE001 -- report anything unexpected in the summary
        summary["errors"].append(f"{type(e).__name__}: {e}")
    finally:
        await alice.close()
        await bob.close()
    summary["requests"] = {
        "count": len(requests),
        "paths_r0": all(r["path"].startswith(MATRIX_API_PATH + "/") for r in requests),
        "query_token": sum(1 for r in requests if r["query_token"]),
        "header_token": sum(1 for r in requests if r["header_token"]),
    }
    return summary


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    summary = asyncio.run(run(sys.argv[1].rstrip("/"), count))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
