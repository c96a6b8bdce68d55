#!/usr/bin/env python3
"""The benchmark's baseline: DuckDB grouping an audit log by user and client address.

    python3 bench/duckdb_query.py bench-out/audit.log

Prints one line, `<query seconds> <groups> <events>`: the query's own time (not Python's
start-up, not `import duckdb`, not connecting), for reference. The benchmark compares whole
processes: the caller wraps this one in /usr/bin/time for its wall and CPU time and peak RSS,
as it does `tokentrail analyze`.

The query is the one a responder would otherwise run by hand: who used which credential from
which address, how often. `sourceIPs[-1]` is the TCP peer, the only address a client cannot
forge (docs/kubernetes.md §1.1).
"""

import sys
import time

import duckdb

# Audit events are heterogeneous: requestObject/responseObject differ per resource, `user` is
# `{}` on a failed authentication, `objectRef` is absent for non-resource URLs. Declaring the
# two columns the query needs makes DuckDB project just those, instead of sampling the file to
# infer a schema that later lines may contradict. An event whose `user` has no username yields
# NULL, a group of its own, as it should.
QUERY = """
SELECT "user".username AS username, sourceIPs[-1] AS client, count(*) AS events
FROM read_json('{path}',
               format = 'newline_delimited',
               columns = {{'user': 'STRUCT(username VARCHAR)', 'sourceIPs': 'VARCHAR[]'}},
               maximum_object_size = 67108864)
GROUP BY ALL
"""


def main() -> None:
    path = sys.argv[1].replace("'", "''")
    con = duckdb.connect()
    started = time.perf_counter()
    rows = con.execute(QUERY.format(path=path)).fetchall()
    elapsed = time.perf_counter() - started
    print(f"{elapsed:.3f} {len(rows)} {sum(r[2] for r in rows)}")


if __name__ == "__main__":
    main()
