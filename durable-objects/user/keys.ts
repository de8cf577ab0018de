/**
 * A user's end-to-end encryption keys, in their UserDO: device identity keys, one-time and fallback keys,
 * cross-signing keys, and the signatures the user uploads. Every method is synchronous and runs inside the
 * UserDO's storage transaction, so a claim is atomic: a one-time key leaves the table in the same transaction
 * that hands it out, and the DO runs one transaction at a time — no key is ever handed out twice.
 *
 * Stateless checks (shapes, the device's self-signature) happen in the Worker before the call; checks that need
 * stored state (one-time key conflicts, signatures by stored cross-signing keys) happen here. Errors are thrown
 * as E2eeError and reach the client as Matrix errors; a thrown error rolls the whole transaction back.
 */
import {
  CROSS_SIGNING_USAGES,
  checkCrossSigningKey,
  deviceEd25519,
  isSignedBy,
  oneTimeKeysMatch,
  sameSignedContent,
  signaturesBy,
  withSignatures,
  type CrossSigningKeyInfo,
  type CrossSigningUsage,
  type JsonObject,
  type UploadedKey,
} from "../../src/e2ee/keys";
import { E2eeError, invalidParam, invalidSignature, notFound, type Failure } from "../../src/e2ee/result";
import { canonicalJson } from "../../src/protocol/canonical-json";
import type { DeviceLists } from "./device-lists";
import type { E2eeOutbox } from "./keys-outbox";
import type { SyncSection } from "./sync-sections";

export interface KeyUpload {
  /** Canonical JSON of the device keys (already checked against the device's own key), or null. */
  deviceKeys: string | null;
  oneTimeKeys: UploadedKey[];
  fallbackKeys: UploadedKey[];
}

/** One device's key for `/keys/claim`. */
export interface ClaimRequest {
  device_id: string;
  algorithm: string;
}

export interface ClaimedKey {
  device_id: string;
  /** `<algorithm>:<key id>` */
  key_id: string;
  /** The key as uploaded (JSON text). */
  json: string;
}

/** Cross-signing keys of one upload, as JSON text (absent: not in the request). */
export interface CrossSigningUpload {
  master?: string;
  self_signing?: string;
  user_signing?: string;
}

/** What `/keys/query` shows of one user (JSON-ready). */
export interface UserKeys {
  device_keys: Record<string, JsonObject>;
  master_key?: JsonObject;
  self_signing_key?: JsonObject;
  user_signing_key?: JsonObject;
}

/** One failure entry of `/keys/signatures/upload`. */
export type SignatureFailures = Record<string, Record<string, Failure>>;

/** Clients count on seeing this algorithm in the counts, even at zero (as Synapse reports it). */
const DEFAULT_OTK_ALGORITHM = "signed_curve25519";

/** One-time key counts for a device: algorithm → unclaimed keys. */
export function oneTimeKeyCounts(sql: SqlStorage, deviceId: string): Record<string, number> {
  const counts: Record<string, number> = { [DEFAULT_OTK_ALGORITHM]: 0 };
  for (const r of sql.exec<{ algorithm: string; n: number }>(
    "SELECT algorithm, count(*) AS n FROM e2e_one_time_keys WHERE device_id = ? GROUP BY algorithm",
    deviceId,
  )) {
    counts[r.algorithm] = r.n;
  }
  return counts;
}

/** Algorithms for which the device has a fallback key that no claim has handed out yet. */
export function unusedFallbackKeyTypes(sql: SqlStorage, deviceId: string): string[] {
  return sql
    .exec<{ algorithm: string }>("SELECT algorithm FROM e2e_fallback_keys WHERE device_id = ? AND used = 0 ORDER BY algorithm", deviceId)
    .toArray()
    .map((r) => r.algorithm);
}

/** `device_one_time_keys_count` and `device_unused_fallback_key_types` of every /sync (counts are never news). */
export const oneTimeKeysSection: SyncSection = ({ sql, deviceId }) => ({
  fields: {
    device_one_time_keys_count: oneTimeKeyCounts(sql, deviceId),
    device_unused_fallback_key_types: unusedFallbackKeyTypes(sql, deviceId),
  },
  hasNews: false,
});

function parseJson(text: string): JsonObject {
  return JSON.parse(text) as JsonObject;
}

export class E2eKeys {
  constructor(
    private readonly sql: SqlStorage,
    private readonly lists: DeviceLists,
    private readonly outbox: E2eeOutbox,
  ) {}

  /** Records that `userId`'s own device list changed: in their own view, and for everyone sharing a room. */
  private ownDeviceListChanged(userId: string): void {
    this.lists.record(userId, "changed");
    this.outbox.add("device_list", { type: "changed", user_id: userId });
  }

  // ---------------------------------------------------------------------------------------------------------
  // Upload

  /** POST /keys/upload for `deviceId`. Returns the device's one-time key counts. */
  upload(userId: string, deviceId: string, u: KeyUpload, now = Date.now()): Record<string, number> {
    if (u.deviceKeys !== null) {
      const stored = this.sql.exec<{ json: string }>("SELECT json FROM e2e_device_keys WHERE device_id = ?", deviceId).toArray()[0];
      if (stored?.json !== u.deviceKeys) {
        this.sql.exec(
          `INSERT INTO e2e_device_keys (device_id, json, ts) VALUES (?, ?, ?)
           ON CONFLICT (device_id) DO UPDATE SET json = excluded.json, ts = excluded.ts`,
          deviceId, u.deviceKeys, now,
        );
        // Signatures of the old keys (by the self-signing key) and by them (of the master key) no longer hold.
        if (stored) this.forgetDeviceSignatures(userId, deviceId);
        this.ownDeviceListChanged(userId);
      }
    }

    for (const k of u.oneTimeKeys) {
      const existing = this.sql
        .exec<{ json: string }>(
          "SELECT json FROM e2e_one_time_keys WHERE device_id = ? AND algorithm = ? AND key_id = ?",
          deviceId, k.algorithm, k.keyId,
        )
        .toArray()[0];
      if (existing) {
        if (!oneTimeKeysMatch(existing.json, k.json)) {
          throw invalidParam(`One-time key ${k.algorithm}:${k.keyId} already exists with different content`);
        }
        continue;
      }
      this.sql.exec(
        "INSERT INTO e2e_one_time_keys (device_id, algorithm, key_id, json) VALUES (?, ?, ?, ?)",
        deviceId, k.algorithm, k.keyId, k.json,
      );
    }

    const seen = new Set<string>();
    for (const k of u.fallbackKeys) {
      if (seen.has(k.algorithm)) throw invalidParam(`At most one fallback key per algorithm (${k.algorithm})`);
      seen.add(k.algorithm);
      const existing = this.sql
        .exec<{ key_id: string; json: string }>(
          "SELECT key_id, json FROM e2e_fallback_keys WHERE device_id = ? AND algorithm = ?",
          deviceId, k.algorithm,
        )
        .toArray()[0];
      // Re-uploading the same key keeps its "used" flag; a different key replaces it, unused.
      if (existing && existing.key_id === k.keyId && oneTimeKeysMatch(existing.json, k.json)) continue;
      this.sql.exec(
        `INSERT INTO e2e_fallback_keys (device_id, algorithm, key_id, json, used) VALUES (?, ?, ?, ?, 0)
         ON CONFLICT (device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, json = excluded.json, used = 0`,
        deviceId, k.algorithm, k.keyId, k.json,
      );
    }
    return oneTimeKeyCounts(this.sql, deviceId);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Claim

  /**
   * Hands out one key per request: the oldest unclaimed one-time key of that algorithm (deleted as it is handed
   * out), otherwise the fallback key (kept, and marked used). Devices with neither are left out.
   */
  claim(requests: readonly ClaimRequest[]): ClaimedKey[] {
    const out: ClaimedKey[] = [];
    for (const { device_id, algorithm } of requests) {
      const otk = this.sql
        .exec<{ id: number; key_id: string; json: string }>(
          "SELECT id, key_id, json FROM e2e_one_time_keys WHERE device_id = ? AND algorithm = ? ORDER BY id LIMIT 1",
          device_id, algorithm,
        )
        .toArray()[0];
      if (otk) {
        this.sql.exec("DELETE FROM e2e_one_time_keys WHERE id = ?", otk.id);
        out.push({ device_id, key_id: `${algorithm}:${otk.key_id}`, json: otk.json });
        continue;
      }
      const fallback = this.sql
        .exec<{ key_id: string; json: string }>(
          "SELECT key_id, json FROM e2e_fallback_keys WHERE device_id = ? AND algorithm = ?",
          device_id, algorithm,
        )
        .toArray()[0];
      if (fallback) {
        this.sql.exec("UPDATE e2e_fallback_keys SET used = 1 WHERE device_id = ? AND algorithm = ?", device_id, algorithm);
        out.push({ device_id, key_id: `${algorithm}:${fallback.key_id}`, json: fallback.json });
      }
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Query

  private storedDeviceKeys(deviceIds: readonly string[] | null): Map<string, JsonObject> {
    const rows =
      deviceIds === null
        ? this.sql.exec<{ device_id: string; json: string }>("SELECT device_id, json FROM e2e_device_keys").toArray()
        : deviceIds.flatMap((d) =>
            this.sql.exec<{ device_id: string; json: string }>("SELECT device_id, json FROM e2e_device_keys WHERE device_id = ?", d).toArray(),
          );
    return new Map(rows.map((r) => [r.device_id, parseJson(r.json)]));
  }

  /** Signatures this user made of `targetUser`'s key `targetKey`: keyId → signature. */
  signaturesOf(targetUser: string, targetKey: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const r of this.sql.exec<{ signer_key_id: string; signature: string }>(
      "SELECT signer_key_id, signature FROM e2e_signatures WHERE target_user = ? AND target_key = ?",
      targetUser, targetKey,
    )) {
      out[r.signer_key_id] = r.signature;
    }
    return out;
  }

  crossSigningKey(usage: CrossSigningUsage): JsonObject | undefined {
    const row = this.sql.exec<{ json: string }>("SELECT json FROM e2e_cross_signing_keys WHERE usage = ?", usage).toArray()[0];
    return row ? parseJson(row.json) : undefined;
  }

  private crossSigningInfo(userId: string, usage: CrossSigningUsage): CrossSigningKeyInfo | undefined {
    const key = this.crossSigningKey(usage);
    return key ? checkCrossSigningKey(key, userId, usage) : undefined;
  }

  /**
   * What `/keys/query` shows of this user to `viewer`: device keys (all, or the listed devices) with the
   * self-signing key's signatures; master and self-signing keys with the signatures of the user's own devices;
   * the user-signing key only to the user themselves. Signatures the viewer made of this user's master key live
   * in the viewer's UserDO and are merged by the caller.
   */
  query(userId: string, viewer: string, deviceIds: readonly string[] | null): UserKeys {
    const device_keys: Record<string, JsonObject> = {};
    for (const [deviceId, keys] of this.storedDeviceKeys(deviceIds)) {
      const sigs = this.signaturesOf(userId, deviceId);
      device_keys[deviceId] = Object.keys(sigs).length ? withSignatures(keys, { [userId]: sigs }) : keys;
    }
    const out: UserKeys = { device_keys };
    const master = this.crossSigningKey("master");
    if (master) {
      const pub = checkCrossSigningKey(master, userId, "master").publicKey;
      const sigs = this.signaturesOf(userId, pub);
      out.master_key = Object.keys(sigs).length ? withSignatures(master, { [userId]: sigs }) : master;
    }
    const ssk = this.crossSigningKey("self_signing");
    if (ssk) out.self_signing_key = ssk;
    if (viewer === userId) {
      const usk = this.crossSigningKey("user_signing");
      if (usk) out.user_signing_key = usk;
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Devices going away

  private forgetDeviceSignatures(userId: string, deviceId: string): void {
    this.sql.exec("DELETE FROM e2e_signatures WHERE target_user = ? AND target_key = ?", userId, deviceId);
    this.sql.exec("DELETE FROM e2e_signatures WHERE signer_key_id = ?", `ed25519:${deviceId}`);
  }

  /** Deletes everything E2EE about a device (keys, signatures, to-device inbox) and announces the change. */
  deleteDevice(userId: string, deviceId: string): void {
    this.sql.exec("DELETE FROM e2e_device_keys WHERE device_id = ?", deviceId);
    this.sql.exec("DELETE FROM e2e_one_time_keys WHERE device_id = ?", deviceId);
    this.sql.exec("DELETE FROM e2e_fallback_keys WHERE device_id = ?", deviceId);
    this.sql.exec("DELETE FROM to_device_inbox WHERE device_id = ?", deviceId);
    this.forgetDeviceSignatures(userId, deviceId);
    this.ownDeviceListChanged(userId);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Cross-signing

  /**
   * POST /keys/device_signing/upload. `deviceIds` are the user's device IDs (a cross-signing public key must not
   * equal one of them). Without `authenticated`, replacing any stored key is refused with "needs_auth" before
   * anything is written: user-interactive authentication is required unless there is no master key yet or the
   * request only repeats the stored keys (spec v1.11+, MSC3967).
   */
  uploadCrossSigning(
    userId: string,
    upload: CrossSigningUpload,
    deviceIds: readonly string[],
    authenticated: boolean,
    now = Date.now(),
  ): "ok" | "needs_auth" {
    const given = new Map<CrossSigningUsage, { key: JsonObject; info: CrossSigningKeyInfo }>();
    for (const usage of CROSS_SIGNING_USAGES) {
      const text = upload[usage];
      if (text === undefined) continue;
      const key = parseJson(text);
      given.set(usage, { key, info: checkCrossSigningKey(key, userId, usage) });
    }

    const storedMaster = this.crossSigningKey("master");
    const master = given.get("master")?.info ?? (storedMaster ? checkCrossSigningKey(storedMaster, userId, "master") : undefined);
    if (!master && given.size > 0) throw new E2eeError(400, "M_MISSING_PARAM", "No master key available");
    for (const usage of ["self_signing", "user_signing"] as const) {
      const g = given.get(usage);
      if (g && !isSignedBy(g.key, userId, master!)) throw invalidSignature(`Invalid signature on the ${usage} key`);
    }
    for (const { info } of given.values()) {
      if (deviceIds.includes(info.publicKey)) throw new E2eeError(403, "M_FORBIDDEN", "Key ID in use (it is a device ID)");
    }

    const changed = [...given].filter(([usage, g]) => {
      const stored = this.crossSigningKey(usage);
      return !stored || canonicalJson(stored) !== canonicalJson(g.key);
    });
    if (storedMaster && changed.length > 0 && !authenticated) return "needs_auth";

    for (const [usage, { key, info }] of changed) {
      const old = this.crossSigningKey(usage);
      if (old) {
        const oldInfo = checkCrossSigningKey(old, userId, usage);
        // Signatures by the old key, or of the old master key, describe keys that are gone.
        this.sql.exec("DELETE FROM e2e_signatures WHERE signer_key_id = ?", oldInfo.keyId);
        if (usage === "master") this.sql.exec("DELETE FROM e2e_signatures WHERE target_user = ? AND target_key = ?", userId, oldInfo.publicKey);
      }
      this.sql.exec(
        `INSERT INTO e2e_cross_signing_keys (usage, key_id, json, ts) VALUES (?, ?, ?, ?)
         ON CONFLICT (usage) DO UPDATE SET key_id = excluded.key_id, json = excluded.json, ts = excluded.ts`,
        usage, info.keyId, canonicalJson(key), now,
      );
    }
    // Master and self-signing keys are public: everyone sharing a room refetches. The user-signing key is only
    // visible to the user, so only their own devices hear about it.
    if (changed.some(([usage]) => usage !== "user_signing")) this.ownDeviceListChanged(userId);
    else if (changed.length > 0) this.lists.record(userId, "changed");
    return "ok";
  }

  /**
   * POST /keys/signatures/upload. `signed` maps user ID → key ID → signed object. Signatures of the user's own
   * devices must be by their self-signing key, of their own master key by one of their devices, of another
   * user's master key by their user-signing key; `otherMasters` holds the other users' current master keys
   * (fetched by the caller from their UserDOs; null when they have none). Valid signatures are stored; the rest
   * are reported per user and key ID.
   */
  uploadSignatures(
    userId: string,
    signed: Record<string, Record<string, JsonObject>>,
    otherMasters: Record<string, JsonObject | null>,
  ): SignatureFailures {
    const failures: SignatureFailures = {};
    const fail = (user: string, keyId: string, e: unknown) => {
      if (!(e instanceof E2eeError)) throw e;
      (failures[user] ??= {})[keyId] = e.failure();
    };
    let ownDevicesChanged = false;
    const store = (targetUser: string, targetKey: string, signerKeyId: string, signature: string) =>
      this.sql.exec(
        `INSERT INTO e2e_signatures (target_user, target_key, signer_key_id, signature) VALUES (?, ?, ?, ?)
         ON CONFLICT (target_user, target_key, signer_key_id) DO UPDATE SET signature = excluded.signature`,
        targetUser, targetKey, signerKeyId, signature,
      );

    // The user's own keys.
    const own = signed[userId] ?? {};
    if (Object.keys(own).length > 0) {
      const master = this.crossSigningKey("master");
      const masterInfo = master ? checkCrossSigningKey(master, userId, "master") : undefined;
      const ssk = this.crossSigningInfo(userId, "self_signing");
      for (const [keyId, obj] of Object.entries(own)) {
        try {
          if (masterInfo && keyId === masterInfo.publicKey) {
            // The master key, signed by some of the user's devices.
            if (!sameSignedContent(obj, master!)) throw invalidParam("Key does not match the stored master key");
            const sigs = Object.entries(signaturesBy(obj, userId)).filter(([k]) => k !== masterInfo.keyId);
            if (sigs.length === 0) throw invalidSignature("No device signature on the master key");
            const checked = sigs.map(([signerKeyId, signature]) => {
              const deviceId = signerKeyId.startsWith("ed25519:") ? signerKeyId.slice("ed25519:".length) : "";
              const device = this.storedDeviceKeys([deviceId]).get(deviceId);
              const pub = device ? deviceEd25519(device, deviceId) : undefined;
              if (!pub || !isSignedBy(obj, userId, { keyId: signerKeyId, publicKey: pub })) throw invalidSignature();
              return [signerKeyId, signature] as const;
            });
            for (const [signerKeyId, signature] of checked) store(userId, masterInfo.publicKey, signerKeyId, signature);
            ownDevicesChanged = true;
            continue;
          }
          // One of the user's devices, signed by their self-signing key.
          if (!ssk) throw notFound("No self-signing key found");
          const device = this.storedDeviceKeys([keyId]).get(keyId);
          if (!device) throw notFound("Unknown device");
          if (!sameSignedContent(obj, device)) throw invalidParam("Key does not match the stored device keys");
          const signature = signaturesBy(obj, userId)[ssk.keyId];
          if (signature === undefined || !isSignedBy(obj, userId, ssk)) throw invalidSignature();
          store(userId, keyId, ssk.keyId, signature);
          ownDevicesChanged = true;
        } catch (e) {
          fail(userId, keyId, e);
        }
      }
    }

    // Other users' master keys, signed by the user's user-signing key.
    const usk = this.crossSigningInfo(userId, "user_signing");
    for (const [target, objects] of Object.entries(signed)) {
      if (target === userId) continue;
      const targetMaster = otherMasters[target] ?? null;
      let signedSomething = false;
      for (const [keyId, obj] of Object.entries(objects)) {
        try {
          if (!usk) throw notFound("No user-signing key found");
          if (!targetMaster) throw notFound(`No master key found for ${target}`);
          const info = checkCrossSigningKey(targetMaster, target, "master");
          if (keyId !== info.publicKey) throw notFound("Unknown device");
          if (!sameSignedContent(obj, targetMaster)) throw invalidParam("Key does not match the stored master key");
          const signature = signaturesBy(obj, userId)[usk.keyId];
          if (signature === undefined || !isSignedBy(obj, userId, usk)) throw invalidSignature();
          store(target, info.publicKey, usk.keyId, signature);
          signedSomething = true;
        } catch (e) {
          fail(target, keyId, e);
        }
      }
      // Only the signer can see these signatures: only their own devices need to refetch the target's keys.
      if (signedSomething) this.lists.record(target, "changed");
    }

    if (ownDevicesChanged) this.ownDeviceListChanged(userId);
    return failures;
  }

  /** The user's current master key (for other users' signature uploads), or null. */
  masterKey(): JsonObject | null {
    return this.crossSigningKey("master") ?? null;
  }
}
