/**
 * Third-party networks (https://spec.matrix.org/v1.19/client-server-api/#third-party-networks): the homeserver
 * forwards each lookup to the application services that registered the protocol (`protocols` in their
 * registration) and merges what they answer. An appservice that fails or answers nonsense is left out (logged),
 * as Synapse does, so one broken bridge does not break the others.
 *
 * - GET /thirdparty/protocols, /thirdparty/protocol/{protocol}: each appservice's
 *   `GET /_matrix/app/v1/thirdparty/protocol/{protocol}`; the first answer's metadata, with the `instances` of
 *   all of them, each given `instance_id` = `{appservice id}|{network_id}` (Synapse's format).
 * - GET /thirdparty/location/{protocol}, /thirdparty/user/{protocol}: every query parameter is a search field,
 *   passed on; results concatenated. Unknown protocol: 404 M_NOT_FOUND.
 * - GET /thirdparty/location?alias=, /thirdparty/user?userid=: asked of every appservice with protocols.
 */
import { Hono } from "hono";
import type { AppContext, AppEnv } from "../../http/app";
import { requireAuth } from "../../http/auth";
import { missingParam, notFound } from "../../http/errors";
import { getConfig } from "../../config";
import type { AppService } from "../../appservices/registration";
import { callAppservice } from "../../appservices/transport";

export const thirdPartyRoutes = new Hono<AppEnv>();

const LOOKUP_TIMEOUT_MS = 10_000;
type Json = Record<string, unknown>;

async function getFrom(as: AppService, path: string, query: Record<string, string[]>): Promise<unknown> {
  try {
    const res = await callAppservice(as, { method: "GET", path, query, timeoutMs: LOOKUP_TIMEOUT_MS });
    const text = res.text;
    if (!res.ok) {
      console.warn(`appservice ${as.id}: GET ${path}: HTTP ${res.status}`);
      return undefined;
    }
    return JSON.parse(text) as unknown;
  } catch (e) {
    console.warn(`appservice ${as.id}: GET ${path} failed: ${String((e as Error)?.message ?? e)}`);
    return undefined;
  }
}

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** One appservice's metadata for a protocol, with instance IDs; undefined if it failed or is malformed. */
async function protocolFrom(as: AppService, protocol: string): Promise<Json | undefined> {
  const info = await getFrom(as, `/_matrix/app/v1/thirdparty/protocol/${encodeURIComponent(protocol)}`, {});
  if (!isObject(info) || !Array.isArray(info.instances)) return undefined;
  const instances = info.instances.filter(isObject).map((i) => {
    const network = i.network_id;
    return typeof network === "string" ? { ...i, instance_id: `${as.id}|${network}` } : i;
  });
  return { ...info, instances };
}

/** Merged metadata of `protocol` from the appservices that registered it, or undefined if none answered. */
async function protocolMetadata(c: AppContext, protocol: string): Promise<Json | undefined> {
  const services = getConfig(c.env).appservices.forProtocol(protocol).filter((s) => s.url !== null);
  const infos = (await Promise.all(services.map((s) => protocolFrom(s, protocol)))).filter((i): i is Json => i !== undefined);
  if (infos.length === 0) return undefined;
  return { ...infos[0], instances: infos.flatMap((i) => i.instances as unknown[]) };
}

thirdPartyRoutes.get("/thirdparty/protocols", requireAuth, async (c) => {
  const protocols = [...new Set(getConfig(c.env).appservices.all.filter((s) => s.url !== null).flatMap((s) => s.protocols))];
  const out: Json = {};
  await Promise.all(
    protocols.map(async (p) => {
      const info = await protocolMetadata(c, p);
      if (info) out[p] = info;
    }),
  );
  return c.json(out);
});

thirdPartyRoutes.get("/thirdparty/protocol/:protocol", requireAuth, async (c) => {
  const protocol = c.req.param("protocol");
  const info = await protocolMetadata(c, protocol);
  if (!info) throw notFound(`The protocol ${protocol} is unknown`);
  return c.json(info);
});

/** The search fields of a lookup: every query parameter (`access_token` and appservice parameters aside). */
function fieldsOf(c: AppContext): Record<string, string[]> {
  const all = c.req.queries();
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(all)) if (!["access_token", "user_id", "device_id", "org.matrix.msc3202.device_id"].includes(k)) out[k] = v;
  return out;
}

/** Results of `kind` lookups: a list of objects naming the protocol, a fields object and the key field. */
function validResults(value: unknown, key: "alias" | "userid", protocol?: string): Json[] {
  if (!Array.isArray(value)) return [];
  return value.filter(
    (r): r is Json =>
      isObject(r) &&
      typeof r[key] === "string" &&
      typeof r.protocol === "string" &&
      (protocol === undefined || r.protocol === protocol) &&
      isObject(r.fields),
  );
}

function lookupRoutes(kind: "location" | "user", key: "alias" | "userid") {
  thirdPartyRoutes.get(`/thirdparty/${kind}/:protocol`, requireAuth, async (c) => {
    const protocol = c.req.param("protocol");
    const services = getConfig(c.env).appservices.forProtocol(protocol).filter((s) => s.url !== null);
    if (services.length === 0) throw notFound(`The protocol ${protocol} is unknown`);
    const fields = fieldsOf(c);
    const results = await Promise.all(
      services.map(async (s) => validResults(await getFrom(s, `/_matrix/app/v1/thirdparty/${kind}/${encodeURIComponent(protocol)}`, fields), key, protocol)),
    );
    return c.json(results.flat());
  });
  thirdPartyRoutes.get(`/thirdparty/${kind}`, requireAuth, async (c) => {
    const value = c.req.query(key);
    if (value === undefined) throw missingParam(`Missing '${key}' query parameter`);
    const services = getConfig(c.env).appservices.all.filter((s) => s.url !== null && s.protocols.length > 0);
    const results = await Promise.all(
      services.map(async (s) => validResults(await getFrom(s, `/_matrix/app/v1/thirdparty/${kind}`, { [key]: [value] }), key)),
    );
    return c.json(results.flat());
  });
}
lookupRoutes("location", "alias");
lookupRoutes("user", "userid");
