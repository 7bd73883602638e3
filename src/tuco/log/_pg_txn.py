"""The PostgreSQL log's transactions: schema version 7's ``tuco_txn`` function, and its rows in Python.

``tuco_txn`` is THE place a transaction is decided and recorded on PostgreSQL,
one call, with the steps of ``tuco_write_batch``: 1. lock the head row (it
orders writers across replicas: serializable by construction); 2. dedupe by
the batch id; 3. decide the compares against ``tuco_state`` under the lock, check
every lease the chosen branch puts on (a missing one refuses it all), then run
its operations in order, each seeing the ones before (``tuco_state`` is updated
as they go); 4. record the writes as ONE ``tuco_events`` row of type 9 whose
value lists them as :func:`tuco.core.txn.encode_writes` does (``int2send``...
write the same big-endian bytes), move the head and NOTIFY, remember the batch
id (``refused`` = ``{0}`` when the failure branch ran); 5. return the results as
rows. Deadlines are the database's clock plus the ttl, as for every write.

Arguments are parallel arrays: compares (``c_*``: key, target 1 value 2
mod_revision 3 create_revision 4 version 5 exists, op 1 == 2 != 3 < 4 >, the
integer or the bytes to compare with), and the operations of both branches
(``o_*``: branch true for success, kind 1 put 2 delete 3 delete_prefix 4 get
5 list, key or prefix, value (for a prefix: the least key above it, NULL: none),
ttl ms, lease, list limit). Rows: ``n`` 0 is the header (``kind`` 1 succeeded, 0
failed, -1 refused for ``lease``; ``mod_revision`` the revision; ``version`` 1 if
replayed; ``create_revision`` 1 if it wrote), then per operation ``n`` (1-based in
its branch): put (its revision), delete and delete_prefix (``version`` the count
of live keys deleted), get (the key's fields; ``value`` NULL: absent), list (one
row per key, then a row with ``key`` NULL whose ``version`` is 1 if more follow).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuco.core.events import Entry, Event
from tuco.core.txn import COMPARE_OPS, COMPARE_TARGETS, OpResult, Txn, TxnOutcome
from tuco.errors import LeaseNotFoundError

__all__ = ["migration", "txn_arguments", "txn_outcome"]

_KINDS = {"put": 1, "delete": 2, "delete_prefix": 3, "get": 4, "list": 5}

_TXN_FUNCTION = """
CREATE OR REPLACE FUNCTION tuco_txn(
    batch_id uuid, c_keys bytea[], c_targets smallint[], c_ops smallint[], c_ints bigint[], c_vals bytea[],
    o_branch boolean[], o_kinds smallint[], o_keys bytea[], o_vals bytea[], o_ttls bigint[], o_leases bigint[],
    o_limits integer[])
RETURNS TABLE (n integer, kind smallint, key bytea, value bytea, create_revision bigint, mod_revision bigint,
               version bigint, deadline bigint, lease bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    head bigint;
    seq bigint;
    now_ms bigint;
    ok boolean := true;
    holds boolean;
    found_key boolean;
    cur_value bytea;
    cur_create bigint;
    cur_mod bigint;
    cur_version bigint;
    cur_deadline bigint;
    cur_lease bigint;
    left_int bigint;
    op smallint;
    ordinal integer := 0;
    deleted bigint;
    shown integer;
    new_deadline bigint;
    parts bytea[] := ARRAY[]::bytea[];
    r record;
BEGIN
    -- 1. lock
    SELECT h.sequence INTO head FROM tuco_head h WHERE h.id = 1 FOR UPDATE;
    -- 2. dedupe: the outcome of a batch that committed (its results are not kept)
    SELECT b.first_sequence, b.last_sequence, coalesce(b.refused[1], 1) INTO cur_mod, seq, left_int
        FROM tuco_batches b WHERE b.id = batch_id;
    IF FOUND THEN
        RETURN QUERY SELECT 0, (CASE WHEN left_int = 0 THEN 0 ELSE 1 END)::smallint, NULL::bytea, NULL::bytea,
            (seq >= cur_mod)::integer::bigint, seq, 1::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    now_ms := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    seq := head + 1;
    -- 3. decide the compares
    FOR i IN 1 .. coalesce(cardinality(c_keys), 0) LOOP
        SELECT s.value, s.create_revision, s.sequence, s.version INTO cur_value, cur_create, cur_mod, cur_version
            FROM tuco_state s WHERE s.key = c_keys[i];
        found_key := FOUND;
        op := c_ops[i];
        IF c_targets[i] = 1 THEN
            holds := found_key AND CASE op WHEN 1 THEN cur_value = c_vals[i] WHEN 2 THEN cur_value <> c_vals[i]
                WHEN 3 THEN cur_value < c_vals[i] ELSE cur_value > c_vals[i] END;
        ELSE
            left_int := CASE c_targets[i] WHEN 5 THEN found_key::integer
                WHEN 2 THEN coalesce(cur_mod, 0) WHEN 3 THEN coalesce(cur_create, 0) ELSE coalesce(cur_version, 0) END;
            holds := CASE op WHEN 1 THEN left_int = c_ints[i] WHEN 2 THEN left_int <> c_ints[i]
                WHEN 3 THEN left_int < c_ints[i] ELSE left_int > c_ints[i] END;
        END IF;
        IF NOT holds THEN
            ok := false;
            EXIT;
        END IF;
    END LOOP;
    -- a put on a lease that does not exist (or has expired) refuses the whole branch, before anything is written
    FOR i IN 1 .. coalesce(cardinality(o_kinds), 0) LOOP
        IF o_branch[i] = ok AND o_kinds[i] = 1 AND o_leases[i] IS NOT NULL THEN
            PERFORM 1 FROM tuco_leases l WHERE l.id = o_leases[i] AND l.deadline > now_ms;
            IF NOT FOUND THEN
                RETURN QUERY SELECT 0, (-1)::smallint, NULL::bytea, NULL::bytea, 0::bigint, head, 0::bigint,
                    NULL::bigint, o_leases[i];
                RETURN;
            END IF;
        END IF;
    END LOOP;
    -- 3 and 4: the branch's operations, in order
    FOR i IN 1 .. coalesce(cardinality(o_kinds), 0) LOOP
        CONTINUE WHEN o_branch[i] <> ok;
        ordinal := ordinal + 1;
        IF o_kinds[i] = 1 THEN
            new_deadline := CASE WHEN o_ttls[i] IS NOT NULL THEN now_ms + o_ttls[i] END;
            INSERT INTO tuco_state AS s (key, value, sequence, create_revision, version, deadline, lease)
                VALUES (o_keys[i], o_vals[i], seq, seq, 1, new_deadline, o_leases[i])
                ON CONFLICT (key) DO UPDATE SET value = excluded.value, sequence = excluded.sequence,
                    version = s.version + 1, deadline = excluded.deadline, lease = excluded.lease;
            parts := parts || (int2send(1::smallint) || int4send(length(o_keys[i])) || int4send(length(o_vals[i]))
                || int8send(coalesce(new_deadline, 0)) || int8send(coalesce(o_leases[i], 0)) || o_keys[i] || o_vals[i]);
            RETURN QUERY SELECT ordinal, 1::smallint, NULL::bytea, NULL::bytea, NULL::bigint, seq, NULL::bigint,
                NULL::bigint, NULL::bigint;
        ELSIF o_kinds[i] = 2 OR o_kinds[i] = 3 THEN
            deleted := 0;
            FOR r IN SELECT s.key, s.deadline, s.lease FROM tuco_state s
                    WHERE CASE WHEN o_kinds[i] = 2 THEN s.key = o_keys[i]
                        ELSE s.key >= o_keys[i] AND (o_vals[i] IS NULL OR s.key < o_vals[i]) END
                    ORDER BY s.key LOOP
                IF (r.deadline IS NULL OR r.deadline > now_ms) AND (r.lease IS NULL OR EXISTS (
                        SELECT 1 FROM tuco_leases l WHERE l.id = r.lease AND l.deadline > now_ms)) THEN
                    deleted := deleted + 1;
                END IF;
                IF o_kinds[i] = 3 THEN
                    parts := parts || (int2send(2::smallint) || int4send(length(r.key)) || int4send(0)
                        || int8send(0::bigint) || int8send(0::bigint) || r.key);
                END IF;
            END LOOP;
            DELETE FROM tuco_state s WHERE CASE WHEN o_kinds[i] = 2 THEN s.key = o_keys[i]
                ELSE s.key >= o_keys[i] AND (o_vals[i] IS NULL OR s.key < o_vals[i]) END;
            IF o_kinds[i] = 2 THEN  -- a delete is recorded whether the key was there or not, as a DELETE is
                parts := parts || (int2send(2::smallint) || int4send(length(o_keys[i])) || int4send(0)
                    || int8send(0::bigint) || int8send(0::bigint) || o_keys[i]);
            END IF;
            RETURN QUERY SELECT ordinal, o_kinds[i], NULL::bytea, NULL::bytea, NULL::bigint, NULL::bigint, deleted,
                NULL::bigint, NULL::bigint;
        ELSE
            shown := 0;
            FOR r IN SELECT s.key, s.value, s.create_revision, s.sequence, s.version,
                        coalesce(s.deadline, l.deadline) AS ends
                    FROM tuco_state s LEFT JOIN tuco_leases l ON l.id = s.lease
                    WHERE CASE WHEN o_kinds[i] = 4 THEN s.key = o_keys[i]
                        ELSE s.key >= o_keys[i] AND (o_vals[i] IS NULL OR s.key < o_vals[i]) END
                      AND (s.deadline IS NULL OR s.deadline > now_ms)
                      AND (s.lease IS NULL OR l.deadline > now_ms)
                    ORDER BY s.key LIMIT CASE WHEN o_kinds[i] = 4 THEN 1 ELSE o_limits[i] + 1 END LOOP
                IF o_kinds[i] = 5 AND shown = o_limits[i] THEN
                    shown := shown + 1;
                    EXIT;
                END IF;
                shown := shown + 1;
                RETURN QUERY SELECT ordinal, o_kinds[i], r.key, r.value, r.create_revision, r.sequence, r.version,
                    r.ends, NULL::bigint;
            END LOOP;
            IF o_kinds[i] = 4 AND shown = 0 THEN
                RETURN QUERY SELECT ordinal, 4::smallint, o_keys[i], NULL::bytea, NULL::bigint, NULL::bigint,
                    NULL::bigint, NULL::bigint, NULL::bigint;
            ELSIF o_kinds[i] = 5 THEN
                RETURN QUERY SELECT ordinal, 5::smallint, NULL::bytea, NULL::bytea, NULL::bigint, NULL::bigint,
                    (shown > o_limits[i])::integer::bigint, NULL::bigint, NULL::bigint;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(parts) > 0 THEN
        INSERT INTO tuco_events (sequence, type, key, value)
            VALUES (seq, 9, ''::bytea, (SELECT string_agg(p, ''::bytea ORDER BY k) FROM unnest(parts)
                WITH ORDINALITY AS u(p, k)));
        UPDATE tuco_head SET sequence = seq WHERE id = 1;
        PERFORM pg_notify('@CHANNEL@', seq::text);
        INSERT INTO tuco_batches (id, first_sequence, last_sequence, refused, refused_revisions)
            VALUES (batch_id, seq, seq, CASE WHEN ok THEN NULL ELSE ARRAY[0] END, NULL);
        RETURN QUERY SELECT 0, ok::integer::smallint, NULL::bytea, NULL::bytea, 1::bigint, seq, 0::bigint,
            NULL::bigint, NULL::bigint;
    ELSE
        INSERT INTO tuco_batches (id, first_sequence, last_sequence, refused, refused_revisions)
            VALUES (batch_id, head + 1, head, CASE WHEN ok THEN NULL ELSE ARRAY[0] END, NULL);
        RETURN QUERY SELECT 0, ok::integer::smallint, NULL::bytea, NULL::bytea, 0::bigint, head, 0::bigint,
            NULL::bigint, NULL::bigint;
    END IF;
END
$fn$"""


def migration(channel: str) -> list[str]:
    """Version 7: transactions (a function only: their events are type 9 rows of tuco_events)."""
    return ["SELECT 1 FROM tuco_head WHERE id = 1 FOR UPDATE", _TXN_FUNCTION.replace("@CHANNEL@", channel)]


def _after_prefix(prefix: bytes) -> bytes | None:
    """The least byte string above every string starting with ``prefix`` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def txn_arguments(txn: Txn) -> tuple[Any, ...]:
    """``tuco_txn``'s arguments after the batch id (see the module docstring)."""
    compares = txn.compare
    c_ints = [c.value if isinstance(c.value, int) else None for c in compares]
    c_vals = [c.value if isinstance(c.value, bytes) else None for c in compares]
    ops = [(True, op) for op in txn.success] + [(False, op) for op in txn.failure]
    values: list[bytes | None] = []
    for _, op in ops:
        if op.kind in ("delete_prefix", "list"):
            values.append(_after_prefix(op.key.encode()))
        else:
            values.append(op.value if op.kind == "put" else None)
    return (
        [c.key.encode() for c in compares],
        [COMPARE_TARGETS.index(c.target) + 1 for c in compares],
        [COMPARE_OPS.index(c.op) + 1 for c in compares],
        c_ints,
        c_vals,
        [branch for branch, _ in ops],
        [_KINDS[op.kind] for _, op in ops],
        [op.key.encode() for _, op in ops],
        values,
        [op.ttl or None for _, op in ops],
        [op.lease or None for _, op in ops],
        [op.limit or None for _, op in ops],
    )


def txn_outcome(txn: Txn, rows: Sequence[Any], event: Event | None) -> TxnOutcome | LeaseNotFoundError:
    """The outcome ``tuco_txn``'s rows say (a replayed batch's has no results: they were not kept)."""
    header = next(row for row in rows if row[0] == 0)
    if header[1] < 0:
        return LeaseNotFoundError(int(header[8]))
    succeeded = header[1] == 1
    revision = int(header[5])
    if header[6] == 1:
        return TxnOutcome(succeeded, revision, event, ())
    ops = txn.success if succeeded else txn.failure
    results: list[OpResult] = []
    by_op: dict[int, list[Any]] = {}
    for row in rows:
        if row[0]:
            by_op.setdefault(row[0], []).append(row)
    for n, op in enumerate(ops, 1):
        found = by_op.get(n, [])
        if op.kind == "put":
            results.append(OpResult("put", op.key, revision=int(found[0][5])))
        elif op.kind in ("delete", "delete_prefix"):
            deleted = int(found[0][6])
            results.append(OpResult(op.kind, op.key, deleted=deleted))
        elif op.kind == "get":
            row = found[0]
            if row[3] is None:
                results.append(OpResult("get", op.key))
            else:
                entry = Entry(bytes(row[3]), int(row[4]), int(row[5]), int(row[6]))
                results.append(OpResult("get", op.key, entry=entry, expires_at=int(row[7] or 0)))
        else:
            items = tuple(
                (bytes(row[2]).decode(), Entry(bytes(row[3]), int(row[4]), int(row[5]), int(row[6])))
                for row in found
                if row[2] is not None
            )
            more = bool(found and found[-1][2] is None and found[-1][6] == 1)
            results.append(OpResult("list", op.key, items=items, more=more))
    return TxnOutcome(succeeded, revision, event, tuple(results))
