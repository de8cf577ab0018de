/**
 * matrix-nio (Python; Debian's python3-matrix-nio, unmodified) against the real Axon Worker started by the e2e
 * project's global setup. test/e2e/matrix-nio.py does the client side with an asyncio AsyncClient — register,
 * login, create a room, invite, join, send, sync with a filter, paginate with room_messages, topic, typing,
 * leave — and prints a JSON summary, asserted here. nio uses the legacy `/_matrix/client/r0` prefix and
 * `?access_token=` on the query string, so this also proves both work.
 *
 * Skipped, with a message saying why, when /usr/bin/python3 cannot import nio (`.ci/run` installs it).
 */
import { execFile, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, inject, it } from "vitest";

const PYTHON = "/usr/bin/python3";
const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "matrix-nio.py");
const MESSAGES = 40;

const probe = spawnSync(PYTHON, ["-c", "import nio"], { encoding: "utf8" });
const missing =
  probe.error || probe.status !== 0
    ? `matrix-nio is not available to ${PYTHON} (${probe.error?.message ?? probe.stderr.trim().split("\n").at(-1)}): install it with apt-get install -y python3-matrix-nio`
    : undefined;

interface Summary {
  api_prefix: string;
  errors: string[];
  registered?: string[];
  login?: { user_id: string; same_device: boolean };
  whoami?: string;
  room_id?: string;
  bob_invited_in_sync?: boolean;
  bob_invite_name?: string | null;
  joined?: boolean;
  sent?: number;
  alice_got_reply?: boolean;
  sync?: { timeline: string[]; limited: boolean; has_prev_batch: boolean; room_name: string | null; room_topic: string | null; members: string[] };
  pagination?: { pages: number; messages: string[]; unique_events: boolean; sent_in_order: boolean; first_type: string | null };
  bob_saw_typing?: boolean;
  bob_room_topic?: string | null;
  bob_left?: boolean;
  requests: { count: number; paths_r0: boolean; query_token: number; header_token: number };
}

function runScript(baseUrl: string): Promise<Summary> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, baseUrl, String(MESSAGES)], { timeout: 120_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`${SCRIPT} failed: ${error.message}\n${stderr}`));
      try {
        resolve(JSON.parse(stdout) as Summary);
      } catch {
        reject(new Error(`${SCRIPT} printed no JSON summary:\n${stdout}\n${stderr}`));
      }
    });
  });
}

describe("matrix-nio against the real Axon", () => {
  it("registers, creates a room, joins, sends, syncs and paginates over r0 with ?access_token=", async (ctx) => {
    if (missing) {
      console.warn(`SKIPPED matrix-nio e2e: ${missing}`);
      ctx.skip(missing);
    }
    const baseUrl = inject("axonBaseUrl");
    const s = await runScript(baseUrl);
    expect(s.errors).toEqual([]);

    // Accounts: register through nio's m.login.dummy, password login, whoami.
    expect(s.registered).toHaveLength(2);
    const [alice, bob] = s.registered!;
    expect(alice).toMatch(/^@nio_alice_/);
    expect(s.login?.user_id).toBe(alice);
    expect(s.whoami).toBe(alice);

    // Room, invite (stripped state in the invitee's sync), join.
    expect(s.room_id).toMatch(/^!/);
    expect(s.bob_invited_in_sync).toBe(true);
    expect(s.bob_invite_name).toBe("nio room");
    expect(s.joined).toBe(true);

    // Sends both ways; alice's sync loop delivers bob's reply to her event callback.
    expect(s.sent).toBe(MESSAGES);
    expect(s.alice_got_reply).toBe(true);

    // A fresh device's initial sync with a stored filter: the last 10 events, limited, with a prev_batch.
    const expected = [...Array.from({ length: MESSAGES }, (_, i) => `nio message ${i}`), "reply from bob"];
    expect(s.sync).toMatchObject({ timeline: expected.slice(-10), limited: true, has_prev_batch: true, room_name: "nio room", room_topic: "nio topic" });
    expect(s.sync!.members).toEqual([alice, bob].sort());

    // room_messages from prev_batch back to the room's creation: every message exactly once, in order.
    expect(s.pagination!.messages).toEqual(expected);
    expect(s.pagination!.unique_events).toBe(true);
    expect(s.pagination!.sent_in_order).toBe(true);
    expect(s.pagination!.first_type).toBe("m.room.create");
    expect(s.pagination!.pages).toBeGreaterThanOrEqual(3);

    // State change and typing reach the other member's sync; leaving moves the room to "leave".
    expect(s.bob_room_topic).toBe("changed by nio");
    expect(s.bob_saw_typing).toBe(true);
    expect(s.bob_left).toBe(true);

    // Every request went to /_matrix/client/r0 and authenticated with ?access_token= (never a header).
    expect(s.api_prefix).toBe("/_matrix/client/r0");
    expect(s.requests.count).toBeGreaterThan(MESSAGES);
    expect(s.requests.paths_r0).toBe(true);
    expect(s.requests.header_token).toBe(0);
    // All but the unauthenticated ones (two registrations and two password logins).
    expect(s.requests.query_token).toBe(s.requests.count - 4);
  });
});
