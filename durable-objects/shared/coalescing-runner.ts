/**
 * One background job at a time, coalescing requests: `run()` starts the job, or — while it runs — asks for one
 * more round after the current one, and every caller gets the promise of the run in progress. Outboxes, push
 * passes, appservice senders and directory refreshes all need exactly this: work that reads "everything due now",
 * so any number of requests during a round are served by a single further round.
 */
export class CoalescingRunner {
  private running: Promise<void> | undefined;
  private again = false;

  /** `round` does the work; `settle`, if given, runs after the last round (also after a failure). */
  constructor(
    private readonly round: () => Promise<void>,
    private readonly settle?: () => void,
  ) {}

  run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.round();
        } while (this.again);
      } finally {
        this.running = undefined;
        this.settle?.();
      }
    })();
    return this.running;
  }
}
