/**
 * A user's push rules in their UserDO: the rules they created (ordered per kind by an integer priority, lower is
 * more important) and their changes to server-default rules (enabled flag, actions). The full ruleset is built
 * with the defaults on every read (src/push/ruleset.ts). Every change republishes the ruleset as the global
 * `m.push_rules` account data, in the same transaction, so /sync shows it (spec "Push Rules: Events").
 */
import { E2eeError, notFound } from "../../src/e2ee/result";
import { buildRuleset, isDefaultRule, type DefaultRuleSetting, type UserRule } from "../../src/push/ruleset";
import { isServerDefaultRuleId } from "../../src/push/default-rules";
import type { PushAction, PushRule, RuleKind, Ruleset } from "../../src/push/types";

type RuleRow = {
  kind: string;
  rule_id: string;
  priority: number;
  enabled: number;
  actions: string;
  conditions: string | null;
  pattern: string | null;
};

type SettingRow = { kind: string; rule_id: string; enabled: number | null; actions: string | null };

/** The account data type under which the ruleset is published. */
export const PUSH_RULES_ACCOUNT_DATA = "m.push_rules";

function toUserRule(r: RuleRow): UserRule {
  const rule: UserRule = {
    kind: r.kind as RuleKind,
    rule_id: r.rule_id,
    enabled: r.enabled === 1,
    actions: JSON.parse(r.actions) as PushAction[],
  };
  if (r.conditions !== null) rule.conditions = JSON.parse(r.conditions) as UserRule["conditions"];
  if (r.pattern !== null) rule.pattern = r.pattern;
  return rule;
}

/** The user's whole ruleset (their rules in priority order, then the defaults with their settings). */
export function pushRuleset(sql: SqlStorage, userId: string): Ruleset {
  const rules = sql.exec<RuleRow>("SELECT * FROM push_rules ORDER BY kind, priority").toArray().map(toUserRule);
  const settings = sql.exec<SettingRow>("SELECT * FROM push_rule_settings").toArray().map(
    (s): DefaultRuleSetting => ({
      kind: s.kind as RuleKind,
      rule_id: s.rule_id,
      ...(s.enabled !== null ? { enabled: s.enabled === 1 } : {}),
      ...(s.actions !== null ? { actions: JSON.parse(s.actions) as PushAction[] } : {}),
    }),
  );
  return buildRuleset(userId, rules, settings);
}

/**
 * The content of the user's `m.push_rules` account data: `{"global": ruleset}`. For a sync that finds no stored
 * `m.push_rules` (the user never changed a rule), this is what to show.
 */
export function pushRulesContent(sql: SqlStorage, userId: string): string {
  return JSON.stringify({ global: pushRuleset(sql, userId) });
}

export class PushRules {
  /** `publish(content)` stores the global `m.push_rules` account data (inside the caller's transaction). */
  constructor(
    private readonly sql: SqlStorage,
    private readonly publish: (content: string) => void,
  ) {}

  private userRow(kind: RuleKind, ruleId: string): RuleRow | undefined {
    return this.sql.exec<RuleRow>("SELECT * FROM push_rules WHERE kind = ? AND rule_id = ?", kind, ruleId).toArray()[0];
  }

  private changed(userId: string): void {
    this.publish(pushRulesContent(this.sql, userId));
  }

  ruleset(userId: string): Ruleset {
    return pushRuleset(this.sql, userId);
  }

  /** One rule as clients see it, or 404. */
  get(userId: string, kind: RuleKind, ruleId: string): PushRule {
    const rule = this.ruleset(userId)[kind].find((r) => r.rule_id === ruleId);
    if (!rule) throw notFound("The push rule was not found.");
    return rule;
  }

  /** Where an existing user rule of `kind` sits, for `before` / `after`; 400 for unknown or server-default rules. */
  private anchor(kind: RuleKind, ruleId: string, self: string): number {
    if (isServerDefaultRuleId(ruleId)) {
      throw new E2eeError(400, "M_INVALID_PARAM", "Rules cannot be placed relative to a server-default rule");
    }
    if (ruleId === self) throw new E2eeError(400, "M_INVALID_PARAM", "A rule cannot be placed relative to itself");
    const row = this.userRow(kind, ruleId);
    if (!row) throw new E2eeError(400, "M_UNKNOWN", `before/after rule not found: ${ruleId}`);
    return row.priority;
  }

  /**
   * PUT /pushrules/global/{kind}/{ruleId}: creates the rule (enabled, most important of its kind unless
   * `before` / `after` place it) or updates an existing one (keeping its enabled flag, and its place unless
   * `before` / `after` move it). With both, `before` decides, as the spec says.
   */
  put(userId: string, rule: UserRule, before: string | null, after: string | null): void {
    const { kind, rule_id } = rule;
    const existing = this.userRow(kind, rule_id);
    let priority: number;
    if (before !== null || after !== null) {
      // (Runs in the caller's transaction: a bad anchor throws and rolls the deletion back.)
      if (existing) this.sql.exec("DELETE FROM push_rules WHERE kind = ? AND rule_id = ?", kind, rule_id);
      const at = this.anchor(kind, before ?? after!, rule_id);
      priority = before !== null ? at : at + 1;
      // Make room: everything from the new slot on moves down one.
      this.sql.exec("UPDATE push_rules SET priority = priority + 1 WHERE kind = ? AND priority >= ?", kind, priority);
    } else if (existing) {
      priority = existing.priority;
    } else {
      const top = this.sql.exec<{ p: number | null }>("SELECT min(priority) AS p FROM push_rules WHERE kind = ?", kind).one().p;
      priority = top === null ? 0 : top - 1;
    }
    const enabled = existing ? existing.enabled : 1;
    this.sql.exec(
      `INSERT INTO push_rules (kind, rule_id, priority, enabled, actions, conditions, pattern) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (kind, rule_id) DO UPDATE SET priority = excluded.priority, enabled = excluded.enabled,
         actions = excluded.actions, conditions = excluded.conditions, pattern = excluded.pattern`,
      kind, rule_id, priority, enabled, JSON.stringify(rule.actions),
      rule.conditions === undefined ? null : JSON.stringify(rule.conditions), rule.pattern ?? null,
    );
    this.changed(userId);
  }

  /** DELETE /pushrules/global/{kind}/{ruleId}: user rules only. */
  delete(userId: string, kind: RuleKind, ruleId: string): void {
    if (isDefaultRule(userId, kind, ruleId)) throw new E2eeError(400, "M_INVALID_PARAM", "Server-default rules cannot be deleted");
    if (!this.userRow(kind, ruleId)) throw notFound("The push rule was not found.");
    this.sql.exec("DELETE FROM push_rules WHERE kind = ? AND rule_id = ?", kind, ruleId);
    this.changed(userId);
  }

  /** PUT …/enabled and …/actions, for user rules and server-default rules alike. */
  setAttribute(userId: string, kind: RuleKind, ruleId: string, attr: { enabled: boolean } | { actions: PushAction[] }): void {
    if (this.userRow(kind, ruleId)) {
      if ("enabled" in attr) this.sql.exec("UPDATE push_rules SET enabled = ? WHERE kind = ? AND rule_id = ?", attr.enabled ? 1 : 0, kind, ruleId);
      else this.sql.exec("UPDATE push_rules SET actions = ? WHERE kind = ? AND rule_id = ?", JSON.stringify(attr.actions), kind, ruleId);
    } else if (isDefaultRule(userId, kind, ruleId)) {
      this.sql.exec("INSERT INTO push_rule_settings (kind, rule_id) VALUES (?, ?) ON CONFLICT DO NOTHING", kind, ruleId);
      if ("enabled" in attr) {
        this.sql.exec("UPDATE push_rule_settings SET enabled = ? WHERE kind = ? AND rule_id = ?", attr.enabled ? 1 : 0, kind, ruleId);
      } else {
        this.sql.exec("UPDATE push_rule_settings SET actions = ? WHERE kind = ? AND rule_id = ?", JSON.stringify(attr.actions), kind, ruleId);
      }
    } else {
      throw notFound("The push rule was not found.");
    }
    this.changed(userId);
  }
}
