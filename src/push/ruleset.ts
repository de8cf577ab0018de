/**
 * User-defined push rules: validating what a client PUTs, and merging the user's rules with the server defaults
 * into the `global` ruleset clients see (and the evaluator runs).
 *
 * Order inside the ruleset (spec "Predefined Rules"): `.m.rule.master` first, then for each kind the user's
 * rules (in their chosen order) before the server-default rules of that kind.
 */
import { isValidRoomId, isValidUserId } from "../protocol/identifiers";
import { defaultRules, isServerDefaultRuleId, masterRule } from "./default-rules";
import type { PushAction, PushCondition, PushRule, RuleKind, Ruleset } from "./types";

/** A rule the user created, as stored (no `default` flag: it is always false). */
export interface UserRule {
  kind: RuleKind;
  rule_id: string;
  enabled: boolean;
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

/** The user's changes to a server-default rule: it can be disabled/enabled or given other actions, not removed. */
export interface DefaultRuleSetting {
  kind: RuleKind;
  rule_id: string;
  enabled?: boolean;
  actions?: PushAction[];
}

/** A client error in a push rule request; the route turns it into a Matrix error. */
export class PushRuleInputError extends Error {
  constructor(
    readonly errcode: "M_INVALID_PARAM" | "M_BAD_JSON" | "M_MISSING_PARAM" | "M_UNKNOWN",
    message: string,
  ) {
    super(message);
    this.name = "PushRuleInputError";
  }
}

/** Historical actions that servers must ignore (spec "Historical Actions"). */
const HISTORICAL_ACTIONS = new Set(["dont_notify", "coalesce"]);

/**
 * Validates an `actions` array and strips the historical no-op actions. Accepts `"notify"` and
 * `{"set_tweak": <string>, ...}` objects; anything else is a 400.
 */
export function parseActions(value: unknown): PushAction[] {
  if (!Array.isArray(value)) throw new PushRuleInputError("M_BAD_JSON", "actions must be an array");
  const out: PushAction[] = [];
  for (const a of value) {
    if (typeof a === "string") {
      if (HISTORICAL_ACTIONS.has(a)) continue;
      if (a !== "notify") throw new PushRuleInputError("M_INVALID_PARAM", `Unrecognised action ${JSON.stringify(a)}`);
      out.push(a);
    } else if (typeof a === "object" && a !== null && !Array.isArray(a) && typeof (a as { set_tweak?: unknown }).set_tweak === "string") {
      out.push(a as PushAction);
    } else {
      throw new PushRuleInputError("M_INVALID_PARAM", `Unrecognised action ${JSON.stringify(a)}`);
    }
  }
  return out;
}

function parseConditions(value: unknown): PushCondition[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new PushRuleInputError("M_BAD_JSON", "conditions must be an array");
  return value.map((c) => {
    if (typeof c !== "object" || c === null || Array.isArray(c) || typeof (c as { kind?: unknown }).kind !== "string") {
      throw new PushRuleInputError("M_BAD_JSON", "each condition must be an object with a string 'kind'");
    }
    return c as PushCondition;
  });
}

/**
 * Checks a rule ID a client wants to create: not a server-default ID (leading dot), no slashes, and for `room` /
 * `sender` rules a room ID / user ID (the rule ID is what those rules match).
 */
export function checkNewRuleId(kind: RuleKind, ruleId: string): void {
  if (ruleId === "") throw new PushRuleInputError("M_INVALID_PARAM", "rule_id must not be empty");
  if (isServerDefaultRuleId(ruleId)) {
    throw new PushRuleInputError("M_INVALID_PARAM", "rule IDs starting with '.' are reserved for server-default rules");
  }
  if (ruleId.includes("/") || ruleId.includes("\\")) {
    throw new PushRuleInputError("M_INVALID_PARAM", "rule_id may not contain slashes or backslashes");
  }
  if (kind === "room" && !isValidRoomId(ruleId)) {
    throw new PushRuleInputError("M_INVALID_PARAM", "the rule_id of a room rule must be a room ID");
  }
  if (kind === "sender" && !isValidUserId(ruleId)) {
    throw new PushRuleInputError("M_INVALID_PARAM", "the rule_id of a sender rule must be a user ID");
  }
}

/** Parses the body of `PUT /pushrules/global/{kind}/{ruleId}` into a new (enabled) user rule. */
export function parseRuleBody(kind: RuleKind, ruleId: string, body: Record<string, unknown>): UserRule {
  checkNewRuleId(kind, ruleId);
  if (!("actions" in body)) throw new PushRuleInputError("M_MISSING_PARAM", "Missing 'actions'");
  const rule: UserRule = { kind, rule_id: ruleId, enabled: true, actions: parseActions(body.actions) };
  if (kind === "override" || kind === "underride") {
    rule.conditions = parseConditions(body.conditions);
  } else if (kind === "content") {
    if (typeof body.pattern !== "string") throw new PushRuleInputError("M_MISSING_PARAM", "Content rules need a string 'pattern'");
    rule.pattern = body.pattern;
  }
  return rule;
}

/** The client view of a user rule. */
export function userRuleToClient(r: UserRule): PushRule {
  const out: PushRule = { rule_id: r.rule_id, default: false, enabled: r.enabled, actions: r.actions };
  if (r.kind === "override" || r.kind === "underride") out.conditions = r.conditions ?? [];
  if (r.kind === "content") out.pattern = r.pattern ?? "";
  return out;
}

function applySetting(rule: PushRule, setting: DefaultRuleSetting | undefined): PushRule {
  if (!setting) return rule;
  return {
    ...rule,
    enabled: setting.enabled ?? rule.enabled,
    actions: setting.actions ?? rule.actions,
  };
}

/**
 * The user's whole `global` ruleset: `userRules` must already be in priority order within each kind (most
 * important first); `settings` hold the user's enabled/actions changes to server-default rules.
 */
export function buildRuleset(userId: string, userRules: readonly UserRule[], settings: readonly DefaultRuleSetting[]): Ruleset {
  const settingOf = new Map(settings.map((s) => [`${s.kind}\u0000${s.rule_id}`, s]));
  const withSetting = (kind: RuleKind, r: PushRule) => applySetting(r, settingOf.get(`${kind}\u0000${r.rule_id}`));
  const defaults = defaultRules(userId);
  const ruleset: Ruleset = { override: [], content: [], room: [], sender: [], underride: [] };
  ruleset.override.push(withSetting("override", masterRule()));
  for (const kind of Object.keys(ruleset) as RuleKind[]) {
    for (const r of userRules) if (r.kind === kind) ruleset[kind].push(userRuleToClient(r));
    for (const r of defaults[kind]) ruleset[kind].push(withSetting(kind, r));
  }
  return ruleset;
}

/** Whether `ruleId` is a server-default rule of `kind` (including the master rule). */
export function isDefaultRule(userId: string, kind: RuleKind, ruleId: string): boolean {
  if (kind === "override" && ruleId === ".m.rule.master") return true;
  return defaultRules(userId)[kind].some((r) => r.rule_id === ruleId);
}
