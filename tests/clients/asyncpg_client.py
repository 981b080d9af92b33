"""asyncpg against a lakecube server: binary everything, named prepared statements with
inferred parameter types, a cursor in a transaction, and its pool's reset. Cube answers are
compared with hand-written SQL over the lake tables.
Usage: python3 asyncpg_client.py PORT"""
import asyncio
import datetime
import sys

import asyncpg

URL = f"postgresql://lakecube@127.0.0.1:{sys.argv[1]}/lakecube"


async def main():
    conn = await asyncpg.connect(URL)
    since = datetime.datetime(2024, 6, 1)
    raw = await conn.fetch(
        "SELECT d.department, SUM(t.units), SUM(t.revenue) FROM lake.traffic t "
        "JOIN lake.departments d USING (department_id) WHERE t.ts >= $1 GROUP BY 1 ORDER BY 1", since)
    cube = await conn.fetch(
        "SELECT department, SUM(units), SUM(revenue) FROM retail WHERE period >= $1 GROUP BY 1 ORDER BY 1", since)
    assert [tuple(r) for r in cube] == [tuple(r) for r in raw] and len(raw) > 3, (cube, raw)
    print("ok: cube = lake by department")

    stmt = await conn.prepare("SELECT store_code, opened_on FROM lake.stores WHERE store_id = $1")
    for i in range(1, 8):
        row = await stmt.fetchrow(i)
        assert row is None or isinstance(row["opened_on"], datetime.date), row
    print("ok: prepared statement with an inferred int parameter, run 7 times")

    async with conn.transaction():
        n = 0
        async for _ in conn.cursor("SELECT store_id, ts FROM lake.traffic WHERE ts < $1", datetime.datetime(2024, 2, 1), prefetch=400):
            n += 1
    expected = await conn.fetchval("SELECT count(*) FROM lake.traffic WHERE ts < $1", datetime.datetime(2024, 2, 1))
    assert n == expected and n > 1000, (n, expected)
    print(f"ok: cursor read {n} rows")
    await conn.close()

    pool = await asyncpg.create_pool(URL, min_size=1, max_size=1)
    for _ in range(3):
        async with pool.acquire() as c:  # each release sends the reset batch
            assert await c.fetchval("SELECT count(*) FROM lake.stores") > 0
    await pool.close()
    print("ok: pool acquire/release (reset batch)")


asyncio.run(main())
print("asyncpg: all checks passed")
