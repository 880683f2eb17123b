// Adding this MFA server's second factor to an application's login, in JavaScript for
// Node 18 or later (its built-in fetch), with no package. docs/integration.md walks through
// it; the test suite runs it against the real server (tests/api/integration.rs).
//
// Run the demo against a running server (with ADMIN_TOKEN and MFA_API_KEYS set there):
//
//   MFA_URL=http://127.0.0.1:6000 MFA_API_KEY=... MFA_ADMIN_TOKEN=... \
//   MFA_NOTIFICATIONS_LOG=data/notifications.log node docs/integration/login.mjs
//
// The demo plays the user: it computes the authenticator app's code itself (phoneCode,
// RFC 6238; a real user types what their app shows) and reads the sent code from the
// development notifier's file (a real user reads their email or Telegram).

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

// The MFA server cannot decide now (503, a network error, a misconfigured API key). Fail
// closed: do not let the user in, ask them to try again shortly.
export class MfaUnavailable extends Error {}

// The calls an application's backend makes. The API key and the admin token stay on the
// backend: the browser never talks to the MFA server.
export class Mfa {
  constructor(url, apiKey, adminToken, timeoutMs = 5000) {
    Object.assign(this, { url: url.replace(/\/$/, ""), apiKey, adminToken, timeoutMs });
  }

  async call(method, path, body, token = this.apiKey) {
    let response;
    try {
      response = await fetch(this.url + path, {
        method,
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      throw new MfaUnavailable(`the MFA server is not reachable: ${error.message}`);
    }
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : {}, headers: response.headers };
  }

  // Enrollment: the admin API, from the backend, with ADMIN_TOKEN. The reply holds qr_svg
  // (show it once), otpauth_uri and secret (for typing in). Never store or log them.
  async enroll(username, email) {
    const { status, body } = await this.call("POST", "/admin/users", { username, email }, this.adminToken);
    if (status !== 201) throw new MfaUnavailable(`enrollment failed: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  // One code, of the app or sent: { outcome: "ok" | "wrong" | "locked" | "not_enrolled", seconds }.
  async check(username, code) {
    const { status, body, headers } = await this.call("POST", "/verify", { username, token: code });
    if (status === 200) return { outcome: "ok" };
    if (status === 401 && body.error === "invalid_token") return { outcome: "wrong" }; // wrong, expired or used
    if (status === 404) return { outcome: "not_enrolled" }; // no second factor yet: your policy decides
    if (status === 429 && body.error === "too_many_attempts") {
      return { outcome: "locked", seconds: Number(headers.get("retry-after") ?? body.retry_after ?? 60) };
    }
    // 401 unauthorized (our API key is wrong), 429 rate_limited (this backend sends too
    // much), 503 database_unavailable: nothing the user did; fail closed.
    throw new MfaUnavailable(`verify answered ${status} ${body.error}`);
  }

  // Sends a code by email or Telegram: { outcome: "sent" | "wait", seconds }.
  async sendCode(username, channel) {
    const { status, body, headers } = await this.call("POST", "/request-otp", channel ? { username, channel } : { username });
    if (status === 200) return { outcome: "sent", seconds: body.expires_in };
    if (status === 429) return { outcome: "wait", seconds: Number(headers.get("retry-after") ?? body.retry_after ?? 30) };
    throw new MfaUnavailable(`request-otp answered ${status} ${body.error}`);
  }
}

// What the login handler asks after the password checked out: may this user in?
export async function secondFactor(mfa, username, code) {
  const { outcome, seconds } = await mfa.check(username, code);
  if (outcome === "ok") return { allowed: true, say: "welcome" };
  if (outcome === "locked") return { allowed: false, say: `too many wrong codes: try again in ${seconds} s` };
  if (outcome === "not_enrolled") return { allowed: false, say: "set up your second factor first" };
  return { allowed: false, say: "that code is not right; try again" };
}

// The demo's stand-in for the user's authenticator app (RFC 6238, SHA-1, 6 digits, 30 s).
export function phoneCode(secret, at = Date.now() / 1000) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30)));
  const digest = createHmac("sha1", key).update(counter).digest();
  const offset = digest[digest.length - 1] & 0x0f;
  return String((digest.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

async function demo() {
  const env = process.env;
  const mfa = new Mfa(env.MFA_URL, env.MFA_API_KEY, env.MFA_ADMIN_TOKEN);
  const username = env.DEMO_USER ?? `demo-${Math.floor(Date.now() / 1000)}`;
  const email = `${username}@example.com`;

  // 1. Enroll, show the QR code, confirm with the first code the app shows.
  const enrollment = await mfa.enroll(username, email);
  console.log(`enrolled ${username}: show enrollment.qr_svg once; or the URI ${enrollment.otpauth_uri.slice(0, 40)}...`);
  if (Math.floor(Date.now() / 1000) % 30 > 27) await new Promise((r) => setTimeout(r, 3000));
  let answer = await secondFactor(mfa, username, phoneCode(enrollment.secret));
  assert.ok(answer.allowed, answer.say);
  console.log("confirmed: the app is set up");

  // 2. A later login, with a code sent by email.
  const sent = await mfa.sendCode(username);
  assert.equal(sent.outcome, "sent");
  const lines = readFileSync(env.MFA_NOTIFICATIONS_LOG, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const code = lines.filter((l) => l.recipient === email).at(-1).message.match(/\b(\d{6,8})\b/)[1];
  answer = await secondFactor(mfa, username, code);
  assert.ok(answer.allowed, answer.say);
  console.log(`logged in with a sent code (it was valid for ${sent.seconds} s)`);

  // 3. Someone guessing: wrong codes until the lockout answers.
  for (let attempt = 1; attempt < 50; attempt++) {
    answer = await secondFactor(mfa, username, String(attempt).padStart(6, "0"));
    assert.ok(!answer.allowed);
    if (answer.say.startsWith("too many")) {
      console.log(`guess ${attempt}: ${answer.say}`);
      console.log("demo done");
      return;
    }
  }
  throw new Error("never locked");
}

if (import.meta.url === `file://${process.argv[1]}`) await demo();
