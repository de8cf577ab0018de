/**
 * State snapshots as a tree of deltas ("state groups").
 *
 * A group at depth d has a parent (the state it was derived from) and a base: the ancestor at depth d & (d-1).
 * It stores its step delta (changes against the parent) and its skip delta (changes against the base).
 * Loading a group applies the skip deltas along base → base → … → root, at most popcount(d) of them, and
 * creating one folds the step deltas of the lowbit(d) groups between it and its base. Over n state changes on
 * a chain this stores O(n log n) rows in total, independent of the size of the state, and never a full copy.
 *
 * State maps here are keyed by interned state-key IDs and hold event nids; `StateMap` conversion (string
 * keys, event IDs) happens in the RoomDO's event index.
 */

/** Interned state key ID → event nid. */
export type NidStateMap = Map<number, number>;
/** Changes against another group: key ID → event nid, or null for "absent". */
export type StateDelta = Map<number, number | null>;

type GroupRow = {
  id: number;
  parent: number | null;
  base: number | null;
  depth: number;
};

const CACHE_SIZE = 16;

export class StateStore {
  /** Recently used groups, most recent last. Maps are shared: callers must not mutate them. */
  private readonly cache = new Map<number, NidStateMap>();
  private readonly keyIds = new Map<string, number>();

  constructor(private readonly sql: SqlStorage) {}

  /** The interned ID of (type, state_key), creating it if needed. */
  keyId(type: string, stateKey: string): number {
    const composite = `${type}\u0000${stateKey}`;
    let id = this.keyIds.get(composite);
    if (id !== undefined) return id;
    const row = this.sql
      .exec<{ id: number }>("SELECT id FROM state_keys WHERE type = ? AND state_key = ?", type, stateKey)
      .toArray()[0];
    id = row ? row.id : this.sql
      .exec<{ id: number }>("INSERT INTO state_keys (type, state_key) VALUES (?, ?) RETURNING id", type, stateKey)
      .one().id;
    this.keyIds.set(composite, id);
    return id;
  }

  /** The interned ID of (type, state_key) if it has ever been used, without creating it. */
  existingKeyId(type: string, stateKey: string): number | undefined {
    const composite = `${type}\u0000${stateKey}`;
    const cached = this.keyIds.get(composite);
    if (cached !== undefined) return cached;
    const row = this.sql
      .exec<{ id: number }>("SELECT id FROM state_keys WHERE type = ? AND state_key = ?", type, stateKey)
      .toArray()[0];
    if (row) this.keyIds.set(composite, row.id);
    return row?.id;
  }

  /** The full state of a group. The returned map is shared with the cache: treat it as read-only. */
  load(group: number | null): NidStateMap {
    if (group === null) return new Map();
    const cached = this.cache.get(group);
    if (cached) {
      this.cache.delete(group);
      this.cache.set(group, cached);
      return cached;
    }
    const chain: number[] = [];
    let start: NidStateMap | undefined;
    for (let g: number | null = group; g !== null; ) {
      const hit = this.cache.get(g);
      if (hit) {
        start = hit;
        break;
      }
      chain.push(g);
      g = this.row(g).base;
    }
    const state = new Map(start);
    for (let i = chain.length - 1; i >= 0; i--) {
      for (const r of this.sql.exec<{ key_id: number; event_nid: number | null }>(
        "SELECT key_id, event_nid FROM state_skip WHERE group_id = ?",
        chain[i]!,
      )) {
        if (r.event_nid === null) state.delete(r.key_id);
        else state.set(r.key_id, r.event_nid);
      }
    }
    this.remember(group, state);
    return state;
  }

  /**
   * Creates a group whose state is `parent`'s state with `delta` applied. `state`, when the caller already has
   * the resulting map, is cached as is (it must not be mutated afterwards).
   */
  create(parent: number | null, delta: StateDelta, state?: NidStateMap): number {
    const parentRow = parent === null ? null : this.row(parent);
    const depth = (parentRow?.depth ?? 0) + 1;
    const baseDepth = depth & (depth - 1);

    // Fold the step deltas from the base (exclusive) down to the new group: walk up lowbit(depth) - 1 parents.
    const steps: StateDelta[] = [delta];
    let cursor = parentRow;
    while (cursor && cursor.depth > baseDepth) {
      steps.push(this.stepDelta(cursor.id));
      cursor = cursor.parent === null ? null : this.row(cursor.parent);
    }
    const base = cursor?.id ?? null;
    const skip: StateDelta = new Map();
    for (let i = steps.length - 1; i >= 0; i--) for (const [k, v] of steps[i]!) skip.set(k, v);

    const id = this.sql
      .exec<{ id: number }>(
        "INSERT INTO state_groups (parent, base, depth) VALUES (?, ?, ?) RETURNING id",
        parent,
        base,
        depth,
      )
      .one().id;
    for (const [k, v] of delta) {
      this.sql.exec("INSERT INTO state_step (group_id, key_id, event_nid) VALUES (?, ?, ?)", id, k, v);
    }
    for (const [k, v] of skip) {
      this.sql.exec("INSERT INTO state_skip (group_id, key_id, event_nid) VALUES (?, ?, ?)", id, k, v);
    }
    if (state) this.remember(id, state);
    return id;
  }

  /** Creates a group holding exactly `state`, as a child of `parent` (the closest known state, for small deltas). */
  createFromState(parent: number | null, state: NidStateMap): number {
    const parentState = this.load(parent);
    return this.create(parent, diffStates(parentState, state), state);
  }

  /** Forgets cached maps (after a rollback, cached maps may describe groups that no longer exist). */
  clearCache(): void {
    this.cache.clear();
    this.keyIds.clear();
  }

  private stepDelta(group: number): StateDelta {
    const delta: StateDelta = new Map();
    for (const r of this.sql.exec<{ key_id: number; event_nid: number | null }>(
      "SELECT key_id, event_nid FROM state_step WHERE group_id = ?",
      group,
    )) {
      delta.set(r.key_id, r.event_nid);
    }
    return delta;
  }

  private row(group: number): GroupRow {
    return this.sql.exec<GroupRow>("SELECT id, parent, base, depth FROM state_groups WHERE id = ?", group).one();
  }

  private remember(group: number, state: NidStateMap): void {
    this.cache.set(group, state);
    if (this.cache.size > CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
  }
}

/** The delta that turns `from` into `to`. */
export function diffStates(from: NidStateMap, to: NidStateMap): StateDelta {
  const delta: StateDelta = new Map();
  for (const [k, v] of to) if (from.get(k) !== v) delta.set(k, v);
  for (const k of from.keys()) if (!to.has(k)) delta.set(k, null);
  return delta;
}

/** Applies a delta to a copy of `state`. */
export function applyDelta(state: NidStateMap, delta: StateDelta): NidStateMap {
  const next = new Map(state);
  for (const [k, v] of delta) {
    if (v === null) next.delete(k);
    else next.set(k, v);
  }
  return next;
}
