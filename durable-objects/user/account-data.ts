/**
 * Account data, global (room '' ) and per room, including `m.tag` (room tags) and `m.fully_read` (read
 * markers). Each write takes the next user stream position, so /sync returns what changed since a token.
 * Contents are kept as JSON text.
 */
import type { UserStream } from "./stream";

export type AccountDataRow = { room_id: string; type: string; content: string; pos: number };

export class AccountData {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stream: UserStream,
  ) {}

  /** Stores `content` (JSON text) for (room, type); `roomId` '' is global. Call inside a transaction. */
  set(roomId: string, type: string, content: string): number {
    const pos = this.stream.next();
    this.sql.exec(
      `INSERT INTO account_data (room_id, type, content, pos) VALUES (?, ?, ?, ?)
       ON CONFLICT (room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
      roomId, type, content, pos,
    );
    return pos;
  }

  get(roomId: string, type: string): string | null {
    return this.sql
      .exec<{ content: string }>("SELECT content FROM account_data WHERE room_id = ? AND type = ?", roomId, type)
      .toArray()[0]?.content ?? null;
  }

  /** Rows written after `since` (all rows when `since` is null), up to `upTo`. */
  changed(since: number | null, upTo: number): AccountDataRow[] {
    return this.sql
      .exec<AccountDataRow>("SELECT room_id, type, content, pos FROM account_data WHERE pos > ? AND pos <= ? ORDER BY pos", since ?? 0, upTo)
      .toArray();
  }

  /** Adds or replaces one tag in the room's `m.tag` account data. */
  setTag(roomId: string, tag: string, content: string): void {
    const tags = this.tags(roomId);
    tags[tag] = JSON.parse(content) as unknown;
    this.set(roomId, "m.tag", JSON.stringify({ tags }));
  }

  /** Removes one tag; returns whether it existed (a missing tag changes nothing). */
  removeTag(roomId: string, tag: string): boolean {
    const tags = this.tags(roomId);
    if (!(tag in tags)) return false;
    delete tags[tag];
    this.set(roomId, "m.tag", JSON.stringify({ tags }));
    return true;
  }

  /** The room's tags: tag name → tag content. */
  tags(roomId: string): Record<string, unknown> {
    const raw = this.get(roomId, "m.tag");
    if (!raw) return {};
    const parsed = JSON.parse(raw) as { tags?: unknown };
    return typeof parsed.tags === "object" && parsed.tags !== null && !Array.isArray(parsed.tags)
      ? { ...(parsed.tags as Record<string, unknown>) }
      : {};
  }
}
