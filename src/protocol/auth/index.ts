/**
 * Matrix event authorization (room versions 1–12): the rules, power levels and auth events selection.
 */
export { checkEventAuth, checkAuthPreconditions } from "./check";
export {
  authEventTypesFor,
  checkAuthEventsSelection,
  stateLookupFromEvents,
  type AuthEventLike,
  type AuthEventsSelectionOptions,
} from "./auth-events";
export {
  CREATOR_POWER_LEVEL,
  DEFAULT_POWER_LEVELS,
  POWER_LEVEL_FIELDS,
  checkPowerLevelsChange,
  notificationPowerLevel,
  parsePowerLevelValue,
  parsePowerLevelsContent,
  powerLevelOf,
  powerLevelsFromContent,
  requiredPowerLevel,
  roomCreators,
  userPowerLevel,
  type PowerLevelField,
  type PowerLevels,
  type PowerLevelsChange,
  type PowerLevelsContentError,
  type PowerLevelsParseResult,
} from "./power-levels";
export type {
  AuthCheckOptions,
  AuthEvent,
  AuthResult,
  AuthStateLookup,
  JsonSignatureVerifier,
} from "./types";
