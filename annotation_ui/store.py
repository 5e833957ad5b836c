"""The annotation queue, users, sessions, trajectories and reviews: one SQLite file.

SQLite in WAL mode, so the server and a `synth run` harvesting from the same
file never block each other for long, and nothing else has to run. Every
change that must be all-or-nothing is one `BEGIN IMMEDIATE` transaction: it
takes the write lock first, so two labelers asking for the next task at the
same moment are served one after the other and can never get the same item.

A queue **item** is one task for one labeler: a task sampled for overlap gets
several items (slots), and one labeler never gets two slots of the same task.
An item is `queued`, `leased` (to one labeler until `lease_expires`, extended
by heartbeats), `done` (a trajectory was submitted) or `dropped` (skipped by
`max_skips` labelers). An expired lease puts the item back in the queue, with
its draft cleared; every lease is also kept in `leases`, an audit log. The
draft of an expired lease is kept in `lost_drafts`, so the same labeler can
reclaim it as long as nobody else took the task.

Secrets: user tokens and session ids are stored only as SHA-256 hashes, so
the file holds nothing that logs anyone in. A token is `syn_<key id>.<secret>`:
the key id is random and public (stored as is, in `users.token_id`), so a login
finds its user without the secret and the server can limit failed attempts per
user; it is not the user name, so a token shows no name. Tokens made before key
ids (`syn_<secret>`, `token_id` NULL) still log in, found by their hash.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from synth.schema import STAGING_SCHEMA, Observation, Task, Trajectory, trajectories_to_table

ROLES = ("labeler", "reviewer", "admin")
STATES = ("queued", "leased", "done", "dropped")
TOKEN_PREFIX = "syn_"
KEY_ID = re.compile(r"[A-Za-z0-9_-]{8,32}")
"""A token's key id: base64url, so `.` can separate it from the secret."""
SESSION_TTL_S = 12 * 3600.0
LOST_DRAFT_TTL_S = 24 * 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('labeler', 'reviewer', 'admin')),
    token_hash  TEXT NOT NULL UNIQUE,
    token_id    TEXT,
    created_at  REAL NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    csrf        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id            INTEGER PRIMARY KEY,
    task_id       TEXT NOT NULL,
    slot          INTEGER NOT NULL,
    template_id   TEXT NOT NULL,
    task_json     TEXT NOT NULL,
    reason        TEXT NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 0,
    state         TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'leased', 'done', 'dropped')),
    lease_id      INTEGER,
    lease_user    INTEGER REFERENCES users(id),
    lease_expires REAL,
    done_user     INTEGER REFERENCES users(id),
    draft         TEXT,
    run_id        TEXT NOT NULL DEFAULT '',
    enqueued_at   REAL NOT NULL,
    finished_at   REAL,
    UNIQUE (task_id, slot)
);
CREATE INDEX IF NOT EXISTS items_queue ON items (state, priority DESC, id);
CREATE INDEX IF NOT EXISTS items_task ON items (task_id);
CREATE TABLE IF NOT EXISTS leases (
    id         INTEGER PRIMARY KEY,
    item_id    INTEGER NOT NULL REFERENCES items(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    leased_at  REAL NOT NULL,
    ended_at   REAL,
    outcome    TEXT
);
CREATE INDEX IF NOT EXISTS leases_item ON leases (item_id);
CREATE TABLE IF NOT EXISTS lost_drafts (
    item_id  INTEGER NOT NULL REFERENCES items(id),
    user_id  INTEGER NOT NULL REFERENCES users(id),
    draft    TEXT NOT NULL,
    lost_at  REAL NOT NULL,
    PRIMARY KEY (item_id, user_id)
);
CREATE TABLE IF NOT EXISTS skips (
    item_id  INTEGER NOT NULL REFERENCES items(id),
    task_id  TEXT NOT NULL,
    user_id  INTEGER NOT NULL REFERENCES users(id),
    reason   TEXT NOT NULL,
    at       REAL NOT NULL,
    PRIMARY KEY (item_id, user_id)
);
CREATE TABLE IF NOT EXISTS trajectories (
    trajectory_id TEXT PRIMARY KEY,
    item_id       INTEGER REFERENCES items(id),
    task_id       TEXT NOT NULL,
    template_id   TEXT NOT NULL,
    user_id       INTEGER REFERENCES users(id),
    labeler       TEXT NOT NULL,
    instruction   TEXT NOT NULL,
    status        TEXT NOT NULL,
    passed        INTEGER NOT NULL,
    reason        TEXT,
    num_steps     INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    duration_s    REAL NOT NULL,
    data          BLOB NOT NULL,
    harvested_at  REAL,
    harvest_file  TEXT
);
CREATE INDEX IF NOT EXISTS trajectories_harvest ON trajectories (harvested_at, created_at);
CREATE TABLE IF NOT EXISTS final_states (
    trajectory_id TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    screenshot    BLOB,
    width         REAL NOT NULL,
    height        REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    trajectory_id TEXT NOT NULL,
    reviewer      TEXT NOT NULL,
    verdict       TEXT NOT NULL CHECK (verdict IN ('accept', 'reject')),
    tags          TEXT NOT NULL,
    comment       TEXT NOT NULL,
    reviewed_at   REAL NOT NULL,
    override_judge  INTEGER NOT NULL DEFAULT 0,
    override_reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (trajectory_id, reviewer)
);
"""
MIGRATIONS = {
    # (table, column): the column's definition, for files made before it existed
    ("reviews", "override_judge"): "INTEGER NOT NULL DEFAULT 0",
    ("reviews", "override_reason"): "TEXT NOT NULL DEFAULT ''",
    ("users", "token_id"): "TEXT",
}
# after the columns exist; SQLite cannot add a UNIQUE column, so a unique index
# (which allows many NULLs: every user whose token predates key ids)
INDEXES = "CREATE UNIQUE INDEX IF NOT EXISTS users_token_id ON users (token_id);"


class LeaseLost(Exception):
    """The labeler no longer holds this item (expired, skipped, submitted)."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str


@dataclass
class Lease:
    item_id: int
    lease_id: int
    task: Task
    slot: int
    reason: str
    expires: float
    draft: list[dict[str, Any]] = field(default_factory=list)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A new (key id, token): `syn_<key id>.<secret>`."""
    kid = secrets.token_urlsafe(9)
    return kid, f"{TOKEN_PREFIX}{kid}.{secrets.token_urlsafe(32)}"


def token_key(token: str) -> str | None:
    """The key id of a token shaped `syn_<key id>.<secret>`; None for a token
    made before key ids (`syn_<secret>`) or anything else."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    kid, dot, secret = token[len(TOKEN_PREFIX):].partition(".")
    return kid if dot and secret and KEY_ID.fullmatch(kid) else None


def encode_trajectory(t: Trajectory) -> bytes:
    """One trajectory as a one-row Parquet file in the staging schema."""
    buf = io.BytesIO()
    pq.write_table(trajectories_to_table([t]), buf, compression="zstd")
    return buf.getvalue()


def decode_trajectory(data: bytes) -> dict[str, Any]:
    """The row of `encode_trajectory`'s file; a column that an older version
    did not write reads as None.

    Read by `ParquetFile` without threads, not by `pq.read_table`: that goes
    through Arrow's dataset scanner, whose pool thread can still be alive when
    a short command exits and abort it ("terminate called without an active
    exception", apache/arrow#34314, #39862). A one-row file gains nothing
    from threads."""
    with pq.ParquetFile(pa.BufferReader(data)) as f:
        row = f.read(use_threads=False).to_pylist()[0]
    return {name: None for name in STAGING_SCHEMA.names} | row


class Store:
    """The queue store. Safe to share between threads (a connection each) and
    between processes (SQLite locking; WAL)."""

    def __init__(
        self,
        path: Path | str,
        *,
        lease_seconds: float = 600.0,
        max_skips: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.lease_seconds = lease_seconds
        self.max_skips = max_skips
        self.clock = clock
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns a queue file made by an older version lacks."""
        c = self._conn()
        for (table, column), definition in MIGRATIONS.items():
            have = {r["name"] for r in c.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        c.executescript(INDEXES)

    # ---------------------------------------------------------------- plumbing

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds the write lock from its start."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def _q(self, sql: str, args: tuple | dict = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---------------------------------------------------------------- users

    def add_user(self, name: str, role: str) -> str:
        """Create a user; returns the login token (shown once, stored hashed)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        name = name.strip()
        if not name or len(name) > 64 or not all(ch.isalnum() or ch in "._-@" for ch in name):
            raise ValueError("a user name is 1-64 letters, digits or . _ - @")
        kid, token = new_token()
        try:
            with self._tx() as c:
                c.execute(
                    "INSERT INTO users (name, role, token_hash, token_id, created_at) VALUES (?, ?, ?, ?, ?)",
                    (name, role, hash_secret(token), kid, self.clock()),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"user {name!r} already exists") from None
        return token

    def user_by_token(self, token: str) -> User | None:
        """The active user the token logs in: looked up by its key id, then
        its hash compared in constant time; a token without a key id (made
        before them) is looked up by its hash among the users without one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        h, kid = hash_secret(token), token_key(token)
        cols = "SELECT id, name, role, token_hash, disabled FROM users"
        if kid is not None:
            row = self._q(f"{cols} WHERE token_id = ?", (kid,))
        else:
            row = self._q(f"{cols} WHERE token_hash = ? AND token_id IS NULL", (h,))
        if not row or row[0]["disabled"] or not hmac.compare_digest(row[0]["token_hash"], h):
            return None
        return User(row[0]["id"], row[0]["name"], row[0]["role"])

    def has_key(self, kid: str) -> bool:
        """Whether a user's current token has this key id (the login limits
        failures per user only for key ids that name one)."""
        return bool(self._q("SELECT 1 FROM users WHERE token_id = ?", (kid,)))

    def _user_id(self, c: sqlite3.Connection, name: str) -> int:
        row = c.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ValueError(f"no user {name!r}")
        return row["id"]

    def _log_out(self, c: sqlite3.Connection, user_id: int) -> None:
        """End the user's sessions and let their lease run out now (its draft
        is kept as a lost draft, should they come back)."""
        now = self.clock()
        c.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        c.execute("UPDATE items SET lease_expires = ? WHERE state = 'leased' AND lease_user = ?", (now - 1, user_id))
        self._expire(c, now)

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable a user (their token stops working, their sessions end) or
        enable them again (the same token works again)."""
        with self._tx() as c:
            uid = self._user_id(c, name)
            c.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), uid))
            if disabled:
                self._log_out(c, uid)

    def rotate_token(self, name: str) -> str:
        """A new token for the user (returned, shown once); the old one and
        every session made with it stop working."""
        kid, token = new_token()
        with self._tx() as c:
            uid = self._user_id(c, name)
            c.execute("UPDATE users SET token_hash = ?, token_id = ? WHERE id = ?", (hash_secret(token), kid, uid))
            self._log_out(c, uid)
        return token

    def revoke_token(self, name: str) -> None:
        """The user's token stops working and their sessions end; nothing logs
        them in until `rotate_token` issues a new one."""
        with self._tx() as c:
            uid = self._user_id(c, name)
            # no key id, and a hash of a secret nobody holds: no token matches it
            c.execute("UPDATE users SET token_hash = ?, token_id = NULL WHERE id = ?",
                      (hash_secret("revoked:" + secrets.token_urlsafe(32)), uid))
            self._log_out(c, uid)

    def users(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._q("SELECT id, name, role, created_at, disabled FROM users ORDER BY name")]

    # ---------------------------------------------------------------- sessions

    def create_session(self, user: User, ttl: float = SESSION_TTL_S) -> tuple[str, str]:
        """A new session; returns (session id for the cookie, CSRF token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        with self._tx() as c:
            c.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            c.execute(
                "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (hash_secret(sid), user.id, csrf, now, now + ttl),
            )
        return sid, csrf

    def session(self, sid: str) -> tuple[User, str] | None:
        if not sid or len(sid) > 200:
            return None
        rows = self._q(
            "SELECT u.id, u.name, u.role, u.disabled, s.csrf, s.expires_at FROM sessions s "
            "JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (hash_secret(sid),),
        )
        if not rows or rows[0]["disabled"] or rows[0]["expires_at"] < self.clock():
            return None
        r = rows[0]
        return User(r["id"], r["name"], r["role"]), r["csrf"]

    def end_session(self, sid: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM sessions WHERE id_hash = ?", (hash_secret(sid),))

    # ---------------------------------------------------------------- queue

    def enqueue(
        self, task: Task, *, slots: int = 1, reason: str = "manual", priority: int = 0, run_id: str = ""
    ) -> int:
        """Add `slots` items for `task` (ids: task id + slot), skipping those
        already there; returns how many are new. Idempotent."""
        return self.enqueue_many([(task, slots, reason, priority)], run_id=run_id)

    def enqueue_many(self, entries: list[tuple[Task, int, str, int]], run_id: str = "") -> int:
        now, added = self.clock(), 0
        with self._tx() as c:
            for task, slots, reason, priority in entries:
                blob = task.model_dump_json()
                for slot in range(slots):
                    cur = c.execute(
                        "INSERT OR IGNORE INTO items (task_id, slot, template_id, task_json, reason, priority, "
                        "run_id, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (task.task_id, slot, task.template_id, blob, reason, priority, run_id, now),
                    )
                    added += cur.rowcount
        return added

    def task_ids(self) -> set[str]:
        """Every task id with an item in the queue, in any state."""
        return {r[0] for r in self._q("SELECT DISTINCT task_id FROM items")}

    def _expire(self, c: sqlite3.Connection, now: float) -> int:
        expired = c.execute(
            "SELECT id, lease_id, lease_user, draft FROM items WHERE state = 'leased' AND lease_expires < ?", (now,)
        ).fetchall()
        for r in expired:
            c.execute("UPDATE leases SET ended_at = ?, outcome = 'expired' WHERE id = ?", (now, r["lease_id"]))
            c.execute(
                "INSERT OR REPLACE INTO lost_drafts (item_id, user_id, draft, lost_at) VALUES (?, ?, ?, ?)",
                (r["id"], r["lease_user"], r["draft"] or "[]", now),
            )
            c.execute(
                "UPDATE items SET state = 'queued', lease_user = NULL, lease_id = NULL, lease_expires = NULL, "
                "draft = NULL WHERE id = ?",
                (r["id"],),
            )
        return len(expired)

    def expire_leases(self) -> int:
        """Return expired leases' items to the queue; how many."""
        with self._tx() as c:
            return self._expire(c, self.clock())

    def _lease(self, r: sqlite3.Row) -> Lease:
        return Lease(
            item_id=r["id"],
            lease_id=r["lease_id"],
            task=Task.model_validate_json(r["task_json"]),
            slot=r["slot"],
            reason=r["reason"],
            expires=r["lease_expires"],
            draft=json.loads(r["draft"]) if r["draft"] else [],
        )

    def current_lease(self, user: User) -> Lease | None:
        rows = self._q(
            "SELECT * FROM items WHERE state = 'leased' AND lease_user = ? AND lease_expires >= ?",
            (user.id, self.clock()),
        )
        return self._lease(rows[0]) if rows else None

    def lease_next(self, user: User) -> Lease | None:
        """The labeler's current lease, else the next queued item they may take
        (not a task they hold, did or skipped), leased to them; None if none."""
        with self._tx() as c:
            now = self.clock()
            self._expire(c, now)
            held = c.execute("SELECT * FROM items WHERE state = 'leased' AND lease_user = ?", (user.id,)).fetchone()
            if held is not None:
                return self._lease(held)
            row = c.execute(
                """
                SELECT i.id FROM items i
                WHERE i.state = 'queued'
                  AND NOT EXISTS (SELECT 1 FROM items j WHERE j.task_id = i.task_id
                                  AND (j.done_user = :u OR (j.state = 'leased' AND j.lease_user = :u)))
                  AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.task_id = i.task_id AND s.user_id = :u)
                ORDER BY i.priority DESC, i.id
                LIMIT 1
                """,
                {"u": user.id},
            ).fetchone()
            if row is None:
                return None
            return self._grant(c, user, row["id"], now)

    def _grant(self, c: sqlite3.Connection, user: User, item_id: int, now: float) -> Lease:
        """Lease the queued item to `user`, with the draft they lost on it
        earlier, if any (a labeler who comes back to their own task)."""
        lost = c.execute(
            "SELECT draft FROM lost_drafts WHERE item_id = ? AND user_id = ?", (item_id, user.id)
        ).fetchone()
        c.execute("DELETE FROM lost_drafts WHERE user_id = ?", (user.id,))  # a new lease: older ones are moot
        lease_id = c.execute(
            "INSERT INTO leases (item_id, user_id, leased_at) VALUES (?, ?, ?)", (item_id, user.id, now)
        ).lastrowid
        cur = c.execute(
            "UPDATE items SET state = 'leased', lease_user = ?, lease_id = ?, lease_expires = ?, draft = ? "
            "WHERE id = ? AND state = 'queued'",
            (user.id, lease_id, now + self.lease_seconds, lost["draft"] if lost else None, item_id),
        )
        if cur.rowcount != 1:  # cannot happen under the write lock; never hand out an item twice
            raise RuntimeError(f"item {item_id} changed state during its lease")
        return self._lease(c.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone())

    def lost_draft(self, user: User) -> dict[str, Any] | None:
        """The labeler's most recently lost lease: item, steps saved, and
        whether they can still reclaim it (nobody else took the task since)."""
        rows = self._q(
            "SELECT d.item_id, d.draft, d.lost_at, i.state, i.template_id FROM lost_drafts d "
            "JOIN items i ON i.id = d.item_id WHERE d.user_id = ? AND d.lost_at >= ? ORDER BY d.lost_at DESC LIMIT 1",
            (user.id, self.clock() - LOST_DRAFT_TTL_S),
        )
        if not rows:
            return None
        r = rows[0]
        return {"item_id": r["item_id"], "template_id": r["template_id"], "steps": len(json.loads(r["draft"])),
                "lost_at": r["lost_at"], "reclaimable": r["state"] == "queued"}

    def reclaim(self, user: User, item_id: int) -> Lease:
        """Lease the item again to the labeler who lost it, with their draft;
        LeaseLost when someone else took it or the labeler holds another task."""
        with self._tx() as c:
            now = self.clock()
            self._expire(c, now)
            if c.execute("SELECT 1 FROM items WHERE state = 'leased' AND lease_user = ?", (user.id,)).fetchone():
                raise LeaseLost("you hold another task: submit or skip it first")
            row = c.execute(
                "SELECT i.state FROM lost_drafts d JOIN items i ON i.id = d.item_id "
                "WHERE d.item_id = ? AND d.user_id = ?", (item_id, user.id),
            ).fetchone()
            if row is None:
                raise LeaseLost(f"you have no lost draft of task {item_id}")
            if row["state"] != "queued":
                raise LeaseLost("someone else took this task since; your draft of it is gone")
            return self._grant(c, user, item_id, now)

    def _held(self, c: sqlite3.Connection, user: User, item_id: int) -> sqlite3.Row:
        """The item if `user` holds a live lease on it; else LeaseLost (an
        expired lease is returned to the queue on the way)."""
        now = self.clock()
        self._expire(c, now)
        row = c.execute(
            "SELECT * FROM items WHERE id = ? AND state = 'leased' AND lease_user = ?", (item_id, user.id)
        ).fetchone()
        if row is None:
            raise LeaseLost(f"task {item_id} is no longer leased to {user.name} (expired, skipped or submitted)")
        return row

    def heartbeat(self, user: User, item_id: int) -> float:
        """Extend the lease; returns the new expiry time."""
        with self._tx() as c:
            self._held(c, user, item_id)
            expires = self.clock() + self.lease_seconds
            c.execute("UPDATE items SET lease_expires = ? WHERE id = ?", (expires, item_id))
            return expires

    def save_draft(self, user: User, item_id: int, draft: list[dict[str, Any]]) -> None:
        """The actions so far (so a restarted server can replay them); also a heartbeat."""
        with self._tx() as c:
            self._held(c, user, item_id)
            c.execute(
                "UPDATE items SET draft = ?, lease_expires = ? WHERE id = ?",
                (json.dumps(draft), self.clock() + self.lease_seconds, item_id),
            )

    def live_leases(self) -> set[tuple[int, int]]:
        """(item id, user id) of every lease that has not expired."""
        rows = self._q(
            "SELECT id, lease_user FROM items WHERE state = 'leased' AND lease_expires >= ?", (self.clock(),)
        )
        return {(r["id"], r["lease_user"]) for r in rows}

    def check_lease(self, user: User, item_id: int) -> None:
        with self._tx() as c:
            self._held(c, user, item_id)

    def submit(
        self, user: User, item_id: int, trajectory: Trajectory, data: bytes | None = None,
        final: Observation | None = None,
    ) -> None:
        """Store the trajectory and close the item, if the lease is still held.
        `final`: the page after the last action, for reviewers, in
        `final_states`; the server no longer passes it, as the trajectory
        carries it (`final_screenshot`), but reads what older versions stored."""
        data = data if data is not None else encode_trajectory(trajectory)
        with self._tx() as c:
            row = self._held(c, user, item_id)
            now = self.clock()
            c.execute(
                "INSERT INTO trajectories (trajectory_id, item_id, task_id, template_id, user_id, labeler, "
                "instruction, status, passed, reason, num_steps, created_at, duration_s, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    trajectory.trajectory_id, item_id, trajectory.task_id, trajectory.template_id, user.id,
                    user.name, trajectory.instruction, trajectory.status, int(trajectory.verdict.passed),
                    trajectory.reject_reason or trajectory.verdict.reason, len(trajectory.steps), now,
                    trajectory.duration_s, data,
                ),
            )
            if final is not None:
                c.execute(
                    "INSERT OR REPLACE INTO final_states (trajectory_id, url, screenshot, width, height) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (trajectory.trajectory_id, final.url, final.screenshot, final.area.width, final.area.height),
                )
            c.execute("UPDATE leases SET ended_at = ?, outcome = 'submitted' WHERE id = ?", (now, row["lease_id"]))
            c.execute(
                "UPDATE items SET state = 'done', done_user = ?, finished_at = ?, lease_user = NULL, "
                "lease_id = NULL, lease_expires = NULL, draft = NULL WHERE id = ?",
                (user.id, now, item_id),
            )

    def skip(self, user: User, item_id: int, reason: str) -> str:
        """Give the item back with a reason; it goes to someone else, or is
        dropped once `max_skips` labelers skipped it. Returns the new state."""
        reason = reason.strip()[:500] or "no reason given"
        with self._tx() as c:
            row = self._held(c, user, item_id)
            now = self.clock()
            c.execute(
                "INSERT OR REPLACE INTO skips (item_id, task_id, user_id, reason, at) VALUES (?, ?, ?, ?, ?)",
                (item_id, row["task_id"], user.id, reason, now),
            )
            n = c.execute("SELECT count(DISTINCT user_id) FROM skips WHERE item_id = ?", (item_id,)).fetchone()[0]
            state = "dropped" if n >= self.max_skips else "queued"
            c.execute("UPDATE leases SET ended_at = ?, outcome = 'skipped' WHERE id = ?", (now, row["lease_id"]))
            c.execute(
                "UPDATE items SET state = ?, lease_user = NULL, lease_id = NULL, lease_expires = NULL, draft = NULL, "
                "finished_at = CASE WHEN ? = 'dropped' THEN ? ELSE NULL END WHERE id = ?",
                (state, state, now, item_id),
            )
            return state

    def attempt(self, user: User, task_id: str) -> int:
        """How many trajectories this labeler already made of this task (the
        next one's `attempt`, part of its deterministic id)."""
        return self._q("SELECT count(*) FROM trajectories WHERE task_id = ? AND user_id = ?", (task_id, user.id))[0][0]

    # ---------------------------------------------------------------- trajectories

    def trajectory(self, trajectory_id: str) -> dict[str, Any] | None:
        rows = self._q("SELECT data FROM trajectories WHERE trajectory_id = ?", (trajectory_id,))
        return decode_trajectory(rows[0]["data"]) if rows else None

    def final_state(self, trajectory_id: str) -> dict[str, Any] | None:
        """The page after a human trajectory's last action: url, screenshot, area size."""
        rows = self._q("SELECT * FROM final_states WHERE trajectory_id = ?", (trajectory_id,))
        return dict(rows[0]) if rows else None

    def trajectory_summaries(self) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self._q(
                "SELECT trajectory_id, task_id, template_id, labeler, instruction, status, passed, reason, "
                "num_steps, created_at, harvested_at FROM trajectories ORDER BY created_at"
            )
        ]

    def unharvested(self, limit: int = 200) -> list[tuple[str, bytes]]:
        return [
            (r["trajectory_id"], r["data"])
            for r in self._q(
                "SELECT trajectory_id, data FROM trajectories WHERE harvested_at IS NULL "
                "ORDER BY created_at, trajectory_id LIMIT ?",
                (limit,),
            )
        ]

    def mark_harvested(self, trajectory_ids: list[str], file_name: str) -> None:
        now = self.clock()
        with self._tx() as c:
            c.executemany(
                "UPDATE trajectories SET harvested_at = ?, harvest_file = ? WHERE trajectory_id = ? "
                "AND harvested_at IS NULL",
                [(now, file_name, t) for t in trajectory_ids],
            )

    # ---------------------------------------------------------------- reviews

    def add_review(
        self, trajectory_id: str, reviewer: str, verdict: str, tags: list[str], comment: str,
        override_reason: str | None = None,
    ) -> None:
        """A reviewer's verdict; a second verdict by the same reviewer replaces
        the first. `override_reason`: the reviewer accepts a trajectory the
        judge failed, on purpose, and says why (an override of the judge)."""
        if verdict not in ("accept", "reject"):
            raise ValueError("verdict must be accept or reject")
        if override_reason is not None and (verdict != "accept" or not override_reason.strip()):
            raise ValueError("overriding the judge is accepting, with a reason")
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO reviews (trajectory_id, reviewer, verdict, tags, comment, reviewed_at, "
                "override_judge, override_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (trajectory_id, reviewer, verdict, json.dumps(tags), comment, self.clock(),
                 int(override_reason is not None), (override_reason or "").strip()),
            )

    def reviews(self, trajectory_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM reviews"
        args: tuple = ()
        if trajectory_id is not None:
            sql, args = sql + " WHERE trajectory_id = ?", (trajectory_id,)
        rows = self._q(sql + " ORDER BY reviewed_at, reviewer", args)
        return [{**dict(r), "tags": json.loads(r["tags"]), "override_judge": bool(r["override_judge"])} for r in rows]

    def latest_reviews(self) -> list[dict[str, Any]]:
        """One verdict per trajectory: the most recent (reviewer name breaks ties)."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.reviews():
            latest[r["trajectory_id"]] = r
        return sorted(latest.values(), key=lambda r: r["trajectory_id"])

    # ---------------------------------------------------------------- reporting

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        now = self.clock()
        rows = self._q(
            "SELECT state, (state = 'leased' AND lease_expires < ?) AS stale, count(*) AS n FROM items GROUP BY 1, 2",
            (now,),
        )
        for r in rows:  # an expired lease is back in the queue, swept or not
            out["queued" if r["stale"] else r["state"]] += r["n"]
        return out

    def per_labeler(self) -> list[dict[str, Any]]:
        rows = self._q(
            """
            SELECT u.name, u.role,
              (SELECT count(*) FROM trajectories t WHERE t.user_id = u.id) AS submitted,
              (SELECT count(*) FROM trajectories t WHERE t.user_id = u.id AND t.passed) AS passed,
              (SELECT coalesce(avg(t.duration_s), 0) FROM trajectories t WHERE t.user_id = u.id) AS avg_s,
              (SELECT count(*) FROM skips s WHERE s.user_id = u.id) AS skipped,
              (SELECT count(*) FROM leases l WHERE l.user_id = u.id AND l.outcome = 'expired') AS expired,
              (SELECT count(*) FROM items i WHERE i.lease_user = u.id AND i.state = 'leased') AS holding,
              (SELECT count(*) FROM reviews r JOIN trajectories t USING (trajectory_id)
                 WHERE t.user_id = u.id AND r.verdict = 'accept') AS review_accepted,
              (SELECT count(*) FROM reviews r JOIN trajectories t USING (trajectory_id)
                 WHERE t.user_id = u.id AND r.verdict = 'reject') AS review_rejected,
              (SELECT count(*) FROM reviews r WHERE r.reviewer = u.name) AS reviews_given
            FROM users u ORDER BY u.name
            """
        )
        return [dict(r) for r in rows]

    def progress(self, user: User) -> dict[str, Any]:
        me = next((r for r in self.per_labeler() if r["name"] == user.name), {})
        day = self.clock() - 24 * 3600
        today = self._q("SELECT count(*) FROM trajectories WHERE user_id = ? AND created_at >= ?", (user.id, day))[0][0]
        return {
            "submitted": me.get("submitted", 0),
            "passed": me.get("passed", 0),
            "skipped": me.get("skipped", 0),
            "today": today,
            "review_accepted": me.get("review_accepted", 0),
            "review_rejected": me.get("review_rejected", 0),
            "queued": self.counts()["queued"],
        }

    def recent_skips(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._q(
            "SELECT s.task_id, s.reason, s.at, u.name FROM skips s JOIN users u ON u.id = s.user_id "
            "ORDER BY s.at DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]

    def by_template(self) -> list[dict[str, Any]]:
        rows = self._q(
            "SELECT template_id, sum(state = 'queued') AS queued, sum(state = 'leased') AS leased, "
            "sum(state = 'done') AS done, sum(state = 'dropped') AS dropped FROM items GROUP BY template_id "
            "ORDER BY template_id"
        )
        return [dict(r) for r in rows]

    def lease_log(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._q("SELECT * FROM leases ORDER BY id")]
