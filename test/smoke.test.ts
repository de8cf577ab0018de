import { exports } from "cloudflare:workers";
import { it, expect } from "vitest";
it("works", async () => {
  const r = await (exports as any).default.fetch("http://x/");
  expect(await r.text()).toBe("1");
});
