/**
 * The benchmark Worker (started by bench/run.mjs through bench/lib.mjs; see docs/benchmarks.md).
 *
 * `GET /<case>?n=<ops>` runs one benchmark case `n` times and answers `{case, n, sink}`; `n=0` does everything
 * but the work, so the caller can subtract the cost of the request itself. `GET /` lists the cases and
 * `GET /<group>/info` describes a group's fixtures.
 *
 * Time is measured by the caller, outside workerd: inside it, Date.now() and performance.now() only advance on
 * I/O, never during pure computation, so an in-Worker timer would read 0 ms.
 */

import { cases as cryptoCases, info as cryptoInfo } from "./cases/crypto";
import type { BenchCase } from "./cases/types";

const CASES: Record<string, BenchCase> = { ...cryptoCases };
const INFO: Record<string, () => unknown> = { crypto: cryptoInfo };

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.replace(/^\/+|\/+$/g, "");
    if (path === "") return json({ cases: Object.keys(CASES).sort(), groups: Object.keys(INFO).sort() });
    const m = /^([^/]+)\/info$/.exec(path);
    if (m && Object.hasOwn(INFO, m[1]!)) return json(await INFO[m[1]!]!());
    if (!Object.hasOwn(CASES, path)) return json({ error: `no benchmark case ${JSON.stringify(path)}` }, 404);
    const n = Number(url.searchParams.get("n") ?? "0");
    if (!Number.isSafeInteger(n) || n < 0) return json({ error: "n must be a non-negative integer" }, 400);
    try {
      const sink = await CASES[path]!(n, url.searchParams);
      return json({ case: path, n, sink });
    } catch (e) {
      return json({ error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }, 500);
    }
  },
} satisfies ExportedHandler;
