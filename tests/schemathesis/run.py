"""Runs schemathesis against /openapi.json of both services of a real `mfa serve`.

Starts the built binary on free 127.0.0.1 ports with a temporary data directory, the admin
API and API keys on (one token serves as ADMIN_TOKEN, MFA_API_KEYS and NOTIFY_API_TOKEN, so
one Authorization header covers every operation), both channels pointed at stand-ins served
from this script (an aiosmtpd relay and a Bot API with getMe, getUpdates and sendMessage),
the rate limit and the lockout set out of the way. During the MFA server's run the stand-ins
take every message (so /request-otp can succeed); during the notification service's run they
refuse about a third of the recipients for good, as real ones do (SMTP 550, Telegram 400
"chat not found" and 403), so /send's 422 recipient_rejected is fuzzed too, and the run
fails unless some were refused. Then `schemathesis run --checks all` on each document, bounded
in examples per operation and in time, and stops everything.

Usage: run.py MFA_BINARY   (scripts/schemathesis calls it with the test venv's python)
Environment: SCHEMATHESIS_MAX_EXAMPLES (default 30), SCHEMATHESIS_SEED (default 1, so that
CI is repeatable; set another to explore), SCHEMATHESIS_TIME_LIMIT (seconds per service,
default 100). Exit status 0 when schemathesis found nothing on either service.
"""

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

TOKEN = "schemathesis-token-0123456789abcdef"
HERE = Path(__file__).resolve().parent


class Refusals:
    """Whether the stand-ins refuse some recipients now, and how many they refused."""

    on = False
    count = 0
    lock = threading.Lock()

    @classmethod
    def refuses(cls, recipient):
        """About a third of recipients, always the same ones, while refusals are on."""
        if not cls.on or sum(recipient.encode()) % 3 != 0:
            return False
        with cls.lock:
            cls.count += 1
        return True


class BotApi(http.server.BaseHTTPRequestHandler):
    """The Bot API methods the service calls, answered as Telegram documents them."""

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.do_POST()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        method = self.path.rsplit("/", 1)[-1]
        if method == "getMe":
            self.reply(200, {"ok": True, "result": {"id": 1, "is_bot": True, "username": "schemathesis_bot"}})
        elif method == "getUpdates":
            time.sleep(1)  # a long poll with nothing to say
            self.reply(200, {"ok": True, "result": []})
        elif method == "sendMessage":
            chat = str(request.get("chat_id", ""))
            if Refusals.refuses(chat):
                self.reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
            else:
                self.reply(200, {"ok": True, "result": {"message_id": 1}})
        else:  # deleteWebhook, setWebhook
            self.reply(200, {"ok": True, "result": True})

    def log_message(self, *args):
        pass


class SmtpSink:
    """Takes every message, but refuses some mailboxes while refusals are on."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's naming)
        if Refusals.refuses(address):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        return "250 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, data_dir, bot_url, smtp_port, log_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MFA_BIND": "127.0.0.1:0",
        "NOTIFY_BIND": "127.0.0.1:0",
        "MFA_DATA_DIR": str(data_dir),
        "SECRET_KEY": "schemathesis-secret-key-0123456789abcdef",
        "ADMIN_TOKEN": TOKEN,
        "MFA_API_KEYS": TOKEN,
        "NOTIFY_API_TOKEN": TOKEN,
        "TELEGRAM_TOKEN": "123:schemathesis",
        "TELEGRAM_API_URL": bot_url,
        "EMAIL_SMTP_SERVER": "127.0.0.1",
        "EMAIL_SMTP_PORT": str(smtp_port),
        "EMAIL_SMTP_SECURITY": "none",
        "EMAIL_SENDER": "mfa@example.com",
        "NOTIFY_RETRY_BASE_MS": "10",
        # Schemathesis sends thousands of requests from one address and many wrong codes;
        # 429 is documented, but a run that only sees 429s would test nothing.
        "RATE_LIMIT": "off",
        "MAX_FAILED_ATTEMPTS": "1000000",
        "OTP_RESEND_SECONDS": "0",
        # A user from .env (PATCH, rotate and DELETE answer 409 for it) with a channel.
        "DAIR_SECRET": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "MFA_ENV_USERS": "dair",
        "DAIR_TELEGRAM_ID": "123456789",
        "DAIR_EMAIL": "dair@example.com",
        "LOG_FORMAT": "json",
        "RUST_LOG": "info",
    }
    log = open(log_path, "w")
    process = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir.parent)
    addresses = {}
    deadline = time.monotonic() + 30
    pattern = re.compile(r"(MFA server|notification service) listening on http://([0-9.]+:[0-9]+)")
    while time.monotonic() < deadline and len(addresses) < 2:
        if process.poll() is not None:
            break
        for match in pattern.finditer(Path(log_path).read_text()):
            addresses[match.group(1)] = match.group(2)
        time.sleep(0.1)
    if len(addresses) < 2:
        process.kill()
        sys.exit(f"mfa serve did not start; its log:\n{Path(log_path).read_text()}")
    return process, addresses["MFA server"], addresses["notification service"]


def run_schemathesis(name, address, report_dir):
    max_examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30")
    seed = os.environ.get("SCHEMATHESIS_SEED", "1")
    time_limit = float(os.environ.get("SCHEMATHESIS_TIME_LIMIT", "100"))
    junit = report_dir / f"{name}.junit.xml"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"http://{address}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        max_examples,
        "--seed",
        seed,
        # One worker: with several threads, CPython 3.11 before 3.11.8 can fail
        # schemathesis' own AST parsing ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--request-timeout",
        "10",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
    ]
    started = time.monotonic()
    log_path = report_dir / f"{name}.log"
    with open(log_path, "w") as log:
        try:
            code = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=time_limit, cwd=report_dir
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
    elapsed = time.monotonic() - started
    output = log_path.read_text()
    cases = re.search(r"(\d+) generated", output)
    summary = f"{cases.group(1) if cases else '?'} generated test cases in {elapsed:.0f} s"
    if code == 0:
        print(f"schemathesis, {name}: {summary}, every check held (log: {log_path})")
        return True
    reason = "ran out of time" if code is None else f"exited with {code}"
    # Schemathesis' own closing lines stay in its log; print it whole when it failed.
    print(f"schemathesis, {name}: {reason} after {summary}. Its report:\n{output}")
    return False


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = str(Path(sys.argv[1]).resolve())
    report_dir = Path(os.environ.get("SCHEMATHESIS_REPORT_DIR", "target/schemathesis")).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "--version"], capture_output=True, text=True
    ).stdout.strip()
    print(f"{version}; reports in {report_dir}")

    bot = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BotApi)
    threading.Thread(target=bot.serve_forever, daemon=True).start()
    bot_url = f"http://127.0.0.1:{bot.server_address[1]}"
    smtp = Controller(SmtpSink(), hostname="127.0.0.1", port=free_port())
    smtp.start()

    with tempfile.TemporaryDirectory(prefix="mfa-schemathesis-") as tmp:
        data_dir = Path(tmp) / "data"
        server_log = report_dir / "server.log"
        process, mfa, notifier = start_server(binary, data_dir, bot_url, smtp.port, server_log)
        try:
            ok = run_schemathesis("mfa", mfa, report_dir)
            Refusals.on = True
            ok = run_schemathesis("notifier", notifier, report_dir) and ok
            if Refusals.count == 0:
                ok = False
                print("the stand-ins refused no recipient: /send's 422 was not fuzzed")
            else:
                print(f"the stand-ins refused {Refusals.count} recipients for good (/send answered 422)")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                ok = False
                print("mfa serve did not stop within 20 s of SIGTERM")
            bot.shutdown()
            smtp.stop()
    log = server_log.read_text()
    if "panicked" in log:
        ok = False
        print(f"the server panicked; see {server_log}")
    if process.returncode != 0:
        ok = False
        print(f"mfa serve exited with {process.returncode}; see {server_log}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
