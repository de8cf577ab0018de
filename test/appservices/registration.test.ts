/** Registration parsing (src/appservices/registration.ts) and what a bad one does to the server. */
import { describe, expect, it } from "vitest";
import { parseRegistrations } from "../../src/appservices/registration";
import { AppServiceRegistry } from "../../src/appservices/registry";
import { ConfigError } from "../../src/config";
import { requestWithEnv } from "../client/accounts-helpers";

const S = "example.org";
const base = (extra = "") => `
id: irc
url: "http://127.0.0.1:9000/"
as_token: at
hs_token: ht
sender_localpart: _irc_bot
namespaces:
  users: [{ exclusive: true, regex: "@_irc_.*" }]
${extra}`;

function refused(text: string, message: RegExp): void {
  let error: unknown;
  try {
    parseRegistrations(text, S);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as Error).message).toMatch(message);
}

describe("parsing registrations", () => {
  it("reads one registration with defaults", () => {
    const [as] = parseRegistrations(base(), S);
    expect(as).toMatchObject({
      id: "irc",
      url: "http://127.0.0.1:9000",
      asToken: "at",
      hsToken: "ht",
      sender: "@_irc_bot:example.org",
      rateLimited: true,
      protocols: [],
      receiveEphemeral: false,
      pushToDevice: false,
      msc3202: false,
      legacyAccessTokenQuery: false,
    });
    expect(as!.namespaces.users).toHaveLength(1);
    expect(as!.namespaces.aliases).toEqual([]);
  });

  it("reads several documents separated by ---, a list document, and skips empty ones", () => {
    const text = `${base()}\n---\n- id: b\n  url: null\n  as_token: a2\n  hs_token: h2\n  sender_localpart: b\n  namespaces: {}\n---\n`;
    const all = parseRegistrations(text, S);
    expect(all.map((a) => a.id)).toEqual(["irc", "b"]);
    expect(all[1]!.url).toBeNull();
    expect(parseRegistrations("", S)).toEqual([]);
    expect(parseRegistrations(undefined, S)).toEqual([]);
  });

  it("reads the flags: rate_limited, protocols, ephemeral (stable and unstable), to-device, MSC3202, legacy token", () => {
    const [a] = parseRegistrations(base("rate_limited: false\nprotocols: [irc, irc, matrix]\nreceive_ephemeral: true\norg.matrix.msc3202: true\nlegacy_access_token_query: true"), S);
    expect(a).toMatchObject({ rateLimited: false, protocols: ["irc", "matrix"], receiveEphemeral: true, pushToDevice: true, msc3202: true, legacyAccessTokenQuery: true });
    const [b] = parseRegistrations(base("de.sorunome.msc2409.push_ephemeral: true\npush_to_device: false"), S);
    expect(b).toMatchObject({ receiveEphemeral: true, pushToDevice: false });
    const [c] = parseRegistrations(base("push_to_device: true"), S);
    expect(c).toMatchObject({ receiveEphemeral: false, pushToDevice: true });
  });

  it("anchors regexes at the start only, as Python's re.match", () => {
    const [as] = parseRegistrations(base(), S);
    const registry = new AppServiceRegistry([as!], S);
    expect(registry.controlsUser(as!, "@_irc_alice:example.org")).toBe(true);
    expect(registry.controlsUser(as!, "@x_irc_alice:example.org")).toBe(false);
    expect(registry.controlsUser(as!, "@_irc_bot:example.org")).toBe(true); // the sender
    expect(registry.controlsUser(as!, "@_irc_alice:elsewhere.org")).toBe(false); // users namespaces are local only
    expect(registry.exclusiveUserOwner("@_irc_x:example.org")?.id).toBe("irc");
    expect(registry.exclusiveUserOwner("@_irc_x:example.org", as)).toBeUndefined();
  });

  it("refuses bad registrations with a message naming the field", () => {
    refused("id: [", /not valid YAML/);
    refused("- 1", /must be a mapping/);
    refused(base().replace("id: irc", ""), /'id' is required/);
    refused(base().replace('url: "http://127.0.0.1:9000/"', ""), /'url' is required/);
    refused(base().replace('"http://127.0.0.1:9000/"', "ftp://x"), /http\(s\) URL/);
    refused(base().replace('"http://127.0.0.1:9000/"', "not a url"), /not a URL/);
    refused(base().replace("as_token: at", "as_token: 5"), /'as_token'/);
    refused(base().replace("hs_token: ht", ""), /'hs_token'/);
    refused(base().replace("_irc_bot", '"bad user"'), /sender_localpart/);
    refused(base().replace('users: [{ exclusive: true, regex: "@_irc_.*" }]', "users: {}"), /namespaces.users' must be a list/);
    refused(base().replace("exclusive: true", 'exclusive: "yes"'), /exclusive' must be true or false|\.exclusive must be true or false/);
    refused(base().replace('"@_irc_.*"', '"(?P<x>a)"'), /not a valid regular expression/);
    refused(base().replace("namespaces:\n  users", "namespace:\n  users"), /'namespaces' is required/);
    refused(base("rate_limited: maybe"), /'rate_limited' must be true or false/);
    refused(base("protocols: irc"), /'protocols' must be a list/);
    refused(base("org.matrix.msc3202: 1"), /'org.matrix.msc3202' must be true or false/);
  });

  it("refuses duplicate ids, as_tokens and hs_tokens", () => {
    const other = (id: string, at: string, ht: string) => `\n---\n${base().replace("id: irc", `id: ${id}`).replace("as_token: at", `as_token: ${at}`).replace("hs_token: ht", `hs_token: ${ht}`)}`;
    refused(base() + other("irc", "a2", "h2"), /id "irc" is used twice/);
    refused(base() + other("two", "at", "h2"), /share an as_token/);
    refused(base() + other("two", "a2", "ht"), /share an hs_token/);
    expect(parseRegistrations(base() + other("two", "a2", "h2"), S)).toHaveLength(2);
  });
});

describe("a bad APPSERVICE_REGISTRATIONS", () => {
  it("fails every request with a 500 that names the problem", async () => {
    for (const path of ["/_matrix/client/versions", "/_matrix/client/v3/login", "/_matrix/key/v2/server"]) {
      const res = await requestWithEnv({ APPSERVICE_REGISTRATIONS: "id: x\nurl: null\n" }, "GET", path);
      expect(res.status).toBe(500);
      const body = (await res.json()) as { errcode: string; error: string };
      expect(body.errcode).toBe("M_UNKNOWN");
      expect(body.error).toMatch(/Invalid configuration: APPSERVICE_REGISTRATIONS registration "x": 'as_token' is required/);
    }
  });
});
