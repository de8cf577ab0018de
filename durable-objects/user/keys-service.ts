/**
 * The E2EE and push-rules side of a UserDO, gathered behind one object so that UserDO.ts only carries thin RPC
 * delegates. Writes run through the UserDO's `write` (one storage transaction, then waiters woken); anything that
 * must reach other UserDOs or servers goes through the E2EE outbox, which is drained right after the commit and
 * then by alarm.
 *
 * Device-list fan-out (outbox kind `device_list`):
 * - `changed`: the user's own keys changed → every local user sharing a joined room with them records `changed`
 *   (rooms from this UserDO, members from each RoomDO); remote servers through the federation hook.
 * - `joined`: the user joined a room → they record `changed` for every member (now sharing a room), and every
 *   local member records `changed` for them (the spec's simpler rule: even if they shared another room already).
 * - `left`: the user left a room → for every member of that room with whom they share none of their remaining
 *   rooms, both sides record `left`. Best effort: it relies on the member lists at delivery time.
 */
import type { Env } from "../../src/env";
import { getConfig } from "../../src/config";
import { serverNameOf } from "../../src/protocol/identifiers";
import { attempt, type Outcome } from "../../src/e2ee/result";
import type { JsonObject } from "../../src/e2ee/keys";
import { sendDeviceListUpdate, sendRemoteToDevice } from "../../src/e2ee/federation";
import type { PushAction, RuleKind } from "../../src/push/types";
import type { UserRule } from "../../src/push/ruleset";
import type { UserStream } from "./stream";
import { DeviceLists, type DeviceListDelta } from "./device-lists";
import { E2eeOutbox, type OutboxRow } from "./keys-outbox";
import { E2eKeys, type ClaimRequest, type ClaimedKey, type CrossSigningUpload, type KeyUpload } from "./keys";
import { ToDevice, type ToDeviceDelivery } from "./to-device";
import { KeyBackup, type BackupKeyUpload, type BackupUpdateResult, type BackupVersionInfo } from "./key-backup";
import { PushRules, PUSH_RULES_ACCOUNT_DATA } from "./push-rules";

/** What the service needs from its UserDO. */
export interface E2eeHost {
  ctx: DurableObjectState;
  env: Env;
  sql: SqlStorage;
  stream: UserStream;
  /** Runs `fn` in one storage transaction and wakes long polls if the stream moved. */
  write<T>(fn: () => T): T;
  /** Stores global account data (inside the current transaction). */
  setGlobalAccountData(type: string, content: string): void;
  /** Rooms the user is joined to now. */
  joinedRooms(): string[];
}

/** A device-list notice in the outbox. */
type DeviceListNotice =
  | { type: "changed"; user_id: string }
  | { type: "joined"; user_id: string; room_id: string }
  | { type: "left"; user_id: string; room_id: string };

/** How many RPCs a fan-out runs at once. */
const FANOUT_PARALLELISM = 16;

async function inBatches<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += FANOUT_PARALLELISM) {
    await Promise.all(items.slice(i, i + FANOUT_PARALLELISM).map(fn));
  }
}

export class E2eeService {
  readonly lists: DeviceLists;
  readonly outbox: E2eeOutbox;
  readonly keys: E2eKeys;
  readonly toDevice: ToDevice;
  readonly backup: KeyBackup;
  readonly pushRules: PushRules;

  constructor(private readonly host: E2eeHost) {
    this.lists = new DeviceLists(host.sql, host.stream);
    this.outbox = new E2eeOutbox(host.sql, host.ctx.storage);
    this.keys = new E2eKeys(host.sql, this.lists, this.outbox);
    this.toDevice = new ToDevice(host.sql, host.stream, this.outbox);
    this.backup = new KeyBackup(host.sql);
    this.pushRules = new PushRules(host.sql, (content) => host.setGlobalAccountData(PUSH_RULES_ACCOUNT_DATA, content));
  }

  private get serverName(): string {
    return getConfig(this.host.env).serverName;
  }

  private isLocal(userId: string): boolean {
    return serverNameOf(userId) === this.serverName;
  }

  private user(userId: string) {
    return this.host.env.USERS.get(this.host.env.USERS.idFromName(userId));
  }

  /** A write that may have queued outbox work: commit, then deliver. Errors come back as outcomes. */
  private async writeAndDrain<T>(fn: () => T): Promise<Outcome<T>> {
    const result = attempt(() => this.host.write(fn));
    if (result.ok) await this.kick();
    return result;
  }

  /**
   * After a commit that may have queued outbox rows: arm the alarm first (so the work survives an eviction from
   * here on), then deliver now.
   */
  async kick(): Promise<void> {
    if (this.outbox.pending() === 0) return;
    await this.outbox.arm();
    await this.drain();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Keys

  uploadKeys(userId: string, deviceId: string, upload: KeyUpload): Promise<Outcome<Record<string, number>>> {
    return this.writeAndDrain(() => this.keys.upload(userId, deviceId, upload));
  }

  claimKeys(requests: ClaimRequest[]): ClaimedKey[] {
    return this.host.write(() => this.keys.claim(requests));
  }

  queryKeys(userId: string, viewer: string, deviceIds: string[] | null): string {
    return JSON.stringify(this.keys.query(userId, viewer, deviceIds));
  }

  /** Signatures this user made of other users' keys: `[user, key]` pairs → `{user: {signerKeyId: signature}}`. */
  signaturesByMe(targets: [string, string][]): string {
    const out: Record<string, Record<string, string>> = {};
    for (const [user, key] of targets) {
      const sigs = this.keys.signaturesOf(user, key);
      if (Object.keys(sigs).length) out[user] = { ...out[user], ...sigs };
    }
    return JSON.stringify(out);
  }

  masterKey(): string | null {
    const k = this.keys.masterKey();
    return k ? JSON.stringify(k) : null;
  }

  uploadCrossSigning(
    userId: string,
    upload: CrossSigningUpload,
    deviceIds: string[],
    authenticated: boolean,
  ): Promise<Outcome<"ok" | "needs_auth">> {
    return this.writeAndDrain(() => this.keys.uploadCrossSigning(userId, upload, deviceIds, authenticated));
  }

  /** `signedJson`: user → key ID → object; `otherMastersJson`: user → master key or null. Returns failures JSON. */
  uploadSignatures(userId: string, signedJson: string, otherMastersJson: string): Promise<Outcome<string>> {
    const signed = JSON.parse(signedJson) as Record<string, Record<string, JsonObject>>;
    const masters = JSON.parse(otherMastersJson) as Record<string, JsonObject | null>;
    return this.writeAndDrain(() => JSON.stringify(this.keys.uploadSignatures(userId, signed, masters)));
  }

  async deleteDevice(userId: string, deviceId: string): Promise<void> {
    await this.writeAndDrain(() => this.keys.deleteDevice(userId, deviceId));
  }

  deviceListChanges(from: number, to: number): DeviceListDelta {
    return this.lists.between(from, to);
  }

  /** Another user's device list changed (fan-out from their UserDO). */
  peerChanged(peer: string): void {
    this.host.write(() => this.lists.record(peer, "changed"));
  }

  /**
   * `peer` left a room; `peerRooms` are the rooms they are still joined to. Records `left` unless this user still
   * shares one of them. Returns whether they still share a room.
   */
  peerLeft(peer: string, peerRooms: string[]): boolean {
    const mine = new Set(this.host.joinedRooms());
    const shared = peerRooms.some((r) => mine.has(r));
    if (!shared) this.host.write(() => this.lists.record(peer, "left"));
    return shared;
  }

  /** Called inside the UserDO's transaction when this user's membership in a room changes. */
  membershipChanged(userId: string, roomId: string, before: string | undefined, after: string): void {
    const wasJoined = before === "join";
    const isJoined = after === "join";
    if (wasJoined === isJoined) return;
    const notice: DeviceListNotice = isJoined ? { type: "joined", user_id: userId, room_id: roomId } : { type: "left", user_id: userId, room_id: roomId };
    this.outbox.add("device_list", notice);
  }

  // ---------------------------------------------------------------------------------------------------------
  // To-device

  async sendToDevice(
    sender: string,
    deviceId: string,
    txnId: string,
    type: string,
    byRecipient: Record<string, Record<string, string>>,
  ): Promise<boolean> {
    const fresh = this.host.write(() => this.toDevice.send(sender, deviceId, txnId, type, byRecipient));
    await this.kick();
    return fresh;
  }

  /** Messages for this user (`userId`) from a sender's outbox. */
  async receiveToDevice(userId: string, d: Pick<ToDeviceDelivery, "sender" | "type" | "message_id" | "messages">): Promise<number> {
    const { results } = await this.host.env.DB.prepare("SELECT device_id FROM devices WHERE user_id = ?")
      .bind(userId)
      .all<{ device_id: string }>();
    const devices = results.map((r) => r.device_id);
    return this.host.write(() => this.toDevice.receive(d, devices));
  }

  /** Federation: several messages for this user (one inbound transaction's), one device lookup and one write. */
  async receiveToDeviceMany(userId: string, ds: Pick<ToDeviceDelivery, "sender" | "type" | "message_id" | "messages">[]): Promise<number> {
    const { results } = await this.host.env.DB.prepare("SELECT device_id FROM devices WHERE user_id = ?")
      .bind(userId)
      .all<{ device_id: string }>();
    const devices = results.map((r) => r.device_id);
    return this.host.write(() => ds.reduce((n, d) => n + this.toDevice.receive(d, devices), 0));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Key backup

  createBackup(algorithm: string, authData: string): Outcome<string> {
    return attempt(() => this.host.write(() => this.backup.create(algorithm, authData)));
  }

  getBackup(version: string | null): Outcome<BackupVersionInfo> {
    return attempt(() => this.backup.get(version));
  }

  updateBackup(version: string, algorithm: string, authData: string): Outcome<void> {
    return attempt(() => this.host.write(() => this.backup.update(version, algorithm, authData)));
  }

  deleteBackup(version: string): Outcome<void> {
    return attempt(() => this.host.write(() => this.backup.delete(version)));
  }

  putBackupKeys(version: string, keys: BackupKeyUpload[]): Outcome<BackupUpdateResult> {
    return attempt(() => this.host.write(() => this.backup.put(version, keys)));
  }

  getBackupKeys(version: string, roomId: string | null, sessionId: string | null): Outcome<string> {
    return attempt(() => this.backup.keys(version, roomId, sessionId));
  }

  deleteBackupKeys(version: string, roomId: string | null, sessionId: string | null): Outcome<BackupUpdateResult> {
    return attempt(() => this.host.write(() => this.backup.deleteKeys(version, roomId, sessionId)));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Push rules

  pushRuleset(userId: string): string {
    return JSON.stringify(this.pushRules.ruleset(userId));
  }

  /** One rule as JSON text (a PushRule). */
  getPushRule(userId: string, kind: RuleKind, ruleId: string): Outcome<string> {
    return attempt(() => JSON.stringify(this.pushRules.get(userId, kind, ruleId)));
  }

  putPushRule(userId: string, rule: UserRule, before: string | null, after: string | null): Outcome<void> {
    return attempt(() => this.host.write(() => this.pushRules.put(userId, rule, before, after)));
  }

  deletePushRule(userId: string, kind: RuleKind, ruleId: string): Outcome<void> {
    return attempt(() => this.host.write(() => this.pushRules.delete(userId, kind, ruleId)));
  }

  setPushRuleAttribute(
    userId: string,
    kind: RuleKind,
    ruleId: string,
    attr: { enabled: boolean } | { actions: PushAction[] },
  ): Outcome<void> {
    return attempt(() => this.host.write(() => this.pushRules.setAttribute(userId, kind, ruleId, attr)));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Outbox delivery

  /** Delivers queued work now (and schedules retries). */
  drain(): Promise<void> {
    return this.outbox.drain((row) => this.deliver(row));
  }

  private async deliver(row: OutboxRow): Promise<void> {
    if (row.kind === "to_device") return this.deliverToDevice(JSON.parse(row.payload) as ToDeviceDelivery);
    return this.deliverDeviceList(JSON.parse(row.payload) as DeviceListNotice);
  }

  private async deliverToDevice(d: ToDeviceDelivery): Promise<void> {
    const message = { sender: d.sender, type: d.type, message_id: d.message_id, messages: d.messages };
    if (this.isLocal(d.recipient)) {
      // A user's messages to their own other devices are accepted here directly (no RPC to itself).
      if (d.recipient === d.sender) await this.receiveToDevice(d.recipient, message);
      else await this.user(d.recipient).receiveToDevice(d.recipient, message);
      return;
    }
    const messages: Record<string, unknown> = {};
    for (const [dev, content] of Object.entries(d.messages)) messages[dev] = JSON.parse(content) as unknown;
    await sendRemoteToDevice(this.host.env, serverNameOf(d.recipient), {
      sender: d.sender,
      type: d.type,
      message_id: d.message_id,
      messages: { [d.recipient]: messages },
    });
  }

  /** Joined members of a room, from its RoomDO. */
  private roomMembers(roomId: string): Promise<string[]> {
    return this.host.env.ROOMS.get(this.host.env.ROOMS.idFromName(roomId)).joinedUserIds();
  }

  /** Everyone in the given rooms (deduplicated), except `self`. */
  private async membersOf(rooms: readonly string[], self: string): Promise<Set<string>> {
    const out = new Set<string>();
    await inBatches(rooms, async (roomId) => {
      for (const m of await this.roomMembers(roomId)) if (m !== self) out.add(m);
    });
    return out;
  }

  private async deliverDeviceList(n: DeviceListNotice): Promise<void> {
    const self = n.user_id;
    switch (n.type) {
      case "changed": {
        const peers = [...(await this.membersOf(this.host.joinedRooms(), self))];
        await inBatches(peers.filter((p) => this.isLocal(p)), (p) => this.user(p).deviceListPeerChanged(self));
        const servers = [...new Set(peers.filter((p) => !this.isLocal(p)).map(serverNameOf))];
        if (servers.length) await sendDeviceListUpdate(this.host.env, self, servers);
        return;
      }
      case "joined": {
        const peers = [...(await this.membersOf([n.room_id], self))];
        this.host.write(() => {
          for (const p of peers) this.lists.record(p, "changed");
        });
        await inBatches(peers.filter((p) => this.isLocal(p)), (p) => this.user(p).deviceListPeerChanged(self));
        return;
      }
      case "left": {
        const remaining = this.host.joinedRooms();
        const peers = [...(await this.membersOf([n.room_id], self))];
        const remote = peers.filter((p) => !this.isLocal(p));
        const stillShared = remote.length ? await this.membersOf(remaining, self) : new Set<string>();
        const gone: string[] = remote.filter((p) => !stillShared.has(p));
        await inBatches(peers.filter((p) => this.isLocal(p)), async (p) => {
          if (!(await this.user(p).deviceListPeerLeft(self, remaining))) gone.push(p);
        });
        if (gone.length) {
          this.host.write(() => {
            for (const p of gone) this.lists.record(p, "left");
          });
        }
        return;
      }
    }
  }
}
