"""The PostgreSQL log's tables and statements, and how asyncpg's errors are sorted.

Kept apart from :mod:`tuco.log.postgres` so the SQL can be read in one place.
"""

from __future__ import annotations

import asyncpg

from tuco.errors import LogFormatError

__all__ = [
    "BOOTSTRAP_HEAD",
    "CHANNEL",
    "EVENTS_AFTER",
    "LIVE_LEASES",
    "LIVE_TOKENS",
    "PRUNE_BATCHES",
    "READ_HEAD",
    "SCHEMA_VERSION",
    "STATE_BY_SEQUENCE",
    "WRITE_BATCH",
    "WRITE_EXPIRING_BATCH",
    "ensure_schema",
    "is_permission_denied",
    "is_transient",
    "missing_privileges",
    "refusal",
]

SCHEMA_VERSION = 6
CHANNEL = "tuco_events"

# Taken in the creating transaction so replicas starting together do not race on
# CREATE TABLE IF NOT EXISTS (which can fail with a unique violation on pg_type).
_SCHEMA_LOCK = 0x7475_636F_0000_0001  # "tuco", 1

# Version 1: the tables. Frozen: a database at version 1 has exactly these.
_V1 = [
    """CREATE TABLE IF NOT EXISTS tuco_schema (
        version integer PRIMARY KEY,
        installed_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS tuco_events (
        sequence bigint PRIMARY KEY,
        type smallint NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS tuco_state (
        key bytea PRIMARY KEY,
        value bytea NOT NULL,
        sequence bigint NOT NULL)""",
    # Bootstrap streams the state in sequence order; the index spares it a sort.
    "CREATE INDEX IF NOT EXISTS tuco_state_sequence ON tuco_state (sequence)",
    """CREATE TABLE IF NOT EXISTS tuco_head (
        id integer PRIMARY KEY CHECK (id = 1),
        sequence bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tuco_batches (
        id uuid PRIMARY KEY,
        first_sequence bigint NOT NULL,
        last_sequence bigint NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now())""",
    "INSERT INTO tuco_head (id, sequence) VALUES (1, 0) ON CONFLICT DO NOTHING",
]

# Version 2: the whole write of a batch is one server-side step, so the head row
# lock is taken and released inside one statement and never held while the
# client is away (a frozen or partitioned replica used to stall every other).
# Frozen as shipped (a version 2 database holds exactly this); version 3 turns
# this four-argument form into a call of its own function.
_V2_WRITE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tuco_write_batch(batch_id uuid, types smallint[], keys bytea[], vals bytea[])
RETURNS TABLE (first_sequence bigint, last_sequence bigint, committed_at timestamptz, replayed boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    head bigint;
    total integer := cardinality(types);
BEGIN
    -- 1. lock
    SELECT h.sequence INTO head FROM tuco_head h WHERE h.id = 1 FOR UPDATE;
    -- 2. dedupe (a new snapshot: READ COMMITTED statements see what committed while we waited)
    RETURN QUERY SELECT b.first_sequence, b.last_sequence, b.committed_at, true
        FROM tuco_batches b WHERE b.id = batch_id;
    IF FOUND THEN
        RETURN;
    END IF;
    -- 3. decide: nothing yet
    -- 4. record
    INSERT INTO tuco_events (sequence, type, key, value)
        SELECT head + m.n, m.type, m.key, m.value
        FROM unnest(types, keys, vals) WITH ORDINALITY AS m(type, key, value, n);
    INSERT INTO tuco_state AS s (key, value, sequence)
        SELECT l.key, l.value, l.sequence FROM (
            SELECT DISTINCT ON (m.key) m.key, m.value, m.type, head + m.n AS sequence
            FROM unnest(types, keys, vals) WITH ORDINALITY AS m(type, key, value, n)
            ORDER BY m.key, m.n DESC) l
        WHERE l.type = 1
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, sequence = excluded.sequence;
    DELETE FROM tuco_state s USING (
            SELECT DISTINCT ON (m.key) m.key, m.type
            FROM unnest(types, keys) WITH ORDINALITY AS m(type, key, n)
            ORDER BY m.key, m.n DESC) l
        WHERE l.type = 2 AND s.key = l.key;
    UPDATE tuco_head SET sequence = head + total WHERE id = 1;
    INSERT INTO tuco_batches (id, first_sequence, last_sequence) VALUES (batch_id, head + 1, head + total);
    PERFORM pg_notify('{CHANNEL}', (head + total)::text);
    -- 5. return
    RETURN QUERY SELECT head + 1, head + total, now(), false;
END
$fn$"""

# Version 3: per-key revisions and conditional writes. tuco_state keeps each
# live key's create_revision and version beside its sequence (its
# mod_revision), and the write function decides preconditions.
#
# tuco_write_batch (five arguments) is THE place where a batch is decided and
# recorded; keep it that way. Its steps, in order:
#   1. lock   take the tuco_head row lock: it orders writers across replicas, so
#             sequence N+1 never commits before N (no gap a follower could skip),
#             and nobody else decides or writes until we commit;
#   2. dedupe look the batch id up (after the lock, so a retry waits for the commit
#             of an earlier attempt still in flight): found means it committed,
#             and its recorded outcome is returned with replayed = true, nothing
#             written or decided again;
#   3. decide with expected NULL (no mutation has a condition) every mutation is
#             written. Otherwise, in the batch's order, each mutation's condition
#             (expected[i]: NULL none, -1 the key exists, 0 it is absent, N its
#             mod_revision is N) is judged against the key's mod_revision: from
#             tuco_state (read under the lock) or, if the batch touched the key
#             before, as that earlier mutation left it. A refused mutation is not
#             written and takes no sequence; its ordinal and the revision it was
#             judged against are kept;
#   4. record number the written events head+1..., insert them, bring tuco_state
#             to each key's last write (a DELETE ends the key's life, the next PUT
#             starts one: create_revision is that PUT, version counts the PUTs
#             since), move the head and NOTIFY (delivered on commit) if anything
#             was written, and remember the batch id with its refusals;
#   5. return (first_sequence, last_sequence, committed_at, replayed, refused,
#             refused_revisions): the written events are first..last in batch order
#             (last = first - 1 if none), refused the 1-based ordinals of the
#             refused mutations and refused_revisions their keys' revisions
#             (both NULL when nothing was refused).
# Inputs are parallel arrays in the batch's order (type 1 PUT, 2 DELETE).
_V3_WRITE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tuco_write_batch(
    batch_id uuid, types smallint[], keys bytea[], vals bytea[], expected bigint[])
RETURNS TABLE (first_sequence bigint, last_sequence bigint, committed_at timestamptz, replayed boolean,
               refused integer[], refused_revisions bigint[])
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    head bigint;
    total integer := cardinality(types);
    written integer := 0;
    seqs bigint[];         -- per mutation: its sequence, NULL if refused
    earlier integer[];     -- per mutation: the ordinal of the batch's previous mutation of the key
    stored bigint[];       -- per mutation: the key's mod_revision in tuco_state (0: absent)
    left_at bigint[];      -- per mutation: the key's mod_revision after it
    seen bigint;
    want bigint;
    refused_at integer[];
    refused_rev bigint[];
BEGIN
    -- 1. lock
    SELECT h.sequence INTO head FROM tuco_head h WHERE h.id = 1 FOR UPDATE;
    -- 2. dedupe (a new snapshot: READ COMMITTED statements see what committed while we waited)
    RETURN QUERY SELECT b.first_sequence, b.last_sequence, b.committed_at, true, b.refused, b.refused_revisions
        FROM tuco_batches b WHERE b.id = batch_id;
    IF FOUND THEN
        RETURN;
    END IF;
    -- 3. decide
    IF expected IS NULL THEN
        written := total;
        seqs := ARRAY(SELECT generate_series(head + 1, head + total));
    ELSE
        SELECT array_agg(p.earlier ORDER BY p.n), array_agg(p.stored ORDER BY p.n) INTO earlier, stored
        FROM (SELECT m.n, lag(m.n) OVER (PARTITION BY m.key ORDER BY m.n)::integer AS earlier,
                     coalesce(s.sequence, 0) AS stored
              FROM unnest(keys) WITH ORDINALITY AS m(key, n) LEFT JOIN tuco_state s ON s.key = m.key) p;
        FOR i IN 1 .. total LOOP
            IF earlier[i] IS NULL THEN
                seen := stored[i];
            ELSE
                seen := left_at[earlier[i]];
            END IF;
            want := expected[i];
            IF want IS NULL OR want = seen OR (want < 0 AND seen <> 0) THEN
                written := written + 1;
                seqs[i] := head + written;
                left_at[i] := CASE WHEN types[i] = 1 THEN head + written ELSE 0 END;
            ELSE
                seqs[i] := NULL;
                left_at[i] := seen;
                refused_at := refused_at || i;
                refused_rev := refused_rev || seen;
            END IF;
        END LOOP;
    END IF;
    -- 4. record
    IF written > 0 THEN
        INSERT INTO tuco_events (sequence, type, key, value)
            SELECT m.seq, m.type, m.key, m.value FROM unnest(seqs, types, keys, vals) AS m(seq, type, key, value)
            WHERE m.seq IS NOT NULL;
        -- A key this batch deletes loses its row: a PUT after the DELETE starts a new life.
        -- (Most batches delete nothing; skipping the statement keeps them as cheap as in version 2.)
        IF 2 = ANY(types) THEN
            DELETE FROM tuco_state s USING unnest(seqs, types, keys) AS m(seq, type, key)
                WHERE m.seq IS NOT NULL AND m.type = 2 AND s.key = m.key;
        END IF;
        -- Each key whose last write is a PUT, with the PUTs after the batch's last DELETE of it (all, if none).
        INSERT INTO tuco_state AS s (key, value, sequence, create_revision, version)
            SELECT DISTINCT ON (t.key) t.key, t.value, t.seq, min(t.seq) OVER k, count(*) OVER k
            FROM (SELECT m.seq, m.key, m.value, max(m.seq) FILTER (WHERE m.type = 2) OVER (PARTITION BY m.key) AS cut
                  FROM unnest(seqs, types, keys, vals) AS m(seq, type, key, value)
                  WHERE m.seq IS NOT NULL) t
            WHERE t.seq > coalesce(t.cut, 0)
            WINDOW k AS (PARTITION BY t.key)
            ORDER BY t.key, t.seq DESC
            ON CONFLICT (key) DO UPDATE
                SET value = excluded.value, sequence = excluded.sequence, version = s.version + excluded.version;
        UPDATE tuco_head SET sequence = head + written WHERE id = 1;
        PERFORM pg_notify('{CHANNEL}', (head + written)::text);
    END IF;
    INSERT INTO tuco_batches (id, first_sequence, last_sequence, refused, refused_revisions)
        VALUES (batch_id, head + 1, head + written, refused_at, refused_rev);
    -- 5. return
    RETURN QUERY SELECT head + 1, head + written, now(), false, refused_at, refused_rev;
END
$fn$"""

# A replica of version 2 calls the four-argument function; during a rolling
# upgrade it keeps writing, through the new one, so revisions stay right.
_V3_V2_CALL = """
CREATE OR REPLACE FUNCTION tuco_write_batch(batch_id uuid, types smallint[], keys bytea[], vals bytea[])
RETURNS TABLE (first_sequence bigint, last_sequence bigint, committed_at timestamptz, replayed boolean)
LANGUAGE sql VOLATILE AS $fn$
    SELECT w.first_sequence, w.last_sequence, w.committed_at, w.replayed
    FROM tuco_write_batch(batch_id, types, keys, vals, NULL::bigint[]) w
$fn$"""

_V3 = [
    # Writers wait while the revisions are computed (the head lock first, as writers take it, so no deadlock).
    "SELECT 1 FROM tuco_head WHERE id = 1 FOR UPDATE",
    "ALTER TABLE tuco_state ADD COLUMN create_revision bigint, ADD COLUMN version bigint",
    # A key's current life began after its last DELETE: the first PUT since created it, each PUT since counts.
    """UPDATE tuco_state s SET create_revision = l.created, version = l.puts FROM (
        SELECT e.key, min(e.sequence) AS created, count(*) AS puts
        FROM tuco_events e LEFT JOIN (
            SELECT key, max(sequence) AS cut FROM tuco_events WHERE type = 2 GROUP BY key) d ON d.key = e.key
        WHERE e.type = 1 AND e.sequence > coalesce(d.cut, 0)
        GROUP BY e.key) l
    WHERE s.key = l.key""",
    # A key whose events were all deleted from tuco_events (pruned history): its last write is all we know.
    "UPDATE tuco_state SET create_revision = sequence, version = 1 WHERE create_revision IS NULL",
    # No default: a version 1 writer (which would leave the revisions stale) is refused rather than trusted.
    "ALTER TABLE tuco_state ALTER COLUMN create_revision SET NOT NULL, ALTER COLUMN version SET NOT NULL",
    "ALTER TABLE tuco_batches ADD COLUMN refused integer[], ADD COLUMN refused_revisions bigint[]",
    _V3_WRITE_FUNCTION,
    _V3_V2_CALL,
]

# Version 4: expiring keys and leases. Events keep their deadline (absolute Unix
# ms, decided by THE DATABASE'S CLOCK: replicas' clocks disagree, the database is
# the one they share, so a key expires at one moment for all of them), lease and
# ttl; tuco_state keeps each live key's deadline or lease, tuco_leases the live
# leases, so a fresh replica bootstraps them.
#
# The five-argument function stays the path of every batch without a deadline
# or lease (as cheap as in version 3); its only change is that a PUT clears the
# key's deadline and lease (a PUT without ?ttl= makes a key permanent, as etcd's).
_V4_WRITE_FUNCTION = _V3_WRITE_FUNCTION.replace(
    "SET value = excluded.value, sequence = excluded.sequence, version = s.version + excluded.version;",
    "SET value = excluded.value, sequence = excluded.sequence, version = s.version + excluded.version,\n"
    "                    deadline = NULL, lease = NULL;",
)

# tuco_write_batch (eight arguments) decides and records a batch that has a
# deadline, a lease or an expired-only condition in it, one mutation at a time
# in the batch's order (each sees what the earlier ones wrote), under the same
# head lock and with the same dedupe and return as the five-argument one:
#   ttls[i]    PUT: the key lives that many ms from now; grant: the lease's ttl
#   leases[i]  PUT: attach to that lease; keepalive (5) / revoke (6): that lease
#   expired[i] DELETE / revoke: only if the key's (lease's) deadline <= now
# "now" is clock_timestamp() in Unix ms. A refused mutation's revision is the
# key's (0 absent), or -1 when its lease does not exist (or, for a PUT or a
# keepalive, has expired). A grant's lease id is its own sequence.
_V4_EXPIRING_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tuco_write_batch(
    batch_id uuid, types smallint[], keys bytea[], vals bytea[], expected bigint[],
    ttls bigint[], leases bigint[], expired boolean[])
RETURNS TABLE (first_sequence bigint, last_sequence bigint, committed_at timestamptz, replayed boolean,
               refused integer[], refused_revisions bigint[])
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    head bigint;
    total integer := cardinality(types);
    written integer := 0;
    now_ms bigint;
    seq bigint;
    cur bigint;
    cur_deadline bigint;
    cur_lease bigint;
    l_ttl bigint;
    l_deadline bigint;
    new_deadline bigint;
    ok boolean;
    refused_at integer[];
    refused_rev bigint[];
BEGIN
    -- 1. lock
    SELECT h.sequence INTO head FROM tuco_head h WHERE h.id = 1 FOR UPDATE;
    -- 2. dedupe
    RETURN QUERY SELECT b.first_sequence, b.last_sequence, b.committed_at, true, b.refused, b.refused_revisions
        FROM tuco_batches b WHERE b.id = batch_id;
    IF FOUND THEN
        RETURN;
    END IF;
    now_ms := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    -- 3 and 4, one mutation at a time: decide, then record
    FOR i IN 1 .. total LOOP
        ok := true;
        seq := head + written + 1;
        IF types[i] = 1 OR types[i] = 2 THEN
            SELECT s.sequence, s.deadline, s.lease INTO cur, cur_deadline, cur_lease
                FROM tuco_state s WHERE s.key = keys[i];
            IF NOT FOUND THEN
                cur := 0;
                cur_deadline := NULL;
                cur_lease := NULL;
            END IF;
            IF expected[i] IS NOT NULL AND NOT (expected[i] = cur OR (expected[i] < 0 AND cur <> 0)) THEN
                ok := false;
            ELSIF types[i] = 2 AND expired[i] THEN
                IF cur = 0 THEN
                    ok := false;
                ELSIF cur_lease IS NOT NULL THEN
                    SELECT l.deadline INTO l_deadline FROM tuco_leases l WHERE l.id = cur_lease;
                    IF FOUND AND l_deadline > now_ms THEN
                        ok := false;  -- kept alive meanwhile
                    END IF;
                ELSIF cur_deadline IS NULL OR cur_deadline > now_ms THEN
                    ok := false;  -- rewritten meanwhile, or not due by the database's clock
                END IF;
            ELSIF types[i] = 1 AND leases[i] IS NOT NULL THEN
                SELECT l.deadline INTO l_deadline FROM tuco_leases l WHERE l.id = leases[i];
                IF NOT FOUND OR l_deadline <= now_ms THEN
                    ok := false;
                    cur := -1;
                END IF;
            END IF;
            IF ok AND types[i] = 1 THEN
                new_deadline := CASE WHEN ttls[i] IS NOT NULL THEN now_ms + ttls[i] END;
                INSERT INTO tuco_events (sequence, type, key, value, deadline, lease)
                    VALUES (seq, 1, keys[i], vals[i], new_deadline, leases[i]);
                INSERT INTO tuco_state AS s (key, value, sequence, create_revision, version, deadline, lease)
                    VALUES (keys[i], vals[i], seq, seq, 1, new_deadline, leases[i])
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value, sequence = excluded.sequence,
                        version = s.version + 1, deadline = excluded.deadline, lease = excluded.lease;
            ELSIF ok THEN
                INSERT INTO tuco_events (sequence, type, key, value) VALUES (seq, 2, keys[i], ''::bytea);
                DELETE FROM tuco_state s WHERE s.key = keys[i];
            END IF;
        ELSIF types[i] = 4 THEN
            INSERT INTO tuco_events (sequence, type, key, value, deadline, lease, ttl)
                VALUES (seq, 4, ''::bytea, ''::bytea, now_ms + ttls[i], seq, ttls[i]);
            INSERT INTO tuco_leases (id, ttl, deadline) VALUES (seq, ttls[i], now_ms + ttls[i]);
        ELSE
            SELECT l.ttl, l.deadline INTO l_ttl, l_deadline FROM tuco_leases l WHERE l.id = leases[i];
            IF NOT FOUND OR (types[i] = 5 AND l_deadline <= now_ms) THEN
                ok := false;
                cur := -1;
            ELSIF types[i] = 6 AND expired[i] AND l_deadline > now_ms THEN
                ok := false;  -- kept alive meanwhile
                cur := 0;
            ELSIF types[i] = 5 THEN
                UPDATE tuco_leases l SET deadline = now_ms + l_ttl WHERE l.id = leases[i];
                INSERT INTO tuco_events (sequence, type, key, value, deadline, lease, ttl)
                    VALUES (seq, 5, ''::bytea, ''::bytea, now_ms + l_ttl, leases[i], l_ttl);
            ELSE
                DELETE FROM tuco_leases l WHERE l.id = leases[i];
                INSERT INTO tuco_events (sequence, type, key, value, lease)
                    VALUES (seq, 6, ''::bytea, ''::bytea, leases[i]);
            END IF;
        END IF;
        IF ok THEN
            written := written + 1;
        ELSE
            refused_at := refused_at || i;
            refused_rev := refused_rev || cur;
        END IF;
    END LOOP;
    IF written > 0 THEN
        UPDATE tuco_head SET sequence = head + written WHERE id = 1;
        PERFORM pg_notify('{CHANNEL}', (head + written)::text);
    END IF;
    INSERT INTO tuco_batches (id, first_sequence, last_sequence, refused, refused_revisions)
        VALUES (batch_id, head + 1, head + written, refused_at, refused_rev);
    -- 5. return
    RETURN QUERY SELECT head + 1, head + written, now(), false, refused_at, refused_rev;
END
$fn$"""

_V4 = [
    "SELECT 1 FROM tuco_head WHERE id = 1 FOR UPDATE",
    # Nullable columns without defaults: adding them rewrites nothing, and old rows have no deadline.
    "ALTER TABLE tuco_events ADD COLUMN deadline bigint, ADD COLUMN lease bigint, ADD COLUMN ttl bigint",
    "ALTER TABLE tuco_state ADD COLUMN deadline bigint, ADD COLUMN lease bigint",
    """CREATE TABLE IF NOT EXISTS tuco_leases (
        id bigint PRIMARY KEY,
        ttl bigint NOT NULL,
        deadline bigint NOT NULL)""",
    _V4_WRITE_FUNCTION,
    _V4_EXPIRING_FUNCTION,
]

# Version 5: tokens (users and permissions). A token's events go through the
# eight-argument function, like lease records: type 7 creates token keys[i]
# with record vals[i] (grants and the SHA-256 of its secret, never the secret),
# type 8 revokes it (refused with revision -1 if there is no such token).
# tuco_tokens keeps the live ones, so a fresh replica bootstraps them; revoked
# tokens leave it at once; expired ones stay until revoked (the registry
# refuses them by their expires_at).
_V5_TOKEN_BRANCHES = """        ELSIF types[i] = 7 THEN
            INSERT INTO tuco_tokens (id, record, sequence) VALUES (keys[i], vals[i], seq)
                ON CONFLICT (id) DO NOTHING;
            IF NOT FOUND THEN
                ok := false;
                cur := -1;
            ELSE
                INSERT INTO tuco_events (sequence, type, key, value) VALUES (seq, 7, keys[i], vals[i]);
            END IF;
        ELSIF types[i] = 8 THEN
            DELETE FROM tuco_tokens t WHERE t.id = keys[i];
            IF NOT FOUND THEN
                ok := false;
                cur := -1;
            ELSE
                INSERT INTO tuco_events (sequence, type, key, value) VALUES (seq, 8, keys[i], ''::bytea);
            END IF;
"""
_V5_EXPIRING_FUNCTION = _V4_EXPIRING_FUNCTION.replace(
    "        ELSIF types[i] = 4 THEN\n", _V5_TOKEN_BRANCHES + "        ELSIF types[i] = 4 THEN\n", 1
)
if _V5_EXPIRING_FUNCTION == _V4_EXPIRING_FUNCTION:  # pragma: no cover - a guard on the text above
    raise RuntimeError("the version 5 write function could not be derived from version 4's")

_V5 = [
    "SELECT 1 FROM tuco_head WHERE id = 1 FOR UPDATE",
    """CREATE TABLE IF NOT EXISTS tuco_tokens (
        id bytea PRIMARY KEY,
        record bytea NOT NULL,
        sequence bigint NOT NULL)""",
    _V5_EXPIRING_FUNCTION,
]

# Version 6: lease owners. A grant's vals[i] is its owner (the token id or
# certificate identity that granted it; empty for none): the grant's event keeps
# it as its value and tuco_leases in its owner column, so every replica, a fresh
# one too, knows whose a lease is. Leases granted before have no owner (NULL).
# A version 5 replica still writing during a rolling upgrade sends an empty
# value: its grants have no owner (only admins may use them once it is gone).
_V5_GRANT = """            INSERT INTO tuco_events (sequence, type, key, value, deadline, lease, ttl)
                VALUES (seq, 4, ''::bytea, ''::bytea, now_ms + ttls[i], seq, ttls[i]);
            INSERT INTO tuco_leases (id, ttl, deadline) VALUES (seq, ttls[i], now_ms + ttls[i]);
"""
_V6_GRANT = """            INSERT INTO tuco_events (sequence, type, key, value, deadline, lease, ttl)
                VALUES (seq, 4, ''::bytea, vals[i], now_ms + ttls[i], seq, ttls[i]);
            INSERT INTO tuco_leases (id, ttl, deadline, owner)
                VALUES (seq, ttls[i], now_ms + ttls[i], nullif(vals[i], ''::bytea));
"""
_V6_EXPIRING_FUNCTION = _V5_EXPIRING_FUNCTION.replace(_V5_GRANT, _V6_GRANT, 1)
if _V6_EXPIRING_FUNCTION == _V5_EXPIRING_FUNCTION:  # pragma: no cover - a guard on the text above
    raise RuntimeError("the version 6 write function could not be derived from version 5's")

_V6 = [
    "SELECT 1 FROM tuco_head WHERE id = 1 FOR UPDATE",
    "ALTER TABLE tuco_leases ADD COLUMN owner bytea",
    _V6_EXPIRING_FUNCTION,
]

# Each step brings a database from the version before to its own; run in order.
_MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: [_V2_WRITE_FUNCTION], 3: _V3, 4: _V4, 5: _V5, 6: _V6}

# One round trip writes a whole batch; see _V3_WRITE_FUNCTION. Runs outside any
# explicit transaction, so it commits before the reply is sent.
WRITE_BATCH = """SELECT first_sequence, last_sequence, committed_at, replayed, refused, refused_revisions
    FROM tuco_write_batch($1, $2, $3, $4, $5)"""
WRITE_EXPIRING_BATCH = """SELECT first_sequence, last_sequence, committed_at, replayed, refused, refused_revisions
    FROM tuco_write_batch($1, $2, $3, $4, $5, $6, $7, $8)"""
# The database's clock (Unix ms) comes with every head read: how a replica keeps its estimate of it.
READ_HEAD = """SELECT h.sequence, e.committed_at, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM tuco_head h LEFT JOIN tuco_events e ON e.sequence = h.sequence WHERE h.id = 1"""
EVENTS_AFTER = """SELECT sequence, type, key, value, committed_at, deadline, lease, ttl FROM tuco_events
    WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3"""
BOOTSTRAP_HEAD = """SELECT h.sequence, e.committed_at, e.type, e.key, e.deadline, e.lease, e.ttl,
        floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM tuco_head h LEFT JOIN tuco_events e ON e.sequence = h.sequence WHERE h.id = 1"""
STATE_BY_SEQUENCE = """SELECT sequence, key, value, create_revision, version, deadline, lease
    FROM tuco_state ORDER BY sequence"""
LIVE_LEASES = "SELECT id, ttl, deadline, coalesce(owner, ''::bytea) FROM tuco_leases ORDER BY id"
LIVE_TOKENS = "SELECT sequence, id, record FROM tuco_tokens ORDER BY sequence"
PRUNE_BATCHES = "DELETE FROM tuco_batches WHERE committed_at < now() - interval '1 hour'"


async def ensure_schema(conn: asyncpg.Connection) -> int:
    """Create or migrate the schema to :data:`SCHEMA_VERSION` (safe when replicas start together).

    Returns the version found before (0 for an empty database). The migration is
    one transaction: it completes, or the database is left as it was. Refuses a
    newer schema, and a relation tuco would create that another program already
    has, with :class:`~tuco.errors.LogFormatError` naming it. Replicas of version 2 keep
    writing during a rolling upgrade (their call of the write function is kept,
    and goes through the new one); version 1 replicas' writes are refused by the
    database once version 3 is installed, as they would leave revisions stale.
    """
    if await conn.fetchval("SELECT to_regclass('tuco_schema') IS NOT NULL"):
        try:
            version = await conn.fetchval("SELECT max(version) FROM tuco_schema")
        except asyncpg.UndefinedColumnError:  # not tuco's table: the transaction below says whose
            version = None
        if version == SCHEMA_VERSION:
            return SCHEMA_VERSION
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        # The catalog, not to_regclass: its cached answer can predate a creation committed while we waited.
        found = await _installed_version(conn)
        if found > SCHEMA_VERSION:
            raise LogFormatError(
                f"the database holds tuco schema version {found}; this build reads version {SCHEMA_VERSION}"
            )
        await _refuse_foreign_relations(conn, found)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO tuco_schema (version) VALUES ($1)", version)
    return int(found)


# The relations each version creates (a table's primary key index is one too). CREATE TABLE IF NOT
# EXISTS would take another program's table of the same name for tuco's and record the version
# over it; they are looked for first, in the schema tuco creates its tables in.
_CREATES: dict[int, tuple[str, ...]] = {
    1: (
        "tuco_schema",
        "tuco_schema_pkey",
        "tuco_events",
        "tuco_events_pkey",
        "tuco_state",
        "tuco_state_pkey",
        "tuco_state_sequence",
        "tuco_head",
        "tuco_head_pkey",
        "tuco_batches",
        "tuco_batches_pkey",
    ),
    4: ("tuco_leases", "tuco_leases_pkey"),
    5: ("tuco_tokens", "tuco_tokens_pkey"),
}
_RELATION_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "i": "index", "S": "sequence"}
_FOUND_RELATIONS = """SELECT c.relname, c.relkind::text FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1::text[]) ORDER BY c.relname"""
_SCHEMA_TABLE = """SELECT c.relkind::text, (SELECT count(*) FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = 'version' AND a.atttypid = 'integer'::regtype AND NOT a.attisdropped)
    FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'tuco_schema'"""


async def _installed_version(conn: asyncpg.Connection) -> int:
    """The schema version recorded (0: no tuco_schema); LogFormatError if tuco_schema is another program's."""
    row = await conn.fetchrow(_SCHEMA_TABLE)
    if row is None:
        return 0
    if row[0] not in ("r", "p") or not row[1]:
        raise _foreign("tuco_schema", str(row[0]))
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM tuco_schema"))


async def _refuse_foreign_relations(conn: asyncpg.Connection, found: int) -> None:
    """Raise LogFormatError naming the first relation the versions after ``found`` would create that exists."""
    names = [name for version, created in _CREATES.items() if version > found for name in created]
    rows = await conn.fetch(_FOUND_RELATIONS, names)
    if rows:
        raise _foreign(str(rows[0][0]), str(rows[0][1]))


def _foreign(name: str, kind: str) -> LogFormatError:
    what = _RELATION_KINDS.get(kind, "relation")
    return LogFormatError(
        f"the database already has a {what} {name} that tuco did not create (another program's?); "
        "nothing was changed: give tuco a database or schema of its own"
    )


# What writing takes beyond reading: the write functions run with the caller's privileges
# (SECURITY INVOKER), so a role that may only SELECT reads the log and cannot write it.
WRITE_PRIVILEGES: tuple[tuple[str, str], ...] = (
    ("tuco_batches", "DELETE"),  # pruning old batch ids
    ("tuco_batches", "INSERT"),
    ("tuco_events", "INSERT"),
    ("tuco_head", "UPDATE"),  # also what its row lock (FOR UPDATE) needs
    ("tuco_leases", "DELETE"),
    ("tuco_leases", "INSERT"),
    ("tuco_leases", "UPDATE"),
    ("tuco_state", "DELETE"),
    ("tuco_state", "INSERT"),
    ("tuco_state", "UPDATE"),
    ("tuco_tokens", "DELETE"),
    ("tuco_tokens", "INSERT"),
)
_WRITE_FUNCTIONS = (
    "tuco_write_batch(uuid, smallint[], bytea[], bytea[], bigint[])",
    "tuco_write_batch(uuid, smallint[], bytea[], bytea[], bigint[], bigint[], bigint[], boolean[])",
)
_MISSING_PRIVILEGES = """SELECT m.name FROM (
        SELECT 1 AS part, w.n, w.what || ' on ' || w.name AS name, has_table_privilege(w.name, w.what) AS held
        FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(name, what, n)
        UNION ALL
        SELECT 2, f.n, 'EXECUTE on ' || f.name, has_function_privilege(f.name, 'EXECUTE')
        FROM unnest($3::text[]) WITH ORDINALITY AS f(name, n)) m
    WHERE NOT m.held ORDER BY m.part, m.n"""


async def missing_privileges(conn: asyncpg.Connection) -> tuple[str, ...]:
    """The privileges writing needs that the connected role lacks ("INSERT on tuco_events"...), in a fixed order."""
    rows = await conn.fetch(
        _MISSING_PRIVILEGES,
        [name for name, _ in WRITE_PRIVILEGES],
        [what for _, what in WRITE_PRIVILEGES],
        list(_WRITE_FUNCTIONS),
    )
    return tuple(str(row[0]) for row in rows)


def is_permission_denied(exc: BaseException) -> bool:
    """Whether the database refused a statement for a missing privilege (SQLSTATE 42501)."""
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) == "42501"


# SQLSTATE classes worth retrying: connection exceptions, transaction rollback
# (serialization failure, deadlock), insufficient resources (too many
# connections), operator intervention (shutdown, cancel), idle-in-transaction timeout.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})
_TRANSIENT_STATES = frozenset({"25P03", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later (on a new connection) may succeed."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, (asyncpg.DataError, asyncpg.ClientConfigurationError)):
        return False
    return isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError))


def refusal(exc: BaseException) -> str | None:
    """In tuco's words, why the server will never accept this configuration; None if waiting may help.

    A database that does not exist or a login the server refuses is a mistake to
    report at once, not an outage to ride out.
    """
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return "the connection settings are invalid"
    state = ""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
    if state == "3D000":
        return "it does not exist"
    if state.startswith("28"):
        return "the server refused the login (authentication)"
    if state == "42501":
        return "the user lacks a privilege tuco needs (permission denied)"
    return None
