/**
 * Push rule evaluation: which rule (if any) applies to an event for one user, and what its actions say.
 * Pure and synchronous, so it can run inside a Durable Object transaction (unread counts) or anywhere else.
 * https://spec.matrix.org/v1.19/client-server-api/#push-rules
 */
import { RULE_KINDS, type PushAction, type PushCondition, type PushRule, type RuleKind, type Ruleset } from "./types";

/** What the evaluator needs to know about the room and the user besides the event itself. */
export interface PushContext {
  /** The user whose rules are evaluated. */
  userId: string;
  /** The user's display name in the room (for `contains_display_name`), if any. */
  displayName?: string | null;
  /** The number of joined members of the room (for `room_member_count`). */
  memberCount: number;
  /** The sender's power level in the room. */
  senderPowerLevel: number;
  /** `notifications` of the room's power levels, with the spec's default `room: 50` filled in. */
  notificationPowerLevels: Record<string, number>;
}

/** The event as seen by push rules: a client-format or federation event (any JSON object with the usual keys). */
export type PushEvent = Record<string, unknown>;

export interface PushMatch {
  kind: RuleKind;
  ruleId: string;
  actions: PushAction[];
  notify: boolean;
  highlight: boolean;
  /** The `sound` tweak, if any. */
  sound?: string;
}

// ---------------------------------------------------------------------------------------------------------
// Glob patterns and property paths

const GLOB_CACHE_MAX = 1000;
const globCache = new Map<string, RegExp>();

const WORD_CHAR = "A-Za-z0-9_";

/** The regular-expression source of a glob: `*` any run (possibly empty), `?` exactly one character. */
function globSource(glob: string): string {
  let out = "";
  for (const ch of glob) {
    if (ch === "*") out += "[\\s\\S]*";
    else if (ch === "?") out += "[\\s\\S]";
    else if ("^$\\.+()[]{}|/".includes(ch)) out += "\\" + ch;
    else out += ch;
  }
  return out;
}

/**
 * A case-insensitive matcher for `glob`: the whole value must match, or with `wordBoundary` any substring of it
 * that starts and ends at a word boundary (start/end of the value or a character outside `[A-Za-z0-9_]`).
 */
export function globToRegExp(glob: string, wordBoundary: boolean): RegExp {
  const cacheKey = `${wordBoundary ? "w" : "f"}${glob}`;
  let re = globCache.get(cacheKey);
  if (!re) {
    const src = globSource(glob);
    re = wordBoundary
      ? new RegExp(`(?<![${WORD_CHAR}])${src}(?![${WORD_CHAR}])`, "iu")
      : new RegExp(`^${src}$`, "iu");
    if (globCache.size >= GLOB_CACHE_MAX) globCache.clear();
    globCache.set(cacheKey, re);
  }
  return re;
}

/** Whether `value` matches the glob (see {@link globToRegExp}). */
export function globMatches(glob: string, value: string, wordBoundary = false): boolean {
  return globToRegExp(glob, wordBoundary).test(value);
}

/**
 * Splits a dot-separated property path (`content.m\.relates_to.rel_type`): `\.` is a literal dot, `\\` a literal
 * backslash, any other backslash is kept as it is.
 */
export function splitPropertyPath(path: string): string[] {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]!;
    if (ch === "\\" && (path[i + 1] === "." || path[i + 1] === "\\")) {
      cur += path[i + 1];
      i++;
    } else if (ch === ".") {
      parts.push(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

/** The value at a dot-separated path, or `undefined` when any step is missing or not an object. */
export function lookupProperty(event: PushEvent, path: string): unknown {
  let cur: unknown = event;
  for (const key of splitPropertyPath(path)) {
    if (typeof cur !== "object" || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** Strings, integers in canonical JSON's range, booleans and null: the only values `event_property_*` compare. */
function isScalar(v: unknown): v is string | number | boolean | null {
  return (
    v === null ||
    typeof v === "string" ||
    typeof v === "boolean" ||
    (typeof v === "number" && Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER)
  );
}

// ---------------------------------------------------------------------------------------------------------
// Conditions

const MEMBER_COUNT = /^(==|<=|>=|<|>)?([0-9]+)$/;

/** `room_member_count`'s `is`: `2`, `==2`, `<10`, `>=3`, … Malformed comparisons never match. */
export function memberCountMatches(is: unknown, count: number): boolean {
  if (typeof is !== "string") return false;
  const m = MEMBER_COUNT.exec(is);
  if (!m) return false;
  const n = Number(m[2]);
  switch (m[1] ?? "==") {
    case "==":
      return count === n;
    case "<":
      return count < n;
    case ">":
      return count > n;
    case "<=":
      return count <= n;
    case ">=":
      return count >= n;
    default:
      return false;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/** Evaluates one condition. Unknown condition kinds never match (spec "Conditions"). */
export function conditionMatches(cond: PushCondition, event: PushEvent, ctx: PushContext): boolean {
  switch (cond.kind) {
    case "event_match": {
      if (typeof cond.key !== "string" || typeof cond.pattern !== "string") return false;
      const value = lookupProperty(event, cond.key);
      if (typeof value !== "string") return false;
      return globMatches(cond.pattern, value, cond.key === "content.body");
    }
    case "event_property_is": {
      if (typeof cond.key !== "string" || !isScalar(cond.value)) return false;
      const value = lookupProperty(event, cond.key);
      return isScalar(value) && value === cond.value;
    }
    case "event_property_contains": {
      if (typeof cond.key !== "string" || !isScalar(cond.value)) return false;
      const value = lookupProperty(event, cond.key);
      return Array.isArray(value) && value.some((v) => isScalar(v) && v === cond.value);
    }
    case "contains_display_name": {
      const name = ctx.displayName;
      if (!name) return false;
      const body = lookupProperty(event, "content.body");
      if (typeof body !== "string") return false;
      return new RegExp(`(?<![${WORD_CHAR}])${escapeRegExp(name)}(?![${WORD_CHAR}])`, "iu").test(body);
    }
    case "room_member_count":
      return memberCountMatches(cond.is, ctx.memberCount);
    case "sender_notification_permission": {
      if (typeof cond.key !== "string" || !Object.hasOwn(ctx.notificationPowerLevels, cond.key)) return false;
      return ctx.senderPowerLevel >= ctx.notificationPowerLevels[cond.key]!;
    }
    default:
      return false;
  }
}

/** Whether an (enabled) rule of `kind` matches: override/underride by conditions, the others by their rule ID. */
export function ruleMatches(kind: RuleKind, rule: PushRule, event: PushEvent, ctx: PushContext): boolean {
  switch (kind) {
    case "override":
    case "underride":
      return (rule.conditions ?? []).every((c) => conditionMatches(c, event, ctx));
    case "content": {
      const body = lookupProperty(event, "content.body");
      return typeof rule.pattern === "string" && typeof body === "string" && globMatches(rule.pattern, body, true);
    }
    case "room":
      return event.room_id === rule.rule_id;
    case "sender":
      return event.sender === rule.rule_id;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Actions and evaluation

function tweak(actions: readonly PushAction[], name: string): { set: boolean; value?: unknown } {
  let found: { set: boolean; value?: unknown } = { set: false };
  for (const a of actions) {
    if (typeof a === "object" && a.set_tweak === name) found = { set: true, value: a.value };
  }
  return found;
}

/** Whether the actions notify: `notify` present (the historical `dont_notify` / `coalesce` are no-ops). */
export function actionsNotify(actions: readonly PushAction[]): boolean {
  return actions.includes("notify");
}

/** The `highlight` tweak: true when given without a value, false when absent. */
export function actionsHighlight(actions: readonly PushAction[]): boolean {
  const t = tweak(actions, "highlight");
  if (!t.set) return false;
  return t.value === undefined ? true : t.value === true;
}

/**
 * Evaluates the ruleset for one event: the first enabled matching rule in kind order wins. Returns `null` when no
 * rule matches or when the user sent the event themselves (they are never notified of their own events).
 */
export function evaluatePushRules(ruleset: Ruleset, event: PushEvent, ctx: PushContext): PushMatch | null {
  if (event.sender === ctx.userId) return null;
  for (const kind of RULE_KINDS) {
    for (const rule of ruleset[kind] ?? []) {
      if (!rule.enabled || !ruleMatches(kind, rule, event, ctx)) continue;
      const sound = tweak(rule.actions, "sound");
      return {
        kind,
        ruleId: rule.rule_id,
        actions: rule.actions,
        notify: actionsNotify(rule.actions),
        highlight: actionsHighlight(rule.actions),
        ...(sound.set && typeof sound.value === "string" ? { sound: sound.value } : {}),
      };
    }
  }
  return null;
}

/**
 * The `notifications` power levels with the spec's default (`room: 50`) filled in, from the content of an
 * `m.room.power_levels` event (or undefined when the room has none).
 */
export function notificationPowerLevels(powerLevelsContent: Record<string, unknown> | undefined): Record<string, number> {
  const out: Record<string, number> = { room: 50 };
  const n = powerLevelsContent?.notifications;
  if (typeof n === "object" && n !== null && !Array.isArray(n)) {
    for (const [k, v] of Object.entries(n)) {
      const num = typeof v === "number" ? v : typeof v === "string" && /^[+-]?[0-9]+$/.test(v.trim()) ? Number(v) : NaN;
      if (Number.isInteger(num)) out[k] = num;
    }
  }
  return out;
}
