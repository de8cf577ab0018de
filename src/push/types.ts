/**
 * Push rule shapes as the client-server API shows them.
 * https://spec.matrix.org/v1.19/client-server-api/#push-rules
 */

/** The kinds of rule, in the order they are evaluated. */
export const RULE_KINDS = ["override", "content", "room", "sender", "underride"] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export function isRuleKind(s: string): s is RuleKind {
  return (RULE_KINDS as readonly string[]).includes(s);
}

/** `{"set_tweak": "sound", "value": "default"}` and friends; tweaks other than sound/highlight pass through. */
export interface TweakAction {
  set_tweak: string;
  value?: unknown;
}

/** `"notify"` or a tweak. The historical `dont_notify` / `coalesce` are stripped before storing. */
export type PushAction = string | TweakAction;

/** A rule condition. Unknown kinds are kept (and never match). */
export interface PushCondition {
  kind: string;
  key?: string;
  pattern?: string;
  value?: unknown;
  is?: string;
}

export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  /** override / underride rules only. */
  conditions?: PushCondition[];
  /** content rules only. */
  pattern?: string;
}

/** The `global` ruleset: one list per kind, each already in priority order. */
export type Ruleset = Record<RuleKind, PushRule[]>;
