/**
 * The registered application services and the questions asked of their namespaces: who may act as whom, who
 * owns a user ID or an alias exclusively, who is interested in a user, a room ID or an alias.
 * One registry per isolate (Config.appservices); every lookup is in memory.
 */
import type { AppService, Namespace } from "./registration";
import { serverNameOf } from "../protocol/identifiers";

function matches(list: readonly Namespace[], s: string): Namespace | undefined {
  return list.find((n) => n.regex.test(s));
}

function isLocalId(id: string, serverName: string): boolean {
  try {
    return serverNameOf(id) === serverName;
  } catch {
    return false;
  }
}

export class AppServiceRegistry {
  readonly all: readonly AppService[];
  private readonly byId = new Map<string, AppService>();
  private readonly byToken = new Map<string, AppService>();

  constructor(
    services: readonly AppService[],
    readonly serverName: string,
  ) {
    this.all = services;
    for (const s of services) {
      this.byId.set(s.id, s);
      this.byToken.set(s.asToken, s);
    }
  }

  get size(): number {
    return this.all.length;
  }

  get(id: string): AppService | undefined {
    return this.byId.get(id);
  }

  /** The appservice whose `as_token` this is. */
  forToken(token: string): AppService | undefined {
    return this.byToken.get(token);
  }

  /** Appservices that registered a third-party protocol. */
  forProtocol(protocol: string): AppService[] {
    return this.all.filter((s) => s.protocols.includes(protocol));
  }

  /**
   * Whether `as` may act as (and register, and log in as) `userId`: its sender, or a local user ID in one of
   * its user namespaces, exclusive or not.
   */
  controlsUser(as: AppService, userId: string): boolean {
    return userId === as.sender || (isLocalId(userId, this.serverName) && matches(as.namespaces.users, userId) !== undefined);
  }

  /**
   * Whether `as` is interested in `userId` (events sent by or about it; rooms where it is joined). Only local
   * users count (spec: "application services can only register interest in local users").
   */
  interestedInUser(as: AppService, userId: string): boolean {
    return this.controlsUser(as, userId);
  }

  /** The appservice (other than `except`) that claims `userId` exclusively, if any. Senders are exclusive. */
  exclusiveUserOwner(userId: string, except?: AppService): AppService | undefined {
    return this.all.find(
      (s) => s !== except && (s.sender === userId || matches(s.namespaces.users, userId)?.exclusive === true),
    );
  }

  /** The appservice (other than `except`) that claims the alias exclusively, if any. */
  exclusiveAliasOwner(alias: string, except?: AppService): AppService | undefined {
    return this.all.find((s) => s !== except && matches(s.namespaces.aliases, alias)?.exclusive === true);
  }

  aliasInNamespace(as: AppService, alias: string): boolean {
    return matches(as.namespaces.aliases, alias) !== undefined;
  }

  roomInNamespace(as: AppService, roomId: string): boolean {
    return matches(as.namespaces.rooms, roomId) !== undefined;
  }

  /** Appservices whose alias namespaces cover `alias` (those that may be asked whether it exists). */
  aliasQueryTargets(alias: string): AppService[] {
    return this.all.filter((s) => s.url !== null && matches(s.namespaces.aliases, alias) !== undefined);
  }

  /** Appservices whose user namespaces cover `userId` (those that may be asked whether it exists). */
  userQueryTargets(userId: string): AppService[] {
    if (!isLocalId(userId, this.serverName)) return [];
    return this.all.filter((s) => s.url !== null && matches(s.namespaces.users, userId) !== undefined);
  }
}
