/** The pure push rule evaluator (src/push): conditions, globs, property paths, default rules, rule order. */
import { describe, expect, it } from "vitest";
import {
  conditionMatches,
  evaluatePushRules,
  globMatches,
  lookupProperty,
  memberCountMatches,
  notificationPowerLevels,
  splitPropertyPath,
  type PushContext,
  type PushEvent,
} from "../../src/push/evaluator";
import { buildRuleset, parseActions, parseRuleBody, PushRuleInputError, type UserRule } from "../../src/push/ruleset";
import type { PushCondition } from "../../src/push/types";

const ME = "@me:test.local";
const ctx = (over: Partial<PushContext> = {}): PushContext => ({
  userId: ME,
  displayName: "Alice Liddell",
  memberCount: 5,
  senderPowerLevel: 0,
  notificationPowerLevels: { room: 50 },
  ...over,
});
const msg = (content: Record<string, unknown>, over: PushEvent = {}): PushEvent => ({
  type: "m.room.message",
  sender: "@other:test.local",
  room_id: "!room:test.local",
  event_id: "$e",
  content,
  ...over,
});

describe("globs", () => {
  const cases: [pattern: string, value: string, wordBoundary: boolean, expected: boolean][] = [
    ["lunc?*", "Lunch plans", false, true],
    ["lunc?*", "LUNCH", false, true],
    ["lunc?*", " lunch", false, false],
    ["lunc?*", "lunc", false, false],
    ["m.notice", "m.notice", false, true],
    ["m.notice", "mXnotice", false, false], // the dot is literal
    ["*", "", false, true],
    ["", "", false, true],
    ["", "x", false, false],
    ["a(b)+[c]", "a(b)+[c]", false, true], // regex metacharacters are literal
    ["ex*ple", "An example event.", true, true],
    ["ex*ple", "exple", true, true],
    ["ex*ple", "An exciting triple-whammy", true, true],
    ["ex*ple", "An examples", true, false], // must end at a word boundary
    ["cake", "I like cakes", true, false],
    ["cake", "cake!", true, true],
    ["cake", "pancake", true, false],
    ["cake", "multi\nline cake", true, true],
    ["a*b", "a\nb", false, true], // * matches newlines
    ["?", "😀", false, true], // ? is one character, even outside the BMP
  ];
  it.each(cases)("%j vs %j (word boundary %s) → %s", (pattern, value, wb, expected) => {
    expect(globMatches(pattern, value, wb)).toBe(expected);
  });
});

describe("dot-separated property paths", () => {
  it.each([
    ["content.body", ["content", "body"]],
    ["content.m\\.relates_to.rel_type", ["content", "m.relates_to", "rel_type"]],
    ["content.m\\\\foo", ["content", "m\\foo"]],
    ["content.m\\xfoo", ["content", "m\\xfoo"]],
    ["type", ["type"]],
  ])("%s", (path, parts) => expect(splitPropertyPath(path)).toEqual(parts));

  it("looks up nested values, not through arrays", () => {
    const ev = { content: { "m.relates_to": { rel_type: "m.replace" }, list: [{ a: 1 }] } };
    expect(lookupProperty(ev, "content.m\\.relates_to.rel_type")).toBe("m.replace");
    expect(lookupProperty(ev, "content.list.0.a")).toBeUndefined();
    expect(lookupProperty(ev, "content.missing.x")).toBeUndefined();
  });
});

describe("conditions", () => {
  const ev = msg({
    body: "hello Alice Liddell!",
    msgtype: "m.text",
    "m.federate": true,
    count: 3,
    nothing: null,
    float: 1.5,
    topic: null,
    "m.mentions": { user_ids: [ME, 7, { x: 1 }], room: true },
  });
  const cases: [name: string, cond: PushCondition, c: Partial<PushContext>, expected: boolean][] = [
    ["event_match type", { kind: "event_match", key: "type", pattern: "m.room.message" }, {}, true],
    ["event_match glob", { kind: "event_match", key: "content.msgtype", pattern: "m.*" }, {}, true],
    ["event_match absent key, even with *", { kind: "event_match", key: "content.absent", pattern: "*" }, {}, false],
    ["event_match non-string value", { kind: "event_match", key: "content.count", pattern: "*" }, {}, false],
    ["event_match null", { kind: "event_match", key: "content.topic", pattern: "*" }, {}, false],
    ["event_match body uses word boundaries", { kind: "event_match", key: "content.body", pattern: "alice" }, {}, true],
    ["event_match other keys are whole-value", { kind: "event_match", key: "content.msgtype", pattern: "text" }, {}, false],
    ["event_match missing pattern", { kind: "event_match", key: "type" }, {}, false],
    ["event_property_is true", { kind: "event_property_is", key: "content.m\\.federate", value: true }, {}, true],
    ["event_property_is no type casting", { kind: "event_property_is", key: "content.m\\.federate", value: "true" }, {}, false],
    ["event_property_is integer", { kind: "event_property_is", key: "content.count", value: 3 }, {}, true],
    ["event_property_is 1 is not true", { kind: "event_property_is", key: "content.count", value: 1 }, {}, false],
    ["event_property_is null", { kind: "event_property_is", key: "content.nothing", value: null }, {}, true],
    ["event_property_is absent is not null", { kind: "event_property_is", key: "content.absent", value: null }, {}, false],
    ["event_property_is float never matches", { kind: "event_property_is", key: "content.float", value: 1.5 }, {}, false],
    ["event_property_is compound value", { kind: "event_property_is", key: "content.m\\.mentions", value: {} }, {}, false],
    ["event_property_contains", { kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: ME }, {}, true],
    ["event_property_contains integer", { kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: 7 }, {}, true],
    ["event_property_contains partial", { kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: "@me" }, {}, false],
    ["event_property_contains not an array", { kind: "event_property_contains", key: "content.body", value: "hello" }, {}, false],
    ["contains_display_name", { kind: "contains_display_name" }, {}, true],
    ["contains_display_name case-insensitive", { kind: "contains_display_name" }, { displayName: "alice liddell" }, true],
    ["contains_display_name word boundary", { kind: "contains_display_name" }, { displayName: "Lid" }, false],
    ["contains_display_name without a name", { kind: "contains_display_name" }, { displayName: null }, false],
    ["contains_display_name with regex characters", { kind: "contains_display_name" }, { displayName: "Liddell." }, false],
    ["room_member_count ==", { kind: "room_member_count", is: "5" }, {}, true],
    ["room_member_count <", { kind: "room_member_count", is: "<5" }, {}, false],
    ["room_member_count <=", { kind: "room_member_count", is: "<=5" }, {}, true],
    ["room_member_count >", { kind: "room_member_count", is: ">4" }, {}, true],
    ["room_member_count malformed", { kind: "room_member_count", is: "five" }, {}, false],
    ["sender_notification_permission too low", { kind: "sender_notification_permission", key: "room" }, {}, false],
    ["sender_notification_permission enough", { kind: "sender_notification_permission", key: "room" }, { senderPowerLevel: 50 }, true],
    ["sender_notification_permission unknown key", { kind: "sender_notification_permission", key: "other" }, { senderPowerLevel: 100 }, false],
    ["unknown condition kind", { kind: "org.example.unknown" }, {}, false],
  ];
  it.each(cases)("%s", (_name, cond, c, expected) => {
    expect(conditionMatches(cond, ev, ctx(c))).toBe(expected);
  });

  it.each([
    ["2", 2, true],
    ["==2", 3, false],
    [">=3", 3, true],
    ["<10", 9, true],
    [">10", 10, false],
    ["=2", 2, false],
    ["", 0, false],
  ] as const)("room_member_count %j with %d members → %s", (is, n, expected) => {
    expect(memberCountMatches(is, n)).toBe(expected);
  });

  it("notification power levels default to room: 50 and read the room's values", () => {
    expect(notificationPowerLevels(undefined)).toEqual({ room: 50 });
    expect(notificationPowerLevels({ notifications: { room: 20, other: "30", bad: "x" } })).toEqual({ room: 20, other: 30 });
  });
});

describe("default rules", () => {
  const ruleset = buildRuleset(ME, [], []);
  const cases: [name: string, event: PushEvent, c: Partial<PushContext>, rule: string | null, notify?: boolean, highlight?: boolean][] = [
    ["plain message in a group", msg({ body: "hi", msgtype: "m.text" }), {}, ".m.rule.message", true, false],
    ["message in a 1:1 room", msg({ body: "hi" }), { memberCount: 2 }, ".m.rule.room_one_to_one", true, false],
    ["encrypted in a 1:1 room", { ...msg({}), type: "m.room.encrypted" }, { memberCount: 2 }, ".m.rule.encrypted_room_one_to_one", true],
    ["encrypted in a group", { ...msg({}), type: "m.room.encrypted" }, {}, ".m.rule.encrypted", true],
    ["notice", msg({ body: "bot", msgtype: "m.notice" }), {}, ".m.rule.suppress_notices", false],
    ["mention", msg({ body: "hey", "m.mentions": { user_ids: [ME] } }), {}, ".m.rule.is_user_mention", true, true],
    ["room mention by a moderator", msg({ body: "all", "m.mentions": { room: true } }), { senderPowerLevel: 50 }, ".m.rule.is_room_mention", true, true],
    ["room mention by anyone", msg({ body: "all", "m.mentions": { room: true } }), {}, ".m.rule.message", true, false],
    ["body mentioning the display name is not a mention (v1.17)", msg({ body: "Alice Liddell" }), {}, ".m.rule.message", true, false],
    ["invite for me", { type: "m.room.member", state_key: ME, sender: "@x:y", content: { membership: "invite" } }, {}, ".m.rule.invite_for_me", true],
    ["someone else's invite", { type: "m.room.member", state_key: "@z:y", sender: "@x:y", content: { membership: "invite" } }, {}, ".m.rule.member_event", false],
    ["tombstone", { type: "m.room.tombstone", state_key: "", sender: "@x:y", content: {} }, {}, ".m.rule.tombstone", true, true],
    ["tombstone-typed message event", { type: "m.room.tombstone", sender: "@x:y", content: {} }, {}, null],
    ["reaction", { type: "m.reaction", sender: "@x:y", content: {} }, {}, ".m.rule.reaction", false],
    ["server ACL", { type: "m.room.server_acl", state_key: "", sender: "@x:y", content: {} }, {}, ".m.rule.room.server_acl", false],
    ["edit", msg({ body: "* fixed", "m.relates_to": { rel_type: "m.replace", event_id: "$a" } }), {}, ".m.rule.suppress_edits", false],
    ["call invite", { type: "m.call.invite", sender: "@x:y", content: {} }, {}, ".m.rule.call", true],
    ["unmatched event", { type: "m.room.topic", state_key: "", sender: "@x:y", content: { topic: "t" } }, {}, null],
    ["own event", msg({ body: "hi" }, { sender: ME }), {}, null],
  ];
  it.each(cases)("%s", (_name, event, c, rule, notify, highlight) => {
    const m = evaluatePushRules(ruleset, event, ctx(c));
    expect(m?.ruleId ?? null).toBe(rule);
    if (notify !== undefined) expect(m?.notify).toBe(notify);
    if (highlight !== undefined) expect(m?.highlight).toBe(highlight);
  });

  it("the master rule, once enabled, silences everything", () => {
    const rs = buildRuleset(ME, [], [{ kind: "override", rule_id: ".m.rule.master", enabled: true }]);
    const m = evaluatePushRules(rs, msg({ body: "hi", "m.mentions": { user_ids: [ME] } }), ctx());
    expect(m).toMatchObject({ ruleId: ".m.rule.master", notify: false });
  });

  it("settings change a default rule's actions and enabled flag", () => {
    const rs = buildRuleset(ME, [], [
      { kind: "underride", rule_id: ".m.rule.message", actions: [] },
      { kind: "override", rule_id: ".m.rule.suppress_notices", enabled: false },
    ]);
    expect(evaluatePushRules(rs, msg({ body: "hi" }), ctx())).toMatchObject({ ruleId: ".m.rule.message", notify: false });
    expect(evaluatePushRules(rs, msg({ body: "n", msgtype: "m.notice" }), ctx())).toMatchObject({ ruleId: ".m.rule.message" });
  });
});

describe("user rules", () => {
  const rules: UserRule[] = [
    { kind: "content", rule_id: "tea", enabled: true, pattern: "tea", actions: ["notify", { set_tweak: "sound", value: "tea.wav" }] },
    { kind: "content", rule_id: "time", enabled: true, pattern: "time", actions: ["notify"] },
    { kind: "room", rule_id: "!quiet:test.local", enabled: true, actions: [] },
    { kind: "sender", rule_id: "@spam:test.local", enabled: true, actions: [] },
    { kind: "override", rule_id: "beer", enabled: true, conditions: [{ kind: "event_match", key: "content.body", pattern: "beer" }, { kind: "room_member_count", is: "<=10" }], actions: ["notify", { set_tweak: "highlight", value: false }] },
    { kind: "underride", rule_id: "off", enabled: false, conditions: [], actions: ["notify"] },
  ];
  const rs = buildRuleset(ME, rules, []);

  it("orders kinds override, content, room, sender, underride; user rules before defaults", () => {
    expect(rs.override.map((r) => r.rule_id).slice(0, 3)).toEqual([".m.rule.master", "beer", ".m.rule.suppress_notices"]);
    expect(rs.content.map((r) => r.rule_id)).toEqual(["tea", "time"]);
    expect(rs.underride[0]).toEqual({ rule_id: "off", default: false, enabled: false, conditions: [], actions: ["notify"] });
    expect(rs.room[0]).toEqual({ rule_id: "!quiet:test.local", default: false, enabled: true, actions: [] });
    expect(rs.content[0]).toMatchObject({ pattern: "tea", default: false });
  });

  it.each([
    ["the first matching content rule wins", msg({ body: "It's time for tea" }), "tea", "tea.wav"],
    ["override before content", msg({ body: "tea and beer" }), "beer", undefined],
    ["room rule", msg({ body: "hello" }, { room_id: "!quiet:test.local" }), "!quiet:test.local", undefined],
    ["content before room", msg({ body: "time" }, { room_id: "!quiet:test.local" }), "time", undefined],
    ["sender rule", msg({ body: "buy" }, { sender: "@spam:test.local" }), "@spam:test.local", undefined],
    ["disabled rules never match", { type: "m.room.topic", sender: "@x:y", content: {} }, null, undefined],
  ] as const)("%s", (_n, event, rule, sound) => {
    const m = evaluatePushRules(rs, event, ctx());
    expect(m?.ruleId ?? null).toBe(rule);
    expect(m?.sound).toBe(sound);
  });

  it("highlight: false is not a highlight", () => {
    expect(evaluatePushRules(rs, msg({ body: "beer" }), ctx())).toMatchObject({ ruleId: "beer", notify: true, highlight: false });
  });
});

describe("parsing client rules", () => {
  it("strips historical actions and rejects unknown ones", () => {
    expect(parseActions(["notify", "dont_notify", "coalesce", { set_tweak: "sound", value: "x" }])).toEqual([
      "notify",
      { set_tweak: "sound", value: "x" },
    ]);
    expect(() => parseActions(["explode"])).toThrow(PushRuleInputError);
    expect(() => parseActions([{ value: 1 }])).toThrow(PushRuleInputError);
    expect(() => parseActions("notify")).toThrow(PushRuleInputError);
  });

  it.each([
    ["override", ".reserved", { actions: [] }],
    ["override", "a/b", { actions: [] }],
    ["override", "a\\b", { actions: [] }],
    ["override", "x", {}],
    ["override", "x", { actions: [], conditions: "no" }],
    ["override", "x", { actions: [], conditions: [{ key: "type" }] }],
    ["content", "x", { actions: [] }],
    ["room", "not-a-room", { actions: [] }],
    ["sender", "not-a-user", { actions: [] }],
  ] as const)("rejects %s rule %j with %j", (kind, id, body) => {
    expect(() => parseRuleBody(kind, id, body as Record<string, unknown>)).toThrow(PushRuleInputError);
  });

  it("accepts override rules without conditions (they match everything)", () => {
    expect(parseRuleBody("override", "all", { actions: ["notify"] })).toEqual({
      kind: "override", rule_id: "all", enabled: true, actions: ["notify"], conditions: [],
    });
  });
});
