/**
 * The body of a push gateway request (`POST /_matrix/push/v1/notify`,
 * https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify): pure builders, no I/O.
 *
 * - Full format (the default): event_id, room_id, type, sender, sender_display_name, room_name, room_alias,
 *   membership and user_is_target for member events, prio, content, counts, devices.
 * - `data.format: "event_id_only"`: event_id, room_id, prio, counts and devices only (no tweaks either: the app
 *   fetches the event itself), as the spec describes and the reference server does.
 * - Badge updates (after the user read something): counts and devices only.
 *
 * `devices[0]` carries the pusher's app_id, pushkey, pushkey_ts (seconds), its `data` without `url` and
 * `format` (the spec: "with the url and format keys removed"), and the tweaks of the matching rule.
 */
import type { PushAction } from "./types";

export interface DeliveryPusher {
  app_id: string;
  pushkey: string;
  /** When the pusher was created, in ms. */
  created_ts: number;
  data: Record<string, unknown>;
}

/** What a notification says about its event and room (read by the RoomDO when the notification is sent). */
export interface NotifiedEvent {
  event_id: string;
  room_id: string;
  type: string;
  sender: string;
  state_key?: string;
  content: Record<string, unknown>;
  sender_display_name?: string;
  room_name?: string;
  room_alias?: string;
}

/** `set_tweak` actions as an object; `highlight` without a value means true. */
export function tweaksOf(actions: readonly PushAction[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of actions) {
    if (typeof a !== "object" || typeof a.set_tweak !== "string") continue;
    out[a.set_tweak] = a.value === undefined ? (a.set_tweak === "highlight" ? true : null) : a.value;
  }
  if (out.highlight === false) delete out.highlight;
  return out;
}

/** `high` when the notification makes a sound, highlights, or may do so (encrypted), else `low`. */
export function priorityOf(type: string, tweaks: Record<string, unknown>): "high" | "low" {
  return type === "m.room.encrypted" || tweaks.highlight === true || (tweaks.sound !== undefined && tweaks.sound !== null) ? "high" : "low";
}

function device(pusher: DeliveryPusher, tweaks: Record<string, unknown> | undefined): Record<string, unknown> {
  const data = { ...pusher.data };
  delete data.url;
  delete data.format;
  return {
    app_id: pusher.app_id,
    pushkey: pusher.pushkey,
    pushkey_ts: Math.floor(pusher.created_ts / 1000),
    data,
    ...(tweaks && Object.keys(tweaks).length > 0 ? { tweaks } : {}),
  };
}

/** The `notification` object for one event. */
export function eventNotification(
  userId: string, pusher: DeliveryPusher, ev: NotifiedEvent, actions: readonly PushAction[], unread: number,
): Record<string, unknown> {
  const tweaks = tweaksOf(actions);
  const prio = priorityOf(ev.type, tweaks);
  const counts = { unread };
  if (pusher.data.format === "event_id_only") {
    return { event_id: ev.event_id, room_id: ev.room_id, prio, counts, devices: [device(pusher, undefined)] };
  }
  const out: Record<string, unknown> = { event_id: ev.event_id, room_id: ev.room_id, type: ev.type, sender: ev.sender, prio };
  if (ev.sender_display_name) out.sender_display_name = ev.sender_display_name;
  if (ev.room_name) out.room_name = ev.room_name;
  if (ev.room_alias) out.room_alias = ev.room_alias;
  if (ev.type === "m.room.member" && ev.state_key !== undefined) {
    if (typeof ev.content.membership === "string") out.membership = ev.content.membership;
    out.user_is_target = ev.state_key === userId;
  }
  if (Object.keys(ev.content).length > 0) out.content = ev.content;
  out.counts = counts;
  out.devices = [device(pusher, tweaks)];
  return out;
}

/** The `notification` object of a badge update (the unread count changed without a new event). */
export function badgeNotification(pusher: DeliveryPusher, unread: number): Record<string, unknown> {
  return { prio: "low", counts: { unread }, devices: [device(pusher, undefined)] };
}
