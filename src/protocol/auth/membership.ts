/**
 * The `m.room.member` rule (rule 5 in v1–v5 and v12, rule 4 in v6–v11), one function per membership.
 * Rule numbers come from {@link memberRules}, since v8 inserted a rule and shifted the rest.
 */
import { userServerName } from "./ids";
import type { AuthContext } from "./context";
import { allow, memberRules, reject, type MemberRules } from "./rule-numbers";
import { checkThirdPartyInvite } from "./third-party-invite";
import type { AuthEvent, AuthResult } from "./types";

type MemberEvent = AuthEvent & { state_key: string };

export function checkMemberEvent(ctx: AuthContext): AuthResult {
  const rules = memberRules(ctx.version);
  const { event } = ctx;
  const membership = event.content.membership;
  // x.1
  if (typeof event.state_key !== "string" || membership === undefined) {
    return reject(rules.shape, "member event without a state_key or content.membership");
  }
  const member = event as MemberEvent;
  // x.2 (v8+)
  if (ctx.version.restrictedJoins && event.content.join_authorised_via_users_server !== undefined) {
    const failed = checkAuthorisingServerSignature(ctx);
    if (failed) return reject(rules.authorisedSignature, failed);
  }
  switch (membership) {
    case "join":
      return checkJoin(ctx, member, rules);
    case "invite":
      return checkInvite(ctx, member, rules);
    case "leave":
      return checkLeave(ctx, member, rules);
    case "ban":
      return checkBan(ctx, member, rules);
    case "knock":
      if (ctx.version.knocking) return checkKnock(ctx, member, rules);
  }
  return reject(rules.unknown, `unknown membership ${JSON.stringify(membership)}`);
}

/** "If the event is not validly signed by the homeserver of the user ID denoted by the key, reject." */
function checkAuthorisingServerSignature(ctx: AuthContext): string | undefined {
  const authoriser = ctx.event.content.join_authorised_via_users_server;
  const server = userServerName(authoriser);
  if (server === undefined) return "join_authorised_via_users_server is not a valid user ID";
  const signed = ctx.opts.isSignedBy
    ? ctx.opts.isSignedBy(ctx.event, server)
    : ctx.event.signatures?.[server] !== undefined && Object.keys(ctx.event.signatures[server]).length > 0;
  return signed ? undefined : `the event is not signed by ${server}, the server of join_authorised_via_users_server`;
}

function checkJoin(ctx: AuthContext, event: MemberEvent, rules: MemberRules): AuthResult {
  const { create, version } = ctx;
  const r = rules.join;
  // .1: the creator's own join right after the create event (creator: content.creator before v11, sender from v11).
  const creator = version.implicitRoomCreator ? create.sender : create.content.creator;
  if (event.prev_events.length === 1 && event.prev_events[0] === create.event_id && event.state_key === creator) {
    return allow();
  }
  // .2
  if (event.sender !== event.state_key) return reject(`${r}.2`, "sender does not match state_key");
  const current = ctx.membershipOf(event.sender);
  // .3
  if (current === "ban") return reject(`${r}.3`, "sender is banned");
  const joinRule = ctx.joinRule();
  const invitedOrJoined = current === "invite" || current === "join";
  // .4 (knock from v7)
  if ((joinRule === "invite" || (version.knocking && joinRule === "knock")) && invitedOrJoined) return allow();
  // .5 (v8+; knock_restricted from v10)
  const restricted =
    (version.restrictedJoins && joinRule === "restricted") ||
    (version.knockRestrictedJoinRule && joinRule === "knock_restricted");
  if (restricted) {
    if (invitedOrJoined) return allow();
    const authoriser = event.content.join_authorised_via_users_server;
    if (typeof authoriser !== "string" || ctx.membershipOf(authoriser) !== "join") {
      return reject(`${rules.joinRestricted}.2`, "join_authorised_via_users_server is not a joined member");
    }
    if (ctx.levelOf(authoriser) < ctx.powerLevels.invite) {
      return reject(`${rules.joinRestricted}.2`, "join_authorised_via_users_server may not invite users");
    }
    return allow();
  }
  if (joinRule === "public") return allow();
  return reject(
    rules.joinOtherwise,
    `join rule is ${joinRule === undefined ? "not set" : JSON.stringify(joinRule)} and sender is not invited or joined`,
  );
}

function checkInvite(ctx: AuthContext, event: MemberEvent, rules: MemberRules): AuthResult {
  const r = rules.invite;
  // .1
  if (event.content.third_party_invite !== undefined) return checkThirdPartyInvite(ctx, event, `${r}.1`);
  // .2
  if (ctx.membershipOf(event.sender) !== "join") return reject(`${r}.2`, "sender is not joined");
  // .3
  const target = ctx.membershipOf(event.state_key);
  if (target === "join" || target === "ban") return reject(`${r}.3`, `target user is already ${target === "join" ? "joined" : "banned"}`);
  // .4, .5
  if (ctx.levelOf(event.sender) >= ctx.powerLevels.invite) return allow();
  return reject(`${r}.5`, "sender's power level is below the invite level");
}

function checkLeave(ctx: AuthContext, event: MemberEvent, rules: MemberRules): AuthResult {
  const r = rules.leave;
  const current = ctx.membershipOf(event.sender);
  // .1: leaving, or rejecting an invite / withdrawing a knock (v7+).
  if (event.sender === event.state_key) {
    if (current === "invite" || current === "join" || (ctx.version.knocking && current === "knock")) return allow();
    return reject(`${r}.1`, `sender cannot leave with current membership ${current ?? "none"}`);
  }
  // .2
  if (current !== "join") return reject(`${r}.2`, "sender is not joined");
  const senderLevel = ctx.levelOf(event.sender);
  // .3: unbanning needs the ban level
  if (ctx.membershipOf(event.state_key) === "ban" && senderLevel < ctx.powerLevels.ban) {
    return reject(`${r}.3`, "target is banned and sender's power level is below the ban level");
  }
  // .4, .5
  if (senderLevel >= ctx.powerLevels.kick && ctx.levelOf(event.state_key) < senderLevel) return allow();
  return reject(`${r}.5`, "sender's power level is below the kick level or not above the target's");
}

function checkBan(ctx: AuthContext, event: MemberEvent, rules: MemberRules): AuthResult {
  const r = rules.ban;
  // .1
  if (ctx.membershipOf(event.sender) !== "join") return reject(`${r}.1`, "sender is not joined");
  // .2, .3
  const senderLevel = ctx.levelOf(event.sender);
  if (senderLevel >= ctx.powerLevels.ban && ctx.levelOf(event.state_key) < senderLevel) return allow();
  return reject(`${r}.3`, "sender's power level is below the ban level or not above the target's");
}

function checkKnock(ctx: AuthContext, event: MemberEvent, rules: MemberRules): AuthResult {
  const r = rules.knock;
  // .1 (knock_restricted from v10)
  const joinRule = ctx.joinRule();
  if (!(joinRule === "knock" || (ctx.version.knockRestrictedJoinRule && joinRule === "knock_restricted"))) {
    return reject(`${r}.1`, `join rule ${joinRule === undefined ? "is not set" : JSON.stringify(joinRule)} does not allow knocking`);
  }
  // .2
  if (event.sender !== event.state_key) return reject(`${r}.2`, "sender does not match state_key");
  // .3, .4
  const current = ctx.membershipOf(event.sender);
  if (current !== "ban" && current !== "invite" && current !== "join") return allow();
  return reject(`${r}.4`, `sender cannot knock with current membership ${current}`);
}
