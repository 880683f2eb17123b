"""SQLite alone: what a wrong code (or a /request-otp) costs the database, without HTTP,
crypto or `mfa`.

Run by bench/run on a copy of the benchmark's database (python3 bench/sqlite_alone.py DB
USERS SECONDS [wrong|otp]). Python's sqlite3 module (SQLite's own C library) runs a wrong code's two
statements as `mfa` does: the user's row read on a read connection, then the conditional
update of the failure count on the write connection, in transactions of 256 updates with
synchronous=FULL in WAL mode, and a second thread checkpointing after each commit (as
src/store/sqlite.rs does). Prints one JSON line: wrong codes a second (one thread runs both
statements in turn, so this is not the most the file allows), the CPU per wrong code of
this process (both threads), and the CPU per iteration of the same loop with trivial
statements (Python's own share, to subtract).

With a fourth argument `otp`, the same for a /request-otp through the file notifier: the
user's read; the new code's write and its delivery job's insert in one transaction per
256; the 256 lines appended to a file and `fdatasync`ed; then each job's end recorded, in
one more transaction.
"""
import json
import os
import random
import resource
import sqlite3
import sys
import threading
import time

BATCH = 256
# As src/store/sql.rs reads a user (with its authenticators) and records a failure.
READ = ("SELECT u.failed_attempts, u.locked_until, u.last_failed_at, u.email, u.telegram_id, u.code_hash,"
        " u.code_expires_at, u.previous_code_hash, u.previous_code_expires_at, u.codes_used_at, u.failed_from,"
        " a.id, a.kind, a.sealed_secret, a.algorithm, a.digits, a.period, a.counter, a.last_step, a.drift_steps,"
        " a.status, a.replaces, a.created_at, a.last_used_at, a.expires_at"
        " FROM (SELECT * FROM users WHERE username = ?) u LEFT JOIN authenticators a ON a.username = u.username")
WRITE = ("UPDATE users SET failed_attempts = ?, locked_until = NULL, last_failed_at = ?, failed_from = '127.0.0.1'"
         " WHERE username = ? AND failed_attempts = ? AND locked_until IS ? AND last_failed_at IS ?")


# As src/store/sql.rs swaps in a new code, queues its delivery job and records its end.
OTP_READ = READ.replace("u.failed_from,", "u.failed_from, u.code_sent_at,")
SWAP = ("UPDATE users SET code_hash = ?, sealed_code = ?, code_sent_at = ?, code_expires_at = ?, previous_code_hash = ?,"
        " previous_code_expires_at = ?, codes_used_at = NULL, send_tat = ? WHERE username = ? AND code_sent_at IS ?")
QUEUE = ("INSERT INTO deliveries (id, username, channel, recipient, code_hash, sealed_code, expires_at, state,"
         " next_attempt_at, created_at, lease_until, attempts) VALUES (?, ?, 'email', ?, ?, ?, ?, 'queued', ?, ?, ?, 1)")
# A line of the file notifier for a code, as src/notify/file.rs writes it.
OTP_LINE = (b'{"channel":"email","message":"Your MFA verification code is 123456. It expires in 5 minutes. If you'
            b' did not ask for it, ignore this message.","recipient":"%s@example.com","subject":"MFA verification'
            b' code","time":1796590808}\n')
FINISH = ("UPDATE deliveries SET state = 'delivered', sealed_code = NULL, lease_until = NULL, finished_at = ?,"
          " last_error = NULL WHERE id = ?")


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def connect(path):
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA cache_size=-1024")
    return db


def run(path, users, seconds, read, write, checkpoint):
    reader, writer = connect(path), connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=10000")
    wake, done = threading.Event(), threading.Event()

    def checkpoints():
        db = connect(path)
        while not done.is_set():
            if wake.wait(0.1):
                wake.clear()
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                time.sleep(0.01)

    thread = threading.Thread(target=checkpoints, daemon=True)  # a failing run must not hang
    if checkpoint:
        thread.start()
    rng = random.Random(7)
    count, started, cpu_before = 0, time.monotonic(), cpu()
    while time.monotonic() - started < seconds:
        rows = []
        for _ in range(BATCH):
            name = f"u{rng.randrange(users)}"
            rows.append((name, reader.execute(read, (name,) if "?" in read else ()).fetchone()))
        writer.execute("BEGIN IMMEDIATE")
        for name, row in rows:
            fa, lu, lf = (row[0], row[1], row[2]) if len(row) > 2 else (0, None, None)
            writer.execute(write, (fa + 1, 1, name, fa, lu, lf) if "?" in write else ())
        writer.execute("COMMIT")
        wake.set()
        count += BATCH
    elapsed, used = time.monotonic() - started, cpu() - cpu_before
    done.set()
    if checkpoint:
        thread.join()
    return count / elapsed, used / count * 1e6


def run_otp(path, users, seconds, trivial):
    """As `run`, for /request-otp; `trivial` runs the same loop on trivial statements."""
    reader, writer = connect(path), connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=10000")
    read, swap, queue, finish = ("SELECT 1, 2, 3", "SELECT 1", "SELECT 1", "SELECT 1") if trivial else \
        (OTP_READ, SWAP, QUEUE, FINISH)
    wake, done = threading.Event(), threading.Event()

    def checkpoints():
        db = connect(path)
        while not done.is_set():
            if wake.wait(0.1):
                wake.clear()
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                time.sleep(0.01)

    thread = threading.Thread(target=checkpoints, daemon=True)
    if not trivial:
        thread.start()
    log = None if trivial else open(f"{path}.notifications.log", "ab")
    rng = random.Random(7)
    count, started, cpu_before = 0, time.monotonic(), cpu()
    while time.monotonic() - started < seconds:
        now = int(time.time())
        batch = []
        for _ in range(BATCH):
            name = f"u{rng.randrange(users)}"
            row = reader.execute(read, (name,) if "?" in read else ()).fetchone()
            job = now.to_bytes(4, "big").hex() + rng.randbytes(8).hex()
            batch.append((name, row, job))
        writer.execute("BEGIN IMMEDIATE")
        for name, row, job in batch:
            if trivial:
                writer.execute(swap)
                writer.execute(queue)
                continue
            writer.execute(swap, (rng.randbytes(32), rng.randbytes(34), now, now + 300, row[5], row[6], now, name,
                                  row[11]))
            writer.execute(queue, (job, name, f"{name}@example.com", rng.randbytes(32), rng.randbytes(34), now + 300,
                                   now, now, now + 60))
        writer.execute("COMMIT")
        lines = b"".join(OTP_LINE % name.encode() for name, _, _ in batch)
        if log:
            log.write(lines)
            log.flush()
            os.fdatasync(log.fileno())
        writer.execute("BEGIN IMMEDIATE")
        for _, _, job in batch:
            if trivial:
                writer.execute(finish)
            else:
                writer.execute(finish, (now, job))
        writer.execute("COMMIT")
        wake.set()
        count += BATCH
    elapsed, used = time.monotonic() - started, cpu() - cpu_before
    done.set()
    if log:
        thread.join()
        log.close()
    return count / elapsed, used / count * 1e6


def main():
    path, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if sys.argv[4:5] == ["otp"]:
        rate, cpu_us = run_otp(path, users, seconds, False)
        _, loop_us = run_otp(":memory:", users, min(seconds, 2), True)
        print(json.dumps({"rate": rate, "cpu_us": cpu_us, "loop_cpu_us": loop_us}))
        return
    rate, cpu_us = run(path, users, seconds, READ, WRITE, True)
    _, loop_us = run(":memory:", users, min(seconds, 2), "SELECT 1, 2, 3", "SELECT 1", False)
    print(json.dumps({"rate": rate, "cpu_us": cpu_us, "loop_cpu_us": loop_us}))


if __name__ == "__main__":
    main()
