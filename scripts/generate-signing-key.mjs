#!/usr/bin/env node
// Prints a new signing key in Synapse's format (`ed25519 <version> <unpadded base64 seed>`) for SIGNING_KEY.
import { randomBytes } from "node:crypto";

const version = `a_${randomBytes(3).toString("base64").replace(/[^A-Za-z0-9]/g, "x")}`;
const seed = randomBytes(32).toString("base64").replace(/=+$/, "");
console.log(`ed25519 ${version} ${seed}`);
