/**
 * Push test helpers: a fake push gateway installed as the homeserver's transport (src/push/gateway.ts; the
 * Durable Objects run in the test's isolate, so no network), users with pushers, and a way to wait until a
 * user's background push pass has seen everything a room holds.
 */
import { runInDurableObject } from "cloudflare:test";
import { setPushGatewayFetch } from "../../src/push/gateway";
import { call, testEnv, type TestUser } from "../client/helpers";

export const GATEWAY_URL = "http://gateway.push.test/_matrix/push/v1/notify";
export const V3 = "/_matrix/client/v3";

export interface Received {
  notification: Record<string, unknown> & {
    event_id?: string;
    counts?: { unread?: number };
    devices: { app_id: string; pushkey: string; pushkey_ts: number; data: Record<string, unknown>; tweaks?: Record<string, unknown> }[];
  };
}

/** A fake gateway: records every attempt; `mode` decides the answer. */
export class FakeGateway {
  attempts: { received: Received; ok: boolean }[] = [];
  mode: "ok" | "down" | "500" | { reject: string[] } = "ok";

  install(): void {
    setPushGatewayFetch(async (url, init) => {
      const received = JSON.parse(String(init.body)) as Received;
      if (url !== GATEWAY_URL) throw new Error(`unexpected gateway ${url}`);
      const mode = this.mode;
      if (mode === "down") {
        this.attempts.push({ received, ok: false });
        throw new TypeError("connection refused");
      }
      if (mode === "500") {
        this.attempts.push({ received, ok: false });
        return new Response("oops", { status: 500 });
      }
      this.attempts.push({ received, ok: true });
      return Response.json({ rejected: typeof mode === "object" ? mode.reject : [] });
    });
  }

  /** Notifications the gateway accepted, for one pushkey. */
  delivered(pushkey: string): Received["notification"][] {
    return this.attempts.filter((a) => a.ok && a.received.notification.devices[0]!.pushkey === pushkey).map((a) => a.received.notification);
  }

  /** Accepted notifications about an event (not badge updates). */
  events(pushkey: string): Received["notification"][] {
    return this.delivered(pushkey).filter((n) => typeof n.event_id === "string");
  }
}

export async function setPusher(user: TestUser, pushkey: string, data: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<void> {
  await call("POST", `${V3}/pushers/set`, {
    user,
    body: {
      kind: "http", app_id: "org.example.app", pushkey, app_display_name: "App", device_display_name: "Phone", lang: "en",
      data: { url: GATEWAY_URL, ...data }, ...extra,
    },
  });
}

export function userStub(user: TestUser) {
  return testEnv.USERS.get(testEnv.USERS.idFromName(user.userId));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the user's UserDO has been told each room's current position, then runs its push pass to the end
 * (evaluation and delivery).
 */
export async function settle(user: TestUser, roomIds: string[]): Promise<void> {
  const stub = userStub(user);
  for (let i = 0; i < 200; i++) {
    const heads = await Promise.all(
      roomIds.map(async (r) => (await testEnv.ROOMS.get(testEnv.ROOMS.idFromName(r)).summary())?.stream_position ?? 0),
    );
    const caughtUp = await runInDurableObject(stub, (_i, state) =>
      roomIds.every((r, j) => (state.storage.sql.exec<{ p: number }>("SELECT room_pos AS p FROM rooms WHERE room_id = ?", r).toArray()[0]?.p ?? -1) >= heads[j]!),
    );
    if (caughtUp) {
      await stub.pushFlush();
      return;
    }
    await sleep(20);
  }
  throw new Error(`${user.userId} did not catch up with ${roomIds.join(", ")}`);
}

/** Rows of one of the user's push tables. */
export async function pushTable<T>(user: TestUser, sql: string): Promise<T[]> {
  return runInDurableObject(userStub(user), (_i, state) => state.storage.sql.exec(sql).toArray() as T[]);
}
