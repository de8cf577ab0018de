import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";

const e = env as unknown as { HS2: Fetcher; HS2_CONTROL: { serverName(): Promise<string> } };

describe("harness", () => {
  it("reaches hs2 directly and through the router", async () => {
    expect(await e.HS2_CONTROL.serverName()).toBe("hs2.test");
    const r = await e.HS2.fetch("http://hs2.test/_matrix/key/v2/server");
    expect(((await r.json()) as { server_name: string }).server_name).toBe("hs2.test");
    const r2 = await fetch("http://hs2.test/_matrix/key/v2/server");
    expect(r2.status).toBe(200);
    const r3 = await fetch("http://nowhere.test/x");
    expect(r3.status).toBe(502);
  });
});
