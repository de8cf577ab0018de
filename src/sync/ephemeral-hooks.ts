/**
 * Local users' typing notifications and receipts, for whoever must forward them elsewhere (federation EDUs,
 * application services). The client routes call `announceEphemeral` once a change is stored in the RoomDO;
 * listeners registered with `onLocalEphemeral` receive it. Inbound EDUs from other servers go straight to the
 * RoomDO (`setTyping`, `putReceipt` accept remote users too) and are not announced here.
 */
import type { Env } from "../env";

export type LocalEphemeral =
  | { kind: "typing"; roomId: string; userId: string; typing: boolean; timeoutMs: number }
  | { kind: "receipt"; roomId: string; userId: string; receiptType: string; eventId: string; threadId: string | null; ts: number };

export type EphemeralListener = (env: Env, change: LocalEphemeral) => Promise<void>;

const listeners: EphemeralListener[] = [];

/** Registers a listener (at module load, e.g. by the federation sender). */
export function onLocalEphemeral(listener: EphemeralListener): void {
  listeners.push(listener);
}

/**
 * Hands a stored change to the listeners, in the background (`waitUntil`): forwarding never delays the
 * client's answer. m.read.private receipts are never announced (they are for the user only).
 */
export function announceEphemeral(env: Env, change: LocalEphemeral, waitUntil: (p: Promise<unknown>) => void): void {
  if (change.kind === "receipt" && change.receiptType === "m.read.private") return;
  for (const listener of listeners) {
    waitUntil(
      listener(env, change).catch((e: unknown) => console.warn(`ephemeral listener failed: ${String((e as Error)?.message ?? e)}`)),
    );
  }
}
