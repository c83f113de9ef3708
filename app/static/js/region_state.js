// The one current defect of a result viewer. The keys (`[`/`]`, J/K), the boxes, the pins,
// the Regions table, the toolbar and the review panel all move it through here and all
// repaint from its "change" event, so the defect on screen and the defect a verdict goes
// to cannot differ. Defects are numbered once, in the model's order (class id, then region
// id): defect n is the same on the pins, the toolbar, the review panel and its chips.

/** The current defect of one viewer: `regions` in the model's order, `index` (-1: none),
 * and an optional class `scope` that stepping keeps to (the review queue's class filter).
 * Dispatches "change" with `detail` {index, region, how} after every move; `how` is the
 * caller's hint for the painters (`center`, `scrollRow`). */
export class RegionSelection extends EventTarget {
  constructor(regions) {
    super();
    this.regions = regions;
    this.index = -1;
    this.scope = null;
  }

  /** The current region (a row of the viewer), or null. */
  get current() {
    return this.regions[this.index] || null;
  }

  /** The index of the region with viewer key `key` ("class:region_id"), or -1. */
  indexOf(key) {
    return this.regions.findIndex((r) => r.key === key);
  }

  /** Whether region `i` is in the stepping scope (every region when there is none). */
  inScope(i) {
    return !this.scope || this.regions[i]?.class_name === this.scope;
  }

  /** The indices stepping visits, in the model's order. */
  steps() {
    return this.regions.map((_, i) => i).filter((i) => this.inScope(i));
  }

  /** Keeps stepping to the regions of class `name` (null: all). Returns whether the class
   * has any region on this board. */
  setScope(name) {
    this.scope = name || null;
    return this.steps().length > 0;
  }

  /** Makes region `index` (wrapping) current and tells every painter. */
  select(index, how = {}) {
    const n = this.regions.length;
    if (!n) return null;
    this.index = ((index % n) + n) % n;
    const region = this.regions[this.index];
    this.dispatchEvent(new CustomEvent("change", { detail: { index: this.index, region, how } }));
    return region;
  }

  /** Makes the region with viewer key `key` current; null when there is none. */
  selectKey(key, how = {}) {
    const i = this.indexOf(key);
    return i < 0 ? null : this.select(i, how);
  }

  /** The next (`step` 1) or previous (-1) region in scope after the current one
   * (wrapping; from none, the first or the last). */
  step(step, how = {}) {
    const order = this.steps();
    if (!order.length) return null;
    let to;
    if (step > 0) to = order.find((i) => i > this.index) ?? order[0];
    else to = [...order].reverse().find((i) => i < this.index) ?? order[order.length - 1];
    if (this.index < 0) to = step > 0 ? order[0] : order[order.length - 1];
    return this.select(to, how);
  }

  /** The first region in scope from the current one on (wrapping) for which `test(region)`
   * holds, or -1. */
  findFrom(test, { after = false } = {}) {
    const order = this.steps();
    const start = order.findIndex((i) => (after ? i > this.index : i >= this.index));
    const rotated = start < 0 ? order : [...order.slice(start), ...order.slice(0, start)];
    return rotated.find((i) => test(this.regions[i])) ?? -1;
  }
}
