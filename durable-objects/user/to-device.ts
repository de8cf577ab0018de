/**
 * Send-to-device messaging in the UserDO (https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging).
 *
 * Sender side: `PUT /sendToDevice/{type}/{txnId}` is recorded once per (device, txnId) together with one outbox
 * row per recipient user, in one transaction; the outbox then delivers to each recipient's UserDO (or to the
 * federation hook for remote users) and retries on failure. A repeated txnId changes nothing.
 *
 * Recipient side: each message for each device takes a user stream position in the inbox. /sync returns a
 * device's messages after its `since` token and, by the same token, deletes the ones the client has seen:
 * syncing with a token at or past a message's position acknowledges it.
 */
import type { UserStream } from "./stream";
import type { SyncSection } from "./sync-sections";
import type { E2eeOutbox } from "./keys-outbox";

/** Transaction IDs and received message IDs are remembered this long. */
export const TO_DEVICE_DEDUPE_MS = 24 * 60 * 60_000;

/** The outbox payload of one recipient user's share of a send. */
export interface ToDeviceDelivery {
  sender: string;
  sender_device: string;
  type: string;
  message_id: string;
  recipient: string;
  /** device ID or `*` → content as JSON text */
  messages: Record<string, string>;
}

export interface ToDeviceEvent {
  sender: string;
  type: string;
  content: unknown;
}

export class ToDevice {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stream: UserStream,
    private readonly outbox: E2eeOutbox,
  ) {}

  /**
   * Records a send by this user's `deviceId`: false (and nothing queued) when the txnId was seen already.
   * `byRecipient` maps recipient user → device ID or `*` → content JSON. Call inside a transaction.
   */
  send(
    sender: string,
    deviceId: string,
    txnId: string,
    type: string,
    byRecipient: Record<string, Record<string, string>>,
    now = Date.now(),
  ): boolean {
    this.sql.exec("DELETE FROM to_device_txns WHERE ts < ?", now - TO_DEVICE_DEDUPE_MS);
    const seen = this.sql
      .exec("SELECT 1 FROM to_device_txns WHERE device_id = ? AND txn_id = ?", deviceId, txnId)
      .toArray().length > 0;
    if (seen) return false;
    this.sql.exec("INSERT INTO to_device_txns (device_id, txn_id, ts) VALUES (?, ?, ?)", deviceId, txnId, now);
    const messageId = crypto.randomUUID();
    for (const [recipient, messages] of Object.entries(byRecipient)) {
      const delivery: ToDeviceDelivery = { sender, sender_device: deviceId, type, message_id: messageId, recipient, messages };
      this.outbox.add("to_device", delivery, now);
    }
    return true;
  }

  /**
   * Accepts messages for this user's devices. `devices` are the user's current device IDs: `*` expands to all of
   * them and messages for unknown devices are dropped; an explicit device ID wins over `*`. A message ID already
   * received for a device is not stored again. Returns how many messages were stored. Call inside a transaction.
   */
  receive(d: Pick<ToDeviceDelivery, "sender" | "type" | "message_id" | "messages">, devices: readonly string[], now = Date.now()): number {
    this.sql.exec("DELETE FROM to_device_received WHERE ts < ?", now - TO_DEVICE_DEDUPE_MS);
    const known = new Set(devices);
    const targets = new Map<string, string>();
    const all = d.messages["*"];
    if (all !== undefined) for (const dev of devices) targets.set(dev, all);
    for (const [dev, content] of Object.entries(d.messages)) if (dev !== "*" && known.has(dev)) targets.set(dev, content);
    let stored = 0;
    for (const [dev, content] of targets) {
      const dup = this.sql
        .exec("SELECT 1 FROM to_device_received WHERE message_id = ? AND device_id = ?", d.message_id, dev)
        .toArray().length > 0;
      if (dup) continue;
      this.sql.exec("INSERT INTO to_device_received (message_id, device_id, ts) VALUES (?, ?, ?)", d.message_id, dev, now);
      this.sql.exec(
        "INSERT INTO to_device_inbox (pos, device_id, sender, type, content, message_id) VALUES (?, ?, ?, ?, ?, ?)",
        this.stream.next(), dev, d.sender, d.type, content, d.message_id,
      );
      stored++;
    }
    return stored;
  }
}

/** Deletes a device's messages at or before `upTo` (the client has synced past them). */
export function ackToDevice(sql: SqlStorage, deviceId: string, upTo: number): void {
  sql.exec("DELETE FROM to_device_inbox WHERE device_id = ? AND pos <= ?", deviceId, upTo);
}

/** A device's messages in (since, upTo], oldest first. */
export function toDeviceSince(sql: SqlStorage, deviceId: string, since: number, upTo: number): ToDeviceEvent[] {
  return sql
    .exec<{ sender: string; type: string; content: string }>(
      "SELECT sender, type, content FROM to_device_inbox WHERE device_id = ? AND pos > ? AND pos <= ? ORDER BY pos",
      deviceId, since, upTo,
    )
    .toArray()
    .map((r) => ({ sender: r.sender, type: r.type, content: JSON.parse(r.content) as unknown }));
}

/**
 * The `to_device` field of every /sync: the device's messages after `since` (all pending ones on an initial
 * sync), after deleting those the `since` token acknowledges. Every pending message up to `upTo` is returned,
 * so that the next token acknowledges exactly what this response carried.
 */
export const toDeviceSection: SyncSection = ({ sql, deviceId, since, upTo }) => {
  if (since !== null) ackToDevice(sql, deviceId, since);
  const events = toDeviceSince(sql, deviceId, since ?? 0, upTo);
  return { fields: { to_device: { events } }, hasNews: events.length > 0 };
};
