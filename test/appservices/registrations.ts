/**
 * The appservices registered with the test homeserver (`test.local`): vitest.config.ts passes this text as
 * APPSERVICE_REGISTRATIONS. Their namespaces start with `_as` prefixes no other test uses, so other suites'
 * rooms and users never interest them. Requests to their URLs never leave the isolate: the tests install a
 * transport (src/appservices/transport.ts `setAppserviceFetch`).
 */
export const TEST_APPSERVICE_REGISTRATIONS = `
# A bridge: exclusive users and aliases, ephemeral data, to-device, MSC3202, protocols, not rate-limited.
id: bridge
url: http://bridge.as.test/base/
as_token: as-token-bridge
hs_token: hs-token-bridge
sender_localpart: _asb_bot
rate_limited: false
receive_ephemeral: true
org.matrix.msc3202: true
protocols: [chat, irc]
namespaces:
  users:
    - exclusive: true
      regex: "@_asb_.*:test\\\\.local"
  aliases:
    - exclusive: true
      regex: "#_asb_.*:test\\\\.local"
  rooms: []
---
# An observer: non-exclusive users, rooms by ID prefix, rate-limited, legacy access_token query, protocol irc too.
id: observer
url: http://observer.as.test
as_token: as-token-observer
hs_token: hs-token-observer
sender_localpart: _aso_bot
legacy_access_token_query: true
protocols: [irc]
namespaces:
  users:
    - exclusive: false
      regex: "@_aso_.*"
  aliases:
    - exclusive: false
      regex: "#_aso_.*"
  rooms:
    - exclusive: false
      regex: "!asobserved"
---
# Fault and load tests: one appservice each, so their transaction ids and counters are their own.
id: faulty
url: http://faulty.as.test
as_token: as-token-faulty
hs_token: hs-token-faulty
sender_localpart: _asf_bot
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: "@_asf_.*"
---
id: bulk
url: http://bulk.as.test
as_token: as-token-bulk
hs_token: hs-token-bulk
sender_localpart: _asl_bot
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: "@_asl_.*"
---
# No URL: can act through the client API, receives nothing. Also reserves names ordinary users could pick.
id: silent
url: null
as_token: as-token-silent
hs_token: hs-token-silent
sender_localpart: _ass_bot
namespaces:
  users:
    - exclusive: true
      regex: "@_ass_.*"
    - exclusive: true
      regex: "@reserved_.*"
  aliases:
    - exclusive: true
      regex: "#reserved_.*"
`;
