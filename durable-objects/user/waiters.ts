/**
 * Long-poll waiters. Each waiting /sync request owns its own waiter: a promise, a timer and an ID. It ends when
 * the stream passes the request's token (woken), when its timer fires, or when the request is cancelled (the
 * client went away); in every case the waiter and its timer are removed. No promise is ever shared between
 * requests, so cancelling one request cannot affect another.
 */

export type WaitOutcome = "changed" | "timeout" | "cancelled";

interface Waiter {
  since: number;
  resolve: (outcome: WaitOutcome) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Waiters {
  private readonly waiting = new Map<string, Waiter>();

  /**
   * Waits until the stream passes `since` (checked against `head` first), `timeoutMs` elapses, or `cancel(id)`
   * is called. An ID already waiting is cancelled first (a retried request replaces its predecessor).
   */
  wait(id: string, since: number, head: number, timeoutMs: number): Promise<WaitOutcome> {
    if (head > since) return Promise.resolve("changed");
    if (timeoutMs <= 0) return Promise.resolve("timeout");
    this.cancel(id);
    return new Promise<WaitOutcome>((resolve) => {
      const timer = setTimeout(() => this.finish(id, "timeout"), timeoutMs);
      this.waiting.set(id, { since, resolve, timer });
    });
  }

  /** Ends a waiter early because its request went away. Returns whether it was waiting. */
  cancel(id: string): boolean {
    return this.finish(id, "cancelled");
  }

  /** Resolves every waiter whose token `head` has passed. */
  wake(head: number): void {
    for (const [id, w] of [...this.waiting]) if (head > w.since) this.finish(id, "changed");
  }

  /** How many requests are waiting (visible to tests and metrics). */
  get size(): number {
    return this.waiting.size;
  }

  private finish(id: string, outcome: WaitOutcome): boolean {
    const w = this.waiting.get(id);
    if (!w) return false;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    w.resolve(outcome);
    return true;
  }
}
