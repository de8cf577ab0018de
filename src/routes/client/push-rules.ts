/**
 * Push rules and pushers (https://spec.matrix.org/v1.19/client-server-api/#push-rules-api,
 * #post_matrixclientv3pushersset):
 *   GET /pushrules/, GET /pushrules/global/, GET /pushrules/global/{kind}/
 *   GET/PUT/DELETE /pushrules/global/{kind}/{ruleId} (PUT with ?before= / ?after=)
 *   GET/PUT /pushrules/global/{kind}/{ruleId}/enabled and …/actions
 *   GET /pushers, POST /pushers/set
 * Rules live in the user's UserDO (durable-objects/user/push-rules.ts), which republishes them as the
 * `m.push_rules` account data on every change. Pushers are stored in D1 (src/push/pushers.ts); notifications are
 * sent to `http` pushers by the user's UserDO (docs/push.md).
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { badJson, invalidParam, MatrixError } from "../../http/errors";
import { readJsonObject } from "../../http/json";
import { unwrap } from "../../e2ee/result";
import { isRuleKind, type PushRule, type RuleKind, type Ruleset } from "../../push/types";
import { parseActions, parseRuleBody, PushRuleInputError } from "../../push/ruleset";
import { applyPusherRequest, listPushers, parsePusherRequest } from "../../push/pushers";

export const pushRuleRoutes = new Hono<AppEnv>();
pushRuleRoutes.use("/pushrules", requireAuth);
pushRuleRoutes.use("/pushrules/*", requireAuth);
pushRuleRoutes.use("/pushers", requireAuth);
pushRuleRoutes.use("/pushers/*", requireAuth);

function me(c: AppContext) {
  const userId = c.get("requester").userId;
  return { userId, user: c.env.USERS.get(c.env.USERS.idFromName(userId)) };
}

function kindParam(c: AppContext): RuleKind {
  const kind = c.req.param("kind")!;
  if (!isRuleKind(kind)) throw invalidParam(`Unknown push rule kind ${JSON.stringify(kind)}`);
  return kind;
}

/** Runs push rule input parsing, turning its errors into Matrix errors. */
function input<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PushRuleInputError) throw new MatrixError(400, e.errcode, e.message);
    throw e;
  }
}

async function ruleset(c: AppContext): Promise<Ruleset> {
  const { userId, user } = me(c);
  return JSON.parse(await user.pushRules(userId)) as Ruleset;
}

/** The rule named by the path, or 404. */
async function getRule(c: AppContext): Promise<PushRule> {
  const { userId, user } = me(c);
  return JSON.parse(unwrap(await user.getPushRule(userId, kindParam(c), c.req.param("ruleId")!))) as PushRule;
}

pushRuleRoutes.get("/pushrules", async (c) => c.json({ global: await ruleset(c) }));
pushRuleRoutes.get("/pushrules/", async (c) => c.json({ global: await ruleset(c) }));
pushRuleRoutes.get("/pushrules/global/", async (c) => c.json(await ruleset(c)));
pushRuleRoutes.get("/pushrules/global/:kind/", async (c) => {
  const kind = kindParam(c);
  return c.json((await ruleset(c))[kind]);
});

pushRuleRoutes.get("/pushrules/global/:kind/:ruleId", async (c) => {
  const { userId, user } = me(c);
  return c.json(await getRule(c));
});

pushRuleRoutes.put("/pushrules/global/:kind/:ruleId", async (c) => {
  const { userId, user } = me(c);
  const kind = kindParam(c);
  const body = await readJsonObject(c);
  const rule = input(() => parseRuleBody(kind, c.req.param("ruleId"), body));
  const before = c.req.query("before") || null;
  const after = c.req.query("after") || null;
  unwrap(await user.putPushRule(userId, rule, before, after));
  return c.json({});
});

pushRuleRoutes.delete("/pushrules/global/:kind/:ruleId", async (c) => {
  const { userId, user } = me(c);
  unwrap(await user.deletePushRule(userId, kindParam(c), c.req.param("ruleId")));
  return c.json({});
});

pushRuleRoutes.get("/pushrules/global/:kind/:ruleId/enabled", async (c) => {
  return c.json({ enabled: (await getRule(c)).enabled });
});

pushRuleRoutes.put("/pushrules/global/:kind/:ruleId/enabled", async (c) => {
  const { userId, user } = me(c);
  const kind = kindParam(c);
  const body = await readJsonObject(c);
  if (typeof body.enabled !== "boolean") throw badJson("'enabled' must be a boolean");
  unwrap(await user.setPushRuleAttribute(userId, kind, c.req.param("ruleId"), { enabled: body.enabled }));
  return c.json({});
});

pushRuleRoutes.get("/pushrules/global/:kind/:ruleId/actions", async (c) => {
  return c.json({ actions: (await getRule(c)).actions });
});

pushRuleRoutes.put("/pushrules/global/:kind/:ruleId/actions", async (c) => {
  const { userId, user } = me(c);
  const kind = kindParam(c);
  const body = await readJsonObject(c);
  if (!("actions" in body)) throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'actions'");
  const actions = input(() => parseActions(body.actions));
  unwrap(await user.setPushRuleAttribute(userId, kind, c.req.param("ruleId"), { actions }));
  return c.json({});
});

// --- pushers ---

pushRuleRoutes.get("/pushers", async (c) => c.json({ pushers: await listPushers(c.env.DB, c.get("requester").userId) }));

pushRuleRoutes.post("/pushers/set", async (c) => {
  const { userId, deviceId } = c.get("requester");
  const req = parsePusherRequest(await readJsonObject(c));
  await applyPusherRequest(c.env.DB, userId, deviceId, req);
  return c.json({});
});
