#!/usr/bin/env python3
"""Fills a Trellis SQLite database (already migrated by the leader) with readings for the query
benchmark: one 30-day, 1 Hz series (node `bench`, job `od_reading`, metric `od`: 2 592 000 rows,
ending now) and the rest of ROWS spread over 8 series of node `bench-fill` (job `j`, metrics
m0..m7, 1 Hz, ending now), so the table holds ROWS readings. The reading table's indexes are
dropped for the fill and built again after it (what a restore would do), and the reading_series
catalog and the reading_minute rollups are written to match (the rollups with the same GROUP BY
as the migration that created them).

usage: fill_readings.py DB ROWS
"""
import sqlite3
import sys
import time

db, rows = sys.argv[1], int(sys.argv[2])
now_ms = int(time.time() * 1000)
target = 30 * 24 * 3600
filler = max(0, rows - target)
per = filler // 8

con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=OFF")
con.execute("PRAGMA cache_size=-1000000")
indexes = con.execute(
    "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='reading' AND sql IS NOT NULL"
).fetchall()
for name, _ in indexes:
    con.execute(f"DROP INDEX {name}")
con.execute("DELETE FROM reading")
con.execute("DELETE FROM reading_series")
con.execute("DELETE FROM reading_minute")
con.commit()

def series(node, job, metric, unit, n):
    start = now_ms - n * 1000
    def gen():
        for i in range(n):
            t = start + i * 1000
            # A slow wave with noise-free steps: exact sums are easy to check by hand.
            yield (node, job, metric, unit, t, t, (i % 3600) / 3600.0)
    t0 = time.time()
    con.executemany(
        "INSERT INTO reading (node_id, job, metric, unit, time_ms, node_time_ms, value) VALUES (?,?,?,?,?,?,?)",
        gen(),
    )
    con.execute(
        "INSERT INTO reading_series (node_id, job, metric, experiment_id, unit, first_ms, last_ms, count) VALUES (?,?,?,'',?,?,?,?)",
        (node, job, metric, unit, start, start + (n - 1) * 1000, n),
    )
    con.commit()
    print(f"# {node}/{job}/{metric}: {n} rows in {time.time() - t0:.1f} s", file=sys.stderr)

series("bench", "od_reading", "od", "OD", min(rows, target))
for m in range(8):
    if per > 0:
        series("bench-fill", "j", f"m{m}", None, per)
t0 = time.time()
for name, sql in indexes:
    con.execute(sql)
con.commit()
con.execute("ANALYZE")
con.commit()
print(f"# indexes built in {time.time() - t0:.1f} s", file=sys.stderr)
t0 = time.time()
con.execute(
    "INSERT INTO reading_minute (node_id, job, metric, minute_ms, experiment_id, count, sum, min, max) "
    "SELECT node_id, job, metric, (time_ms / 60000) * 60000, COALESCE(experiment_id, ''), "
    "COUNT(*), SUM(value), MIN(value), MAX(value) FROM reading "
    "GROUP BY node_id, job, metric, (time_ms / 60000) * 60000, COALESCE(experiment_id, '')"
)
con.commit()
print(f"# per-minute rollups in {time.time() - t0:.1f} s", file=sys.stderr)
total = con.execute("SELECT count(*) FROM reading").fetchone()[0]
print(total)
