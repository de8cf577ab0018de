/**
 * Invites with `content.third_party_invite` (membership rule "If membership is invite" → "If content has a
 * third_party_invite property", sub-rules .1–.8). The `signed` block must carry a signature by one of the public
 * keys that the `m.room.third_party_invite` event (state key = token) published.
 */
import type { JsonObject, JsonValue } from "../events";
import type { AuthContext } from "./context";
import { allow, reject } from "./rule-numbers";
import type { AuthEvent, AuthResult, JsonSignatureVerifier } from "./types";

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function checkThirdPartyInvite(ctx: AuthContext, event: AuthEvent & { state_key: string }, r: string): AuthResult {
  // .1
  if (ctx.membershipOf(event.state_key) === "ban") return reject(`${r}.1`, "target user is banned");
  // .2
  const invite = event.content.third_party_invite;
  const signed = isObject(invite) ? invite.signed : undefined;
  if (!isObject(signed)) return reject(`${r}.2`, "third_party_invite has no signed property");
  // .3
  const { mxid, token } = signed;
  if (typeof mxid !== "string" || typeof token !== "string") {
    return reject(`${r}.3`, "third_party_invite.signed lacks mxid or token");
  }
  // .4
  if (mxid !== event.state_key) return reject(`${r}.4`, "third_party_invite.signed.mxid does not match state_key");
  // .5
  const thirdPartyInvite = ctx.state("m.room.third_party_invite", token);
  if (!thirdPartyInvite) return reject(`${r}.5`, "no m.room.third_party_invite event for the token");
  // .6
  if (thirdPartyInvite.sender !== event.sender) {
    return reject(`${r}.6`, "sender does not match the sender of the m.room.third_party_invite event");
  }
  // .7, .8
  const verify = ctx.opts.verifyJsonSignature;
  if (!verify) return reject(`${r}.7`, "no signature verifier available for third-party invites");
  if (signedByAnyKey(signed, publicKeys(thirdPartyInvite.content), verify)) return allow();
  return reject(`${r}.8`, "no signature in signed matches a public key of the m.room.third_party_invite event");
}

/** `content.public_key` and every `content.public_keys[].public_key`. */
export function publicKeys(content: JsonObject): string[] {
  const keys: string[] = [];
  if (typeof content.public_key === "string") keys.push(content.public_key);
  if (Array.isArray(content.public_keys)) {
    for (const entry of content.public_keys) {
      if (isObject(entry) && typeof entry.public_key === "string") keys.push(entry.public_key);
    }
  }
  return keys;
}

/** Whether any (server, ed25519 key ID) signature in `signed.signatures` verifies with any of `keys`. */
function signedByAnyKey(signed: JsonObject, keys: readonly string[], verify: JsonSignatureVerifier): boolean {
  const signatures = signed.signatures;
  if (!isObject(signatures)) return false;
  for (const [server, byKey] of Object.entries(signatures)) {
    if (!isObject(byKey)) continue;
    for (const keyId of Object.keys(byKey)) {
      if (!keyId.startsWith("ed25519:")) continue;
      for (const key of keys) {
        if (safeVerify(verify, signed, server, keyId, key)) return true;
      }
    }
  }
  return false;
}

function safeVerify(verify: JsonSignatureVerifier, obj: JsonObject, server: string, keyId: string, key: string): boolean {
  try {
    return verify(obj, server, keyId, key);
  } catch {
    return false;
  }
}
