/**
 * The server-default push rules of spec v1.19 ("Predefined Rules"), in the spec's order.
 *
 * v1.17 removed the legacy rules that looked for mentions in `content.body` (`.m.rule.contains_display_name`,
 * `.m.rule.contains_user_name`, `.m.rule.roomnotif`); intentional mentions (`.m.rule.is_user_mention`,
 * `.m.rule.is_room_mention`) replace them. The evaluator still understands the `contains_display_name`
 * condition, so users may keep rules of their own that use it.
 */
import type { PushRule, RuleKind } from "./types";

const SOUND_DEFAULT = { set_tweak: "sound", value: "default" };
const HIGHLIGHT = { set_tweak: "highlight" };

function rule(rule_id: string, conditions: PushRule["conditions"], actions: PushRule["actions"], enabled = true): PushRule {
  return { rule_id, default: true, enabled, conditions, actions };
}

/** `.m.rule.master`: always evaluated first, before the user's own override rules. Disabled by default. */
export function masterRule(): PushRule {
  return rule(".m.rule.master", [], [], false);
}

/** The default override rules that follow the user's own override rules. */
function overrideRules(userId: string): PushRule[] {
  return [
    rule(".m.rule.suppress_notices", [{ kind: "event_match", key: "content.msgtype", pattern: "m.notice" }], []),
    rule(
      ".m.rule.invite_for_me",
      [
        { kind: "event_match", key: "type", pattern: "m.room.member" },
        { kind: "event_match", key: "content.membership", pattern: "invite" },
        { kind: "event_match", key: "state_key", pattern: userId },
      ],
      ["notify", SOUND_DEFAULT],
    ),
    rule(".m.rule.member_event", [{ kind: "event_match", key: "type", pattern: "m.room.member" }], []),
    rule(
      ".m.rule.is_user_mention",
      [{ kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: userId }],
      ["notify", SOUND_DEFAULT, HIGHLIGHT],
    ),
    rule(
      ".m.rule.is_room_mention",
      [
        { kind: "event_property_is", key: "content.m\\.mentions.room", value: true },
        { kind: "sender_notification_permission", key: "room" },
      ],
      ["notify", HIGHLIGHT],
    ),
    rule(
      ".m.rule.tombstone",
      [
        { kind: "event_match", key: "type", pattern: "m.room.tombstone" },
        { kind: "event_match", key: "state_key", pattern: "" },
      ],
      ["notify", HIGHLIGHT],
    ),
    rule(".m.rule.reaction", [{ kind: "event_match", key: "type", pattern: "m.reaction" }], []),
    rule(
      ".m.rule.room.server_acl",
      [
        { kind: "event_match", key: "type", pattern: "m.room.server_acl" },
        { kind: "event_match", key: "state_key", pattern: "" },
      ],
      [],
    ),
    rule(
      ".m.rule.suppress_edits",
      [{ kind: "event_property_is", key: "content.m\\.relates_to.rel_type", value: "m.replace" }],
      [],
    ),
  ];
}

function underrideRules(): PushRule[] {
  return [
    rule(".m.rule.call", [{ kind: "event_match", key: "type", pattern: "m.call.invite" }], [
      "notify",
      { set_tweak: "sound", value: "ring" },
    ]),
    rule(
      ".m.rule.encrypted_room_one_to_one",
      [
        { kind: "room_member_count", is: "2" },
        { kind: "event_match", key: "type", pattern: "m.room.encrypted" },
      ],
      ["notify", SOUND_DEFAULT],
    ),
    rule(
      ".m.rule.room_one_to_one",
      [
        { kind: "room_member_count", is: "2" },
        { kind: "event_match", key: "type", pattern: "m.room.message" },
      ],
      ["notify", SOUND_DEFAULT],
    ),
    rule(".m.rule.message", [{ kind: "event_match", key: "type", pattern: "m.room.message" }], ["notify"]),
    rule(".m.rule.encrypted", [{ kind: "event_match", key: "type", pattern: "m.room.encrypted" }], ["notify"]),
  ];
}

/**
 * The server-default rules of each kind for `userId`, in priority order, master excluded (see
 * {@link masterRule}). Fresh objects on every call, so callers may modify them.
 */
export function defaultRules(userId: string): Record<RuleKind, PushRule[]> {
  return { override: overrideRules(userId), content: [], room: [], sender: [], underride: underrideRules() };
}

/** Whether a rule ID names a server-default rule (they all start with a dot). */
export function isServerDefaultRuleId(ruleId: string): boolean {
  return ruleId.startsWith(".");
}
