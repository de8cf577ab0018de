/**
 * What the rules read from the state, gathered once per check: the create event, the power levels in effect,
 * the creators, and helpers for memberships and levels.
 */
import type { RoomVersion } from "../room-versions";
import { powerLevelOf, powerLevelsFromContent, roomCreators, type PowerLevels } from "./power-levels";
import type { AuthCheckOptions, AuthEvent, AuthStateLookup } from "./types";

export interface AuthContext {
  readonly event: AuthEvent;
  readonly state: AuthStateLookup;
  readonly version: RoomVersion;
  readonly opts: AuthCheckOptions;
  readonly create: AuthEvent;
  /** The current power levels event, if any. */
  readonly powerLevelsEvent: AuthEvent | undefined;
  /** The levels in effect (defaults when there is no power levels event). */
  readonly powerLevels: PowerLevels;
  readonly creators: ReadonlySet<string>;
  /** A user's current membership (`content.membership` of their member event), if any. */
  membershipOf(userId: string): string | undefined;
  /** A user's current power level. */
  levelOf(userId: string): number;
  /** `join_rule` of the current join rules event, if any. */
  joinRule(): string | undefined;
}

export function authContext(
  event: AuthEvent,
  state: AuthStateLookup,
  version: RoomVersion,
  opts: AuthCheckOptions,
  create: AuthEvent,
): AuthContext {
  const powerLevelsEvent = state("m.room.power_levels", "");
  const powerLevels = powerLevelsFromContent(powerLevelsEvent?.content, version);
  const creators = roomCreators(create, version);
  return {
    event,
    state,
    version,
    opts,
    create,
    powerLevelsEvent,
    powerLevels,
    creators,
    membershipOf(userId) {
      const membership = state("m.room.member", userId)?.content.membership;
      return typeof membership === "string" ? membership : undefined;
    },
    levelOf(userId) {
      return powerLevelOf(userId, creators, powerLevelsEvent ? powerLevels : undefined, version);
    },
    joinRule() {
      const rule = state("m.room.join_rules", "")?.content.join_rule;
      return typeof rule === "string" ? rule : undefined;
    },
  };
}
