"""The PostgreSQL log's schema, version by version: the DDL each migration runs (see :mod:`tuco.log._pg_schema`).

A version once released is frozen: a later one changes the schema with
statements of its own, so a database at any version is brought up in order.
"""

from __future__ import annotations

from tuco.log import _pg_origins, _pg_txn

__all__ = ["CHANNEL", "MIGRATIONS"]

CHANNEL = "tuco_events"

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

# Version 7: transactions, decided and recorded by one call of tuco_txn (see tuco.log._pg_txn).
_V7 = _pg_txn.migration(CHANNEL)

# Version 8: who made each change and why (see tuco.log._pg_origins), new overloads of the three write functions.

# Each step brings a database from the version before to its own; run in order.
MIGRATIONS: dict[int, list[str]] = {
    1: _V1,
    2: [_V2_WRITE_FUNCTION],
    3: _V3,
    4: _V4,
    5: _V5,
    6: _V6,
    7: _V7,
    8: _pg_origins.migration(_V4_WRITE_FUNCTION, _V6_EXPIRING_FUNCTION, _V7[1]),
}
