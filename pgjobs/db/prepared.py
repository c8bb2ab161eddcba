"""The App's positional statements, prepared once per pooled connection and run through libpq.

psycopg's cursor.execute() serves every query: it parses the query's
placeholders, looks it up in its prepared-statement cache, keeps the cursor's
state and results, and reads a row into a dict through a row maker made for
each result. For the one-job enqueue, which is one statement with a handful of
parameters, the statement cost 93,400 client instructions through a cursor and
costs 50,800 sent here (bench/instructions.py): the parameters dumped by the
connection's own adapters, the statement prepared on first use under a name of
ours, its column names read once, its result in binary. It runs only on
connections pgjobs took out of its own pool for one operation, never on a
caller's connection, whose state (a pipeline, a transaction, its own prepared
statements) is the caller's.

On a connection that prepares nothing (psycopg's prepare_threshold=None, which
pgjobs sets behind a transaction pooler: pgjobs.db.driver.connection_kwargs) the
statement is sent unprepared, parsed with its parameters in the same message
(libpq's PQsendQueryParams, an unnamed statement, which no pooler needs to
follow), and keeps the rest: the connection's adapters, binary results, the
column names read once.

Everything is one generator that psycopg's own wait() drives, so the sync and
async pools share it, and an interrupt while waiting cancels the statement as
it does for a cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.abc import Buffer, PQGen
from psycopg.adapt import PyFormat, Transformer
from psycopg.generators import execute
from psycopg.rows import DictRow

#: Statements kept prepared per connection; past this, the oldest is deallocated.
#: A statement is prepared once per (text, parameter types): the one-job enqueue
#: has a few texts (which columns a job sets) and few type sets, far fewer.
MAX_PREPARED = 64

_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_BINARY = pq.Format.BINARY
_IDLE = pq.TransactionStatus.IDLE
# The server no longer has the statement (a DISCARD ALL or DEALLOCATE ALL run
# on the connection by other code, behind psycopg's back), or has it with
# another result type (a migration changed a column it returns): both are
# fixed by preparing again.
_GONE = "26000"  # invalid_sql_statement_name
_STALE = "cached plan must not change result type"


class Statements:
    """What one connection has prepared, and the adapters it dumps and loads with."""

    def __init__(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        self.tx = Transformer(conn)
        self.conn = conn
        # (text, parameter types) -> (name, result column names once read)
        self.prepared: dict[tuple[str, tuple[int, ...]], tuple[bytes, list[str] | None]] = {}
        self._count = 0
        self._formats: dict[int, list[PyFormat]] = {}
        #: Send statements unprepared (see the module's docstring); set when the
        #: connection is made, and pgjobs never changes it.
        self.unprepared = conn.prepare_threshold is None
        # Unprepared: query -> (its text for the server, result column names once read)
        self.texts: dict[str, tuple[bytes, list[str] | None]] = {}

    def formats(self, n: int) -> list[PyFormat]:
        """n automatic formats: each value dumped as its type is best sent."""
        f = self._formats.get(n)
        if f is None:
            f = self._formats[n] = [PyFormat.AUTO] * n
        return f

    def next_name(self) -> bytes:
        """A server-side name no statement of this connection has."""
        self._count += 1
        return b"pgjobs_%d" % self._count


def forget_on_deallocate_all(s: Statements | None, name: bytes | None) -> None:
    """Forget every statement of ours when psycopg deallocates all of a connection's.

    psycopg sends DEALLOCATE ALL after a rollback, a DROP or an ALTER on a
    connection where its cursors have prepared statements of their own (a query
    run five times is prepared): the server then drops ours with its own. Outside
    a transaction run() would notice and prepare again, but inside one (a dedup
    enqueue, a replay) the lost statement aborts the transaction, and the caller
    would get an error for a call that did nothing wrong.
    """
    if name is None and s is not None:
        s.prepared.clear()


def placeholders(query: str) -> str:
    """A query's %s placeholders as $1, $2, ...; refuses any other use of %."""
    parts = query.split("%s")
    if any("%" in p for p in parts):
        raise ValueError(f"only %s placeholders are supported here: {query[:60]!r}")
    return "".join(f"{p}${i}" for i, p in enumerate(parts[:-1], 1)) + parts[-1]


def run(s: Statements, query: str, values: Sequence[Any]) -> PQGen[list[DictRow]]:
    """Run a positional query on the connection of `s`, prepared there on first use (or
    unprepared, where `s` says so)."""
    pgconn = s.conn.pgconn
    tx = s.tx
    params = tx.dump_sequence(values, s.formats(len(values)))
    if s.unprepared:
        return (yield from _run_unprepared(s, pgconn, query, params))
    key = (query, tuple(tx.types or ()))
    formats = tx.formats
    for retried in (False, True):
        entry = s.prepared.get(key)
        if entry is None:
            entry = yield from _prepare(s, pgconn, key)
        name = entry[0]
        pgconn.send_query_prepared(name, params, param_formats=formats, result_format=_BINARY)
        result = (yield from execute(pgconn))[-1]
        if result.status in _OK:
            return _rows(s, key, entry, result)
        state = result.error_field(pq.DiagnosticField.SQLSTATE)
        message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b""
        gone = state == _GONE.encode()
        stale = _STALE.encode() in message
        if gone:
            s.prepared.clear()  # whatever removed this one removed the others
        elif stale:
            del s.prepared[key]
            yield from _deallocate(pgconn, name)
        # Outside a transaction nothing was done and nothing is aborted: try again, once.
        if not (gone or stale) or retried or pgconn.transaction_status != _IDLE:
            raise errors.error_from_result(result, encoding=s.conn.info.encoding)
    raise AssertionError("unreachable")  # pragma: no cover


def _run_unprepared(
    s: Statements, pgconn: pq.abc.PGconn, query: str, params: Sequence[Buffer | None]
) -> PQGen[list[DictRow]]:
    tx = s.tx
    entry = s.texts.get(query)
    if entry is None:
        entry = s.texts[query] = (placeholders(query).encode(s.conn.info.encoding), None)
    pgconn.send_query_params(
        entry[0], params, param_types=tx.types, param_formats=tx.formats, result_format=_BINARY
    )
    result = (yield from execute(pgconn))[-1]
    if result.status not in _OK:
        raise errors.error_from_result(result, encoding=s.conn.info.encoding)
    n = result.ntuples
    if not n:
        return []
    fields = entry[1]
    if fields is None:
        fields = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        s.texts[query] = (entry[0], fields)
    tx.set_pgresult(result)
    return [dict(zip(fields, row, strict=True)) for row in tx.load_rows(0, n, tuple)]


def _prepare(
    s: Statements, pgconn: pq.abc.PGconn, key: tuple[str, tuple[int, ...]]
) -> PQGen[tuple[bytes, list[str] | None]]:
    if len(s.prepared) >= MAX_PREPARED:
        oldest = next(iter(s.prepared))
        yield from _deallocate(pgconn, s.prepared.pop(oldest)[0])
    name = s.next_name()
    text = placeholders(key[0]).encode(s.conn.info.encoding)
    pgconn.send_prepare(name, text, param_types=key[1])
    result = (yield from execute(pgconn))[-1]
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise errors.error_from_result(result, encoding=s.conn.info.encoding)
    entry: tuple[bytes, list[str] | None] = (name, None)
    s.prepared[key] = entry
    return entry


def _deallocate(pgconn: pq.abc.PGconn, name: bytes) -> PQGen[None]:
    # Its failure (the statement already gone) changes nothing: not checked.
    pgconn.send_query(b"DEALLOCATE " + name)
    yield from execute(pgconn)


def _rows(
    s: Statements,
    key: tuple[str, tuple[int, ...]],
    entry: tuple[bytes, list[str] | None],
    result: pq.abc.PGresult,
) -> list[DictRow]:
    n = result.ntuples
    if not n:
        return []
    fields = entry[1]
    if fields is None:
        fields = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        s.prepared[key] = (entry[0], fields)
    tx = s.tx
    tx.set_pgresult(result)
    if n == 1:  # most statements here: no comprehension (a frame of its own) for one row
        return [dict(zip(fields, tx.load_row(0, tuple), strict=True))]
    return [dict(zip(fields, row, strict=True)) for row in tx.load_rows(0, n, tuple)]
