"""Real PostgreSQL drivers through the countersign PostgreSQL proxy (crates/cli/tests/it/pg_proxy.rs).

Usage: pg_client.py SCENARIO PORT DATABASE TABLE
Connects as the agent `bot` (password `tok-bot`) and prints one JSON object per line:
what each step returned, or the SQLSTATE and message of the error it raised.
"""

import asyncio
import json
import sys

scenario, port, database, table = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def say(**kw):
    print(json.dumps(kw), flush=True)


def psycopg_conn(autocommit=True):
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=port, dbname=database, user="bot", password="tok-bot",
        sslmode="disable", autocommit=autocommit, connect_timeout=10,
    )


def psycopg_basic():
    import psycopg

    with psycopg_conn() as conn:
        # Server-side prepared statements (named, prepared at once) with binary parameters.
        for i in (1, 2, 3):
            row = conn.execute(f"SELECT v FROM {table} WHERE id = %b", (i,), prepare=True).fetchone()
            say(step="select", id=i, v=row[0])
        rows = conn.execute(f"SELECT id FROM {table} WHERE v = %s ORDER BY id", ("b",), binary=True).fetchall()
        say(step="text-param-binary-result", ids=[r[0] for r in rows])
        try:
            conn.execute(f"DROP TABLE {table}")
            say(step="drop", ok=True)
        except psycopg.Error as e:
            say(step="drop", sqlstate=e.sqlstate, message=e.diag.message_primary, hint=e.diag.message_hint)
        say(step="after", v=conn.execute("SELECT %s::int + 1", (41,)).fetchone()[0])
        cur = conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (7, "g"))
        say(step="insert", rowcount=cur.rowcount)
        # A refusal inside a transaction aborts it, as any error would.
        try:
            with conn.transaction():
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (8, "h"))
                conn.execute(f"DROP TABLE {table}")
        except psycopg.Error as e:
            say(step="tx-drop", sqlstate=e.sqlstate)
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]
        say(step="ids", ids=ids)


def psycopg_held():
    import psycopg

    with psycopg_conn() as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        try:
            cur = conn.execute(f"UPDATE {table} SET v = %s", ("z",))
            say(step="update", rowcount=cur.rowcount, status=cur.statusmessage)
        except psycopg.Error as e:
            say(step="update", sqlstate=e.sqlstate, message=e.diag.message_primary)
        say(step="notices", notices=notices)
        rows = conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall()
        say(step="rows", rows=[list(r) for r in rows])


def psycopg_select():
    with psycopg_conn() as conn:
        rows = conn.execute(f"SELECT id, v FROM {table} WHERE id > %s ORDER BY id", (0,)).fetchall()
        say(step="rows", rows=[list(r) for r in rows])


async def asyncpg_basic():
    import asyncpg

    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, database=database, user="bot", password="tok-bot", ssl=False,
    )
    try:
        v = await conn.fetchval(f"SELECT v FROM {table} WHERE id = $1", 2)
        say(step="fetchval", v=v)
        stmt = await conn.prepare(f"SELECT id FROM {table} WHERE id >= $1 ORDER BY id")
        say(step="prepared", ids=[r["id"] for r in await stmt.fetch(2)])
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(4, "d"), (5, "e")])
        say(step="executemany", ok=True)
        try:
            await conn.execute(f"DROP TABLE {table}")
        except asyncpg.PostgresError as e:
            say(step="drop", sqlstate=e.sqlstate, message=e.message)
        try:
            await conn.fetch(f"SELECT 1 FROM {table} WHERE id = $1; DROP TABLE {table}", 1)
        except asyncpg.PostgresError as e:
            say(step="two-in-parse", sqlstate=e.sqlstate)
        say(step="after", v=await conn.fetchval("SELECT $1::int * 2", 21))
        # A cursor fetches with a row limit: one decision for all its Executes.
        async with conn.transaction():
            ids = [r["id"] async for r in conn.cursor(f"SELECT id FROM {table} WHERE id > $1 ORDER BY id", 0, prefetch=2)]
        say(step="cursor", ids=ids)
        # A cursor left before its end: its action is reported when the transaction ends.
        async with conn.transaction():
            cur = await conn.cursor(f"SELECT v FROM {table} WHERE id < $1 ORDER BY id", 100)
            first = await cur.fetch(2)
        say(step="abandoned", vs=[r["v"] for r in first])
    finally:
        await conn.close()


async def asyncpg_held_in_transaction():
    import asyncpg

    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, database=database, user="bot", password="tok-bot", ssl=False,
    )
    try:
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", 9, "i")
            status = await conn.execute(f"DELETE FROM {table} WHERE $1::bool", True)
            say(step="delete-where", status=status)
            status = await conn.execute(f"DELETE FROM {table}")
            say(step="delete-all", status=status)
        say(step="committed", count=await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def asyncpg_cancel():
    import asyncpg

    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, database=database, user="bot", password="tok-bot", ssl=False,
    )
    try:
        try:
            # A driver's statement timeout sends CancelRequest: the review is withdrawn.
            await conn.execute(f"UPDATE {table} SET v = $1", "q", timeout=1.5)
            say(step="update", ok=True)
        except asyncio.TimeoutError:
            say(step="update", timeout=True)
        say(step="after", v=await conn.fetchval("SELECT 3"))
    finally:
        await conn.close()


if scenario == "psycopg_basic":
    psycopg_basic()
elif scenario == "psycopg_held":
    psycopg_held()
elif scenario == "psycopg_select":
    psycopg_select()
elif scenario == "asyncpg_basic":
    asyncio.run(asyncpg_basic())
elif scenario == "asyncpg_held_in_transaction":
    asyncio.run(asyncpg_held_in_transaction())
elif scenario == "asyncpg_cancel":
    asyncio.run(asyncpg_cancel())
else:
    sys.exit(f"unknown scenario {scenario}")
