/**
 * Event relationships as pure functions (https://spec.matrix.org/v1.19/client-server-api/#forming-relationships-between-events):
 * reading an event's `m.relates_to`, the validity rules of replacements (edits), and which replacement is the
 * most recent. Storage and aggregation live in the RoomDO (durable-objects/room/relations.ts); docs/relations.md.
 */

export const REL_THREAD = "m.thread";
export const REL_REPLACE = "m.replace";
export const REL_REFERENCE = "m.reference";
export const REL_ANNOTATION = "m.annotation";

/** A child's relationship to its parent, as its cleartext `content["m.relates_to"]` states it. */
export interface Relation {
  rel_type: string;
  event_id: string;
  /** m.annotation only: the annotation key (a reaction's emoji, say). */
  key?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The relation an event's content declares, or undefined. Relationships that do not match the schema (no string
 * `rel_type` or `event_id`) are ignored, as the spec asks. Rich replies (`m.in_reply_to` only) have no `rel_type`
 * and are not relations here.
 */
export function relationOf(content: unknown): Relation | undefined {
  if (!isObject(content)) return undefined;
  const rel = content["m.relates_to"];
  if (!isObject(rel)) return undefined;
  if (typeof rel.rel_type !== "string" || typeof rel.event_id !== "string" || rel.rel_type === "" || rel.event_id === "") {
    return undefined;
  }
  const out: Relation = { rel_type: rel.rel_type, event_id: rel.event_id };
  if (rel.rel_type === REL_ANNOTATION && typeof rel.key === "string") out.key = rel.key;
  return out;
}

/** What the replacement rules read of an event. */
export interface RelEvent {
  event_id: string;
  type: string;
  sender: string;
  state_key?: string | null;
  content: Record<string, unknown>;
  origin_server_ts: number;
}

/**
 * Whether `edit` is a valid replacement of `original` (spec "Validity of replacement events"): same sender, same
 * type, neither a state event, the original not itself an edit, and the edit carries `m.new_content` — except in
 * encrypted events, where `m.new_content` sits in the ciphertext the server cannot read.
 */
export function isValidReplacement(original: RelEvent, edit: RelEvent): boolean {
  if (original.sender !== edit.sender || original.type !== edit.type) return false;
  if (isState(original) || isState(edit)) return false;
  if (relationOf(original.content)?.rel_type === REL_REPLACE) return false;
  const rel = relationOf(edit.content);
  if (rel?.rel_type !== REL_REPLACE || rel.event_id !== original.event_id) return false;
  if (edit.type !== "m.room.encrypted" && !isObject(edit.content["m.new_content"])) return false;
  return true;
}

function isState(e: RelEvent): boolean {
  return typeof e.state_key === "string";
}

/** Whether replacement `a` is more recent than `b`: later origin_server_ts, then the larger event ID. */
export function isNewerReplacement(a: Pick<RelEvent, "origin_server_ts" | "event_id">, b: Pick<RelEvent, "origin_server_ts" | "event_id">): boolean {
  if (a.origin_server_ts !== b.origin_server_ts) return a.origin_server_ts > b.origin_server_ts;
  return a.event_id > b.event_id;
}

/** Relations that may not themselves be the parent of aggregated children (Synapse skips them too). */
export function takesNoAggregations(rel: Relation | undefined): boolean {
  return rel?.rel_type === REL_REPLACE || rel?.rel_type === REL_ANNOTATION;
}
