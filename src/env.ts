/**
 * The Worker's bindings and variables (wrangler.toml `[vars]`, secrets, `--var` on the command line).
 * Parsed and validated once by `config.ts`; code reads `Config`, not raw strings.
 */
import type { RoomDO } from "../durable-objects/room/RoomDO";
import type { UserDO } from "../durable-objects/user/UserDO";
import type { DestinationDO } from "../durable-objects/destination/DestinationDO";
import type { RateLimiterDO } from "../durable-objects/rate-limiter/RateLimiterDO";
import type { AppServiceDO } from "../durable-objects/appservice/AppServiceDO";

export interface Env {
  /** The server name that appears in user IDs and signatures, e.g. `example.org` or `localhost:8787`. */
  SERVER_NAME: string;
  /** Synapse's format: `ed25519 <version> <unpadded base64 seed>`. Generated and persisted in D1 when absent. */
  SIGNING_KEY?: string;
  /** JSON object mapping server names to base URLs, used instead of server discovery. */
  FEDERATION_OVERRIDES?: string;
  /** Enables Synapse-compatible shared-secret registration when set. */
  REGISTRATION_SHARED_SECRET?: string;
  /** "true" to allow open registration through `/register`. */
  ENABLE_REGISTRATION?: string;
  /** More forward extremities than this make a room merge them with a dummy event (default 10). */
  DUMMY_EVENT_THRESHOLD?: string;
  // --- accounts and authentication (docs/accounts.md) ---
  /** JSON rate-limit overrides: `{"login_address": {"per_second": 0.003, "burst_count": 5}, "registration": null}`. */
  RATE_LIMITS?: string;
  /** Lifetime in ms of access tokens issued with a refresh token (default 300000). */
  ACCESS_TOKEN_LIFETIME_MS?: string;
  // --- federation (docs/federation.md) ---
  /** JSON array of notary servers for remote keys: names or `{"server_name", "verify_keys"}` objects. Default none. */
  TRUSTED_KEY_SERVERS?: string;
  /** DNS-over-HTTPS JSON endpoint for SRV lookups (default https://cloudflare-dns.com/dns-query). */
  DNS_OVER_HTTPS_URL?: string;
  // --- faster joins (docs/faster-joins.md) ---
  /** "false" to join remote rooms with their full state instead of partial state (default on). */
  PARTIAL_JOINS?: string;
  /** "false" disables POST /_matrix/client/v1/login/get_token (login tokens for another device). */
  LOGIN_VIA_EXISTING_SESSION?: string;
  /** "true": /register asks for a registration token (created through the admin API). */
  REGISTRATION_REQUIRES_TOKEN?: string;
  // --- VoIP and server contacts (README, "Configuration") ---
  TURN_URIS?: string;
  TURN_SHARED_SECRET?: string;
  TURN_USERNAME?: string;
  TURN_PASSWORD?: string;
  TURN_USER_LIFETIME_MS?: string;
  SUPPORT_CONTACTS?: string;
  // --- application services (docs/appservices.md) ---
  /** Appservice registrations: one or more YAML documents separated by `---`. */
  APPSERVICE_REGISTRATIONS?: string;
  // --- presence (docs/presence.md) ---
  /** "false" turns presence off (PUT accepted and ignored, GET says offline, no presence in /sync or federation). */
  PRESENCE_ENABLED?: string;
  // --- media (docs/media.md) ---
  /** Largest upload (and largest remote media fetched) in bytes; default 52428800 (50 MiB). */
  MAX_UPLOAD_SIZE?: string;

  DB: D1Database;
  ROOMS: DurableObjectNamespace<RoomDO>;
  /** One UserDO per local user, named by user ID. */
  USERS: DurableObjectNamespace<UserDO>;
  /** One DestinationDO per remote server, named by server name: outbound transactions and backoff. */
  DESTINATIONS: DurableObjectNamespace<DestinationDO>;
  /** Token buckets for rate limiting, one RateLimiterDO per (action, key). */
  RATE_LIMITER: DurableObjectNamespace<RateLimiterDO>;
  /** One AppServiceDO per registered application service, named by its id: transaction queue, backoff. */
  APPSERVICES: DurableObjectNamespace<AppServiceDO>;
  /** Media repository bytes (docs/media.md); metadata in D1's `media` table. */
  MEDIA: R2Bucket;
}
