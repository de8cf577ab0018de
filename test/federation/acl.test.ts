/** Server ACL matching (m.room.server_acl). */
import { describe, expect, it } from "vitest";
import { globToRegExp, serverAllowedByAcl } from "../../src/federation/acl";

describe("serverAllowedByAcl", () => {
  it("allows everyone without an ACL", () => {
    expect(serverAllowedByAcl("any.example", undefined)).toBe(true);
    expect(serverAllowedByAcl("any.example", null)).toBe(true);
  });

  it("denies everyone with an ACL that allows nobody", () => {
    expect(serverAllowedByAcl("any.example", {})).toBe(false);
    expect(serverAllowedByAcl("any.example", { deny: [] })).toBe(false);
  });

  it("applies deny before allow, case-insensitively, ignoring ports", () => {
    const acl = { allow: ["*"], deny: ["evil.example", "*.BAD.example"] };
    expect(serverAllowedByAcl("good.example", acl)).toBe(true);
    expect(serverAllowedByAcl("evil.example", acl)).toBe(false);
    expect(serverAllowedByAcl("EVIL.example:8448", acl)).toBe(false);
    expect(serverAllowedByAcl("x.bad.example", acl)).toBe(false);
    expect(serverAllowedByAcl("bad.example", acl)).toBe(true);
  });

  it("supports ? and only lists", () => {
    const acl = { allow: ["hs?.example"] };
    expect(serverAllowedByAcl("hs1.example", acl)).toBe(true);
    expect(serverAllowedByAcl("hs10.example", acl)).toBe(false);
    expect(globToRegExp("a.b").test("axb")).toBe(false);
  });

  it("denies IP literals only when allow_ip_literals is false", () => {
    expect(serverAllowedByAcl("1.2.3.4", { allow: ["*"] })).toBe(true);
    expect(serverAllowedByAcl("[::1]:8448", { allow: ["*"], allow_ip_literals: false })).toBe(false);
    expect(serverAllowedByAcl("1.2.3.4", { allow: ["*"], allow_ip_literals: "no" })).toBe(true);
  });

  it("ignores entries that are not strings", () => {
    expect(serverAllowedByAcl("a.example", { allow: [42, null, "a.*"] })).toBe(true);
  });
});
