"""Adding this MFA server's second factor to an application's login, in Python with the
standard library only. docs/integration.md walks through it; the test suite runs it
against the real server (tests/api/integration.rs), so it works as written.

Run the demo against a running server (with ADMIN_TOKEN and MFA_API_KEYS set there):

    MFA_URL=http://127.0.0.1:6000 MFA_API_KEY=... MFA_ADMIN_TOKEN=... \
    MFA_NOTIFICATIONS_LOG=data/notifications.log python3 docs/integration/login.py

The demo plays the user: it computes the authenticator app's code itself (`phone_code`,
RFC 6238; a real user types what their app shows) and reads the sent code from the
development notifier's file (a real user reads their email or Telegram).
"""
import base64
import hashlib
import hmac
import json
import os
import re
import struct
import time
import urllib.error
import urllib.request


class MfaUnavailable(Exception):
    """The MFA server cannot decide now (503, a network error, a misconfigured API key).
    Fail closed: do not let the user in, ask them to try again shortly."""


class Mfa:
    """The calls an application's backend makes. The API key and the admin token stay on
    the backend: the browser never talks to the MFA server."""

    def __init__(self, url, api_key, admin_token=None, timeout=5):
        self.url, self.api_key, self.admin_token, self.timeout = url.rstrip("/"), api_key, admin_token, timeout

    def _call(self, method, path, body=None, token=None):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token or self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}, response.headers
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else {}, error.headers
        except OSError as error:
            raise MfaUnavailable(f"the MFA server is not reachable: {error}") from error

    # Enrollment: the admin API, from the backend, with ADMIN_TOKEN.
    def enroll(self, username, email=None):
        """A new user: the reply holds `qr_svg` (show it once), `otpauth_uri` and `secret`
        (for typing in). Never store or log them: the server keeps the secret."""
        status, body, _ = self._call("POST", "/admin/users", {"username": username, "email": email},
                                     self.admin_token)
        if status != 201:
            raise MfaUnavailable(f"enrollment failed: {status} {body}")
        return body

    def check(self, username, code):
        """One code, of the app or sent. Returns ("ok", None), ("wrong", None),
        ("locked", seconds) or ("not_enrolled", None); raises MfaUnavailable otherwise."""
        status, body, headers = self._call("POST", "/verify", {"username": username, "token": code})
        error = body.get("error")
        if status == 200:
            return "ok", None
        if status == 401 and error == "invalid_token":
            return "wrong", None  # wrong, expired or already used: ask again
        if status == 404:
            return "not_enrolled", None  # no second factor yet: your policy decides
        if status == 429 and error == "too_many_attempts":
            return "locked", int(headers.get("Retry-After", body.get("retry_after", 60)))
        # 401 unauthorized (our API key is wrong), 429 rate_limited (this backend sends too
        # much), 503 database_unavailable: nothing the user did; fail closed.
        raise MfaUnavailable(f"verify answered {status} {error}")

    def send_code(self, username, channel=None):
        """Sends a code by email or Telegram (the user's, or only `channel`). Returns
        ("sent", seconds it is valid) or ("wait", seconds until another may be asked)."""
        status, body, headers = self._call("POST", "/request-otp",
                                           {"username": username, **({"channel": channel} if channel else {})})
        if status == 200:
            return "sent", body["expires_in"]
        if status == 429:
            return "wait", int(headers.get("Retry-After", body.get("retry_after", 30)))
        raise MfaUnavailable(f"request-otp answered {status} {body.get('error')}")


def second_factor(mfa, username, code):
    """What the login handler asks after the password checked out: may this user in?"""
    outcome, seconds = mfa.check(username, code)
    if outcome == "ok":
        return True, "welcome"
    if outcome == "locked":
        return False, f"too many wrong codes: try again in {seconds} s"
    if outcome == "not_enrolled":
        return False, "set up your second factor first"
    return False, "that code is not right; try again"


def phone_code(secret, at=None):
    """The demo's stand-in for the user's authenticator app (RFC 6238, SHA-1, 6 digits, 30 s)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int((at or time.time()) // 30)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def demo():
    mfa = Mfa(os.environ["MFA_URL"], os.environ["MFA_API_KEY"], os.environ["MFA_ADMIN_TOKEN"])
    username = os.environ.get("DEMO_USER", f"demo-{int(time.time())}")
    email = f"{username}@example.com"

    # 1. Enroll, show the QR code, confirm with the first code the app shows.
    enrollment = mfa.enroll(username, email)
    print(f"enrolled {username}: show enrollment['qr_svg'] once; or the URI {enrollment['otpauth_uri'][:40]}...")
    if int(time.time()) % 30 > 27:  # the demo's phone: avoid a code about to change
        time.sleep(3)
    allowed, said = second_factor(mfa, username, phone_code(enrollment["secret"]))
    assert allowed, said
    print("confirmed: the app is set up")

    # 2. A later login, with a code sent by email.
    outcome, expires_in = mfa.send_code(username)
    assert outcome == "sent", outcome
    with open(os.environ["MFA_NOTIFICATIONS_LOG"]) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    sent = re.search(r"\b(\d{6,8})\b", [l for l in lines if l["recipient"] == email][-1]["message"]).group(1)
    allowed, said = second_factor(mfa, username, sent)
    assert allowed, said
    print(f"logged in with a sent code (it was valid for {expires_in} s)")

    # 3. Someone guessing: wrong codes until the lockout answers.
    for attempt in range(1, 50):
        allowed, said = second_factor(mfa, username, "%06d" % attempt)
        assert not allowed
        if said.startswith("too many"):
            print(f"guess {attempt}: {said}")
            break
    else:
        raise AssertionError("never locked")
    print("demo done")


if __name__ == "__main__":
    demo()
