import { DurableObject } from "cloudflare:workers";
export class RoomDO extends DurableObject {
  ping(): number { return this.ctx.storage.sql.exec("select 1 as x").one().x as number; }
}
export default { async fetch(req: Request, env: any) { const s = env.ROOMS.get(env.ROOMS.idFromName("a")); return new Response(String(await s.ping())); } };
