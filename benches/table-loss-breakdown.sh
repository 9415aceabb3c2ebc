#!/bin/bash
# Where the time of `table_loss` (src/db/lost.rs) goes on the server: one side's keyed COPY, and
# lighter variants, each piped to /dev/null. `SCALE=10 bash benches/table-loss-breakdown.sh`
set -euo pipefail
BIN=${DEPLOY_GUARD_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
AS=(); [[ $(id -u) == 0 ]] && AS=(runuser -u postgres --)
D=$(mktemp -d); [[ $(id -u) == 0 ]] && chown postgres: "$D"
"${AS[@]}" $BIN/initdb -D $D/data -U postgres --auth=trust --no-sync >/dev/null
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"${AS[@]}" $BIN/pg_ctl -D $D/data -l $D/log -o "-p $PORT -k $D -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" -w start >/dev/null
stop() { "${AS[@]}" "$BIN/pg_ctl" -D "$D/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$D"; }
trap stop EXIT
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
$BIN/createdb a; $BIN/pgbench -i -q -s ${SCALE:-10} a 2>/dev/null
t() { local s=$(date +%s.%N); $BIN/psql -X -q -d a -c "$1" > /dev/null; awk -v s="$s" -v e="$(date +%s.%N)" -v l="$(cut -d' ' -f1 /proc/loadavg)" -v w="$2" 'BEGIN { printf "%.2f s  load %s  %s\n", e - s, l, w }'; }
STMT="format('INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET \"bid\" = EXCLUDED.\"bid\", \"abalance\" = EXCLUDED.\"abalance\", \"filler\" = EXCLUDED.\"filler\"', 'public.pgbench_accounts', '\"aid\", \"bid\", \"abalance\", \"filler\"', concat_ws(', ', quote_nullable(\"aid\"), quote_nullable(\"bid\"), quote_nullable(\"abalance\"), quote_nullable(\"filler\")), '\"aid\"') || ';'"
for r in 1 2; do
t "COPY (SELECT row(\"aid\")::text COLLATE \"C\" AS k, md5(row(\"aid\", \"bid\", \"abalance\", \"filler\")::text), $STMT FROM public.pgbench_accounts ORDER BY 1) TO STDOUT" "table_loss's query for the kept side (key text, md5, upsert statement; sorted by key text)"
t "COPY (SELECT row(\"aid\")::text COLLATE \"C\" AS k, md5(row(\"aid\", \"bid\", \"abalance\", \"filler\")::text) FROM public.pgbench_accounts ORDER BY 1) TO STDOUT" "key text + md5 only, same sort"
t "COPY (SELECT aid, md5(row(\"aid\", \"bid\", \"abalance\", \"filler\")::text) FROM public.pgbench_accounts ORDER BY aid) TO STDOUT" "key + md5 only, in primary-key order (index)"
t "COPY pgbench_accounts TO STDOUT" "plain COPY, for scale"
done
