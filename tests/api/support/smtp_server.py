#!/usr/bin/env python3
"""A real SMTP server for the integration tests: aiosmtpd, on 127.0.0.1.

    smtp_server.py --mode plain|starttls|tls --out FILE [--user U --password P]
                   [--fail-first N] [--cert-dir DIR]

Prints `READY <port> <ca.pem or ->` once it accepts connections, then serves until its
standard input closes (the test that started it ended). Every message it accepts is
appended to FILE as one JSON object: envelope, parsed headers, text and HTML bodies, the
AUTH login used, whether the session was encrypted, and the client's address (to see
connection reuse).

--fail-first N answers `451 4.3.0` to the first N recipients (a transient failure);
a recipient whose address contains "unknown" gets `550 5.1.1` (a permanent one).
The TLS certificate (for 127.0.0.1 and localhost) comes from a throw-away CA made by trustme.
"""
import argparse
import email
import email.policy
import json
import socket
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    def __init__(self, out, fail_first):
        self.out = out
        self.fail_left = fail_first
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # As Postfix with reject_non_fqdn_helo_hostname: a relay that many sites run.
        if "." not in hostname and not hostname.startswith("["):
            return [f"504 5.5.2 <{hostname}>: Helo command rejected: need fully-qualified hostname"]
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return "451 4.3.0 Temporary failure, try again later"
        if "unknown" in address:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "date": msg["Date"] and str(msg["Date"]),
            "message_id": msg["Message-ID"] and str(msg["Message-ID"]),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "auth_login": session.auth_data,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "peer": list(session.peer),
            "helo": session.host_name,
        }
        with self.lock, open(self.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    p.add_argument("--out", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--cert-dir")
    args = p.parse_args()

    ca_path = "-"
    context = None
    if args.mode != "plain":
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        ca_path = f"{args.cert_dir}/ca.pem"
        ca.cert_pem.write_to_path(ca_path)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == args.user and auth_data.password.decode() == args.password
        if ok:
            return AuthResult(success=True, auth_data=auth_data.login.decode())
        return AuthResult(success=False, handled=False)  # handled=False: aiosmtpd answers 535

    kwargs = {}
    # Tests that log in over plain SMTP do so on purpose (and over implicit TLS aiosmtpd
    # cannot tell): its warning about it is noise here.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    if args.user:
        # Implicit TLS is encrypted from the start, but aiosmtpd only counts STARTTLS as TLS.
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=args.mode == "starttls")
    if args.mode == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif args.mode == "tls":
        kwargs.update(ssl_context=context)

    port = free_port()
    controller = Controller(Handler(args.out, args.fail_first), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print(f"READY {port} {ca_path}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
