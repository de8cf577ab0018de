/**
 * Application-service registrations (https://spec.matrix.org/v1.19/application-service-api/#registration),
 * read from the `APPSERVICE_REGISTRATIONS` variable: one or more YAML documents separated by `---` (a document
 * may also be a list of registrations). Parsed once per isolate by src/config.ts; any problem is a ConfigError
 * naming the registration and the field, so the server refuses to run half-configured.
 *
 * Namespace regexes follow Synapse's reading: Python's `re.match`, i.e. anchored at the start of the string
 * only. They are compiled as JavaScript regexes (`^(?:…)`); Python-only syntax such as `(?P<name>…)` is refused.
 */
import { parseAllDocuments } from "yaml";
import { ConfigError } from "../config";
import { isValidUserId } from "../protocol/identifiers";

export interface Namespace {
  exclusive: boolean;
  /** The regex as written in the registration. */
  source: string;
  regex: RegExp;
}

export interface AppService {
  id: string;
  /** Base URL without a trailing slash; null: the appservice receives no pushes and no queries. */
  url: string | null;
  asToken: string;
  hsToken: string;
  senderLocalpart: string;
  /** `@sender_localpart:server_name` */
  sender: string;
  namespaces: { users: Namespace[]; aliases: Namespace[]; rooms: Namespace[] };
  /** Whether requests of masqueraded users are rate-limited (default true; the sender never is). */
  rateLimited: boolean;
  protocols: string[];
  /** MSC2409 / spec v1.13: typing, receipts (and presence) in `ephemeral` (`receive_ephemeral`, or the
   *  unstable `de.sorunome.msc2409.push_ephemeral`). */
  receiveEphemeral: boolean;
  /** MSC2409 to-device messages for the appservice's users (`push_to_device`; defaults to `receiveEphemeral`). */
  pushToDevice: boolean;
  /** MSC3202: device-list changes, one-time-key counts and unused fallback keys of its users (`org.matrix.msc3202`). */
  msc3202: boolean;
  /** Also send `?access_token=<hs_token>` (legacy, pre-v1.4 appservices; `legacy_access_token_query: true`). */
  legacyAccessTokenQuery: boolean;
}

const NAMESPACE_KINDS = ["users", "aliases", "rooms"] as const;

/** Parses and validates every registration in `text` (empty or absent: none). */
export function parseRegistrations(text: string | undefined, serverName: string): AppService[] {
  if (text === undefined || String(text).trim() === "") return [];
  const docs = parseAllDocuments(String(text));
  const raw: unknown[] = [];
  for (const [i, doc] of (Array.isArray(docs) ? docs : [docs]).entries()) {
    if (doc.errors.length > 0) {
      throw new ConfigError(`APPSERVICE_REGISTRATIONS document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue; // an empty document (e.g. a trailing ---)
    if (Array.isArray(value)) raw.push(...(value as unknown[]));
    else raw.push(value);
  }
  const out: AppService[] = [];
  const seen = { id: new Map<string, number>(), as: new Map<string, string>(), hs: new Map<string, string>() };
  for (const [i, r] of raw.entries()) {
    const as = parseRegistration(r, serverName, i + 1);
    if (seen.id.has(as.id)) throw new ConfigError(`APPSERVICE_REGISTRATIONS: the id ${JSON.stringify(as.id)} is used twice`);
    seen.id.set(as.id, i);
    const dupAs = seen.as.get(as.asToken);
    if (dupAs !== undefined) throw new ConfigError(`APPSERVICE_REGISTRATIONS: appservices ${JSON.stringify(dupAs)} and ${JSON.stringify(as.id)} share an as_token`);
    seen.as.set(as.asToken, as.id);
    const dupHs = seen.hs.get(as.hsToken);
    if (dupHs !== undefined) throw new ConfigError(`APPSERVICE_REGISTRATIONS: appservices ${JSON.stringify(dupHs)} and ${JSON.stringify(as.id)} share an hs_token`);
    seen.hs.set(as.hsToken, as.id);
    out.push(as);
  }
  return out;
}

function parseRegistration(r: unknown, serverName: string, n: number): AppService {
  const where = (field: string, id?: string) => `APPSERVICE_REGISTRATIONS registration ${id !== undefined ? JSON.stringify(id) : `#${n}`}: ${field}`;
  if (typeof r !== "object" || r === null || Array.isArray(r)) throw new ConfigError(`${where("")}must be a mapping`);
  const o = r as Record<string, unknown>;
  const str = (field: string, id?: string): string => {
    const v = o[field];
    if (typeof v !== "string" || v === "") throw new ConfigError(`${where(`'${field}'`, id)} is required and must be a non-empty string`);
    return v;
  };
  const id = str("id");
  const bool = (field: string, fallback: boolean): boolean => {
    const v = o[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") throw new ConfigError(`${where(`'${field}'`, id)} must be true or false`);
    return v;
  };
  const asToken = str("as_token", id);
  const hsToken = str("hs_token", id);
  const senderLocalpart = str("sender_localpart", id);
  const sender = `@${senderLocalpart}:${serverName}`;
  // As Synapse: only characters that need no URL encoding (the sender appears in request paths).
  if (!/^[A-Za-z0-9_.~/-]+$/.test(senderLocalpart) || !isValidUserId(sender)) throw new ConfigError(`${where("'sender_localpart'", id)} does not make a valid user ID (${sender})`);

  // `url` must be present: a string, or an explicit null for "no traffic" (so a typo cannot silently turn pushes off).
  if (!("url" in o)) throw new ConfigError(`${where("'url'", id)} is required (a URL, or null for no pushes)`);
  let url: string | null = null;
  if (o.url !== null) {
    if (typeof o.url !== "string") throw new ConfigError(`${where("'url'", id)} must be a URL or null`);
    let parsed: URL;
    try {
      parsed = new URL(o.url);
    } catch {
      throw new ConfigError(`${where("'url'", id)} is not a URL: ${JSON.stringify(o.url)}`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new ConfigError(`${where("'url'", id)} must be an http(s) URL`);
    url = o.url.replace(/\/+$/, "");
  }

  const ns = o.namespaces;
  if (typeof ns !== "object" || ns === null || Array.isArray(ns)) throw new ConfigError(`${where("'namespaces'", id)} is required and must be a mapping`);
  const namespaces = { users: [] as Namespace[], aliases: [] as Namespace[], rooms: [] as Namespace[] };
  for (const kind of NAMESPACE_KINDS) {
    const list = (ns as Record<string, unknown>)[kind];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw new ConfigError(`${where(`'namespaces.${kind}'`, id)} must be a list`);
    for (const [j, entry] of list.entries()) {
      const at = `'namespaces.${kind}[${j}]'`;
      if (typeof entry !== "object" || entry === null) throw new ConfigError(`${where(at, id)} must be a mapping with 'exclusive' and 'regex'`);
      const e = entry as Record<string, unknown>;
      if (typeof e.exclusive !== "boolean") throw new ConfigError(`${where(`${at}.exclusive`, id)} must be true or false`);
      if (typeof e.regex !== "string") throw new ConfigError(`${where(`${at}.regex`, id)} must be a string`);
      let regex: RegExp;
      try {
        regex = new RegExp(`^(?:${e.regex})`);
      } catch (err) {
        throw new ConfigError(`${where(`${at}.regex`, id)} is not a valid regular expression: ${(err as Error).message}`);
      }
      namespaces[kind].push({ exclusive: e.exclusive, source: e.regex, regex });
    }
  }

  let protocols: string[] = [];
  if (o.protocols !== undefined && o.protocols !== null) {
    if (!Array.isArray(o.protocols) || !o.protocols.every((p) => typeof p === "string" && p !== "")) {
      throw new ConfigError(`${where("'protocols'", id)} must be a list of protocol names`);
    }
    protocols = [...new Set(o.protocols as string[])];
  }

  const receiveEphemeral = bool("receive_ephemeral", false) || bool("de.sorunome.msc2409.push_ephemeral", false);
  const explicitToDevice = o.push_to_device ?? o["org.matrix.msc2409.push_to_device"];
  const pushToDevice =
    explicitToDevice === undefined ? receiveEphemeral : bool(o.push_to_device !== undefined ? "push_to_device" : "org.matrix.msc2409.push_to_device", false);
  return {
    id,
    url,
    asToken,
    hsToken,
    senderLocalpart,
    sender,
    namespaces,
    rateLimited: bool("rate_limited", true),
    protocols,
    receiveEphemeral,
    pushToDevice,
    msc3202: bool("org.matrix.msc3202", false),
    legacyAccessTokenQuery: bool("legacy_access_token_query", false),
  };
}
