/**
 * The `fetch` every outbound federation request goes through (server discovery, key fetches, transactions,
 * missing events). In production it is the runtime's `fetch`. Tests replace it with `setFederationFetch` to stand
 * in for remote servers inside the same isolate (a hand-built malicious server, a server that fails and
 * recovers); the multi-homeserver harness needs no replacement, since its Workers' outbound fetches are routed to
 * each other by Miniflare.
 */
export type FetchLike = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

let current: FetchLike = (input, init) => fetch(input, init);

export function federationFetch(input: Request | string | URL, init?: RequestInit): Promise<Response> {
  return current(input, init);
}

/** Replaces the federation fetch (tests only); returns a function restoring the previous one. */
export function setFederationFetch(f: FetchLike): () => void {
  const previous = current;
  current = f;
  return () => {
    current = previous;
  };
}
