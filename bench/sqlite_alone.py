"""SQLite alone: what a wrong code costs the database, without HTTP, crypto or `mfa`.

Run by bench/run on a copy of the benchmark's database (python3 bench/sqlite_alone.py DB
USERS SECONDS). Python's sqlite3 module (SQLite's own C library) runs a wrong code's two
statements as `mfa` does: the user's row read on a read connection, then the conditional
update of the failure count on the write connection, in transactions of 256 updates with
synchronous=FULL in WAL mode, and a second thread checkpointing after each commit (as
src/store/sqlite.rs does). Prints one JSON line: wrong codes a second (one thread runs both
statements in turn, so this is not the most the file allows), the CPU per wrong code of
this process (both threads), and the CPU per iteration of the same loop with trivial
statements (Python's own share, to subtract).
"""
import json
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
        " FROM (SELECT * FROM users WHERE username = ?) u LEFT JOIN authenticators a ON a.username = u.username"
        " ORDER BY u.username, a.created_at, a.id")
WRITE = ("UPDATE users SET failed_attempts = ?, locked_until = NULL, last_failed_at = ?, failed_from = '127.0.0.1'"
         " WHERE username = ? AND failed_attempts = ? AND locked_until IS ? AND last_failed_at IS ?")


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


def main():
    path, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rate, cpu_us = run(path, users, seconds, READ, WRITE, True)
    _, loop_us = run(":memory:", users, min(seconds, 2), "SELECT 1, 2, 3", "SELECT 1", False)
    print(json.dumps({"rate": rate, "cpu_us": cpu_us, "loop_cpu_us": loop_us}))


if __name__ == "__main__":
    main()
