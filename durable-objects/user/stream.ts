/**
 * The user's sync stream: one monotonically increasing position per UserDO. Every change that a /sync
 * response depends on (a room advancing, a room's typing/receipts changing, account data, to-device messages,
 * device-list changes) takes the next position inside the transaction that records it, then wakes the waiters.
 *
 * A sync token names a stream position; "what changed since the token" is "rows with a larger position".
 * Only the UserDO writes this stream (one writer per stream).
 */
import { Waiters } from "./waiters";

export class UserStream {
  readonly waiters = new Waiters();

  constructor(private readonly sql: SqlStorage) {}

  /** The latest position (0 before anything happened). */
  get head(): number {
    return this.sql.exec<{ pos: number }>("SELECT pos FROM stream_head WHERE id = 1").one().pos;
  }

  /**
   * Takes the next position. Call inside the storage transaction that writes the change, and call `wake()`
   * once it has committed.
   */
  next(): number {
    return this.sql.exec<{ pos: number }>("UPDATE stream_head SET pos = pos + 1 WHERE id = 1 RETURNING pos").one().pos;
  }

  /** Wakes every long poll waiting for a position past its token. */
  wake(): void {
    this.waiters.wake(this.head);
  }
}
