// The review mode's saves: verdicts and dispositions show on screen at once and go to the
// agent in the background, one after the other in the order they were given (a verdict and
// its undo can never overtake each other), so the reviewer never waits for an answer.
// Nothing is dropped: when a save fails, it and every save after it stay queued, the page
// says so with a Retry button, and leaving the page asks first. The queue belongs to the
// page, not to one board: the next board opens while the last verdicts are still on their
// way. `document.body.dataset.reviewUnsaved` is the number of saves not yet stored.

/** One queue of saves for the page: `push(save)` where `save` is {label, run: async () =>
 * answer, done?(answer)}; `drained()` resolves once nothing is left to send (never while a
 * save has failed and waits for Retry). */
class SaveQueue extends EventTarget {
  constructor() {
    super();
    this.items = [];
    this.running = false;
    this.failed = null; // the error that stopped the queue, until Retry
    this.waiters = [];
    window.addEventListener("beforeunload", (e) => {
      // Saves still on their way finish anyway (keepalive requests); failed ones would be lost.
      if (this.failed) e.preventDefault();
    });
  }

  get unsaved() {
    return this.items.length;
  }

  push(save) {
    this.items.push(save);
    this.changed();
    this.pump();
  }

  /** Resolves when every queued save is stored. */
  drained() {
    if (!this.items.length) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Sends the failed save again, then the ones after it. */
  retry() {
    this.failed = null;
    this.changed();
    this.pump();
  }

  async pump() {
    if (this.running || this.failed) return;
    this.running = true;
    while (this.items.length && !this.failed) {
      const save = this.items[0];
      try {
        const started = performance.now();
        const answer = await save.run();
        performance.measure("review:save", { start: started, end: performance.now() });
        this.items.shift();
        this.changed();
        try { save.done?.(answer); } catch (err) { console.error(err); }
      } catch (err) {
        this.failed = { err, label: save.label };
        this.changed();
      }
    }
    this.running = false;
    if (!this.items.length) {
      const waiters = this.waiters.splice(0);
      waiters.forEach((resolve) => resolve());
    }
  }

  changed() {
    document.body.dataset.reviewUnsaved = String(this.items.length);
    document.body.dataset.reviewSaveFailed = this.failed ? "true" : "false";
    this.dispatchEvent(new CustomEvent("change"));
  }
}

/** The page's save queue. */
export const saves = new SaveQueue();
