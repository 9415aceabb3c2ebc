#!/usr/bin/env bash
# Backup and restore throughput and peak memory of deploy-guard on a generated PostgreSQL
# database (>= 1 GiB by default), next to the shell pipeline a person would write instead.
#
#   cargo build --release && bash benches/backup-restore.sh
#
# Settings (environment):
#   BENCH_SCALE=75            pgbench scale factor (about 15 MiB of database per unit)
#   BENCH_DATA=pgbench        pgbench: `pgbench -i -s SCALE` (its rows are mostly blanks: gzip
#                             shrinks them ~30x); random: SCALE x 100,000 rows of random hex
#                             text (gzip only halves them), the hard case for compression
#   BENCH_MIN_DB_BYTES=1GiB   refuse to measure a smaller database (0: any size)
#   BENCH_RUNS=3              rounds of every measurement (the table shows the median)
#   BENCH_JOBS=2              parallel jobs of the directory-format baselines (pg_dump/pg_restore -j)
#   BENCH_GZIP_LEVEL=6        gzip level of the shell baseline (deploy-guard's default is 6)
#   BENCH_TMP=${TMPDIR:-/tmp} where the cluster, store and dump files go (needs ~5x the db size)
#   CARGO_TARGET_DIR          where the release binary is (default: target)
#   DEPLOY_GUARD_PG_BIN       PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
#
# The throwaway cluster is made the way src/simulate/sandbox.rs makes one: initdb into a temp dir
# (as the `postgres` user when run as root), trust auth, 127.0.0.1 on a free port, fsync off.
# Prints a markdown table on stdout; progress and logs go to stderr.
set -euo pipefail

SCALE=${BENCH_SCALE:-75}
DATA=${BENCH_DATA:-pgbench}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
MIN_DB_BYTES=${BENCH_MIN_DB_BYTES:-1073741824}
GZIP_LEVEL=${BENCH_GZIP_LEVEL:-6}
JOBS=${BENCH_JOBS:-2}
RUNS=${BENCH_RUNS:-3}
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT_DIR/$TARGET ;; esac
BIN=$TARGET/release/deploy-guard
DB=bench

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ -x $BIN ]] || die "$BIN not found: run \`cargo build --release\` first (CARGO_TARGET_DIR=$TARGET)"

if [[ ! -x /usr/bin/time ]]; then
    say "installing GNU time (/usr/bin/time)"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y time >&2 || { apt-get update >&2 && apt-get install -y time >&2; }
    else
        sudo apt-get install -y time >&2
    fi
fi

# --- PostgreSQL binaries: the same search as sandbox::find_bin_dir -----------------------------
PG_BIN=${DEPLOY_GUARD_PG_BIN:-}
if [[ -z $PG_BIN ]]; then
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4n | tail -n1 || true)
fi
[[ -n $PG_BIN && -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] \
    || die "PostgreSQL server binaries (initdb, pgbench) not found: apt-get install postgresql, or set DEPLOY_GUARD_PG_BIN"

# --- scratch space and cleanup -----------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/deploy-guard-bench-XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/data" "$WORK/app" "$WORK/store" "$WORK/out"
RUN_AS=()
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root, the cluster must belong to a \`postgres\` user (initdb refuses root)"
    chown -R postgres: "$WORK/data"
    chown postgres: "$WORK"
    RUN_AS=(runuser -u postgres --)
fi
SAMPLER_PID= MEASURED_PID=
cleanup() {
    local rc=$?
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    [[ -n $MEASURED_PID ]] && kill "$MEASURED_PID" $(cat /proc/"$MEASURED_PID"/task/*/children 2>/dev/null) 2>/dev/null || true
    if [[ -f $WORK/data/postmaster.pid ]]; then
        "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the cluster -------------------------------------------------------------------------------
say "initdb ($PG_BIN) in $WORK/data"
"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 --no-sync >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for _ in 1 2 3 4 5; do
    p=$((20000 + RANDOM % 40000))
    port_free "$p" || continue
    if "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 \
        -o "-p $p -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null 2>&1; then
        PORT=$p
        break
    fi
done
[[ -n $PORT ]] || { cat "$WORK/server.log" >&2 2>/dev/null || true; die "PostgreSQL did not start"; }
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
PSQL=("$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1)
PG_VERSION=$("${PSQL[@]}" -d postgres -c 'SHOW server_version;')
say "PostgreSQL $PG_VERSION on 127.0.0.1:$PORT"

# --- the database ------------------------------------------------------------------------------
"$PG_BIN/createdb" "$DB"
t0=$(date +%s)
case $DATA in
pgbench)
    DATA_TEXT="\`pgbench -i -s $SCALE\`"
    say "pgbench -i -s $SCALE (this takes a while)"
    "$PG_BIN/pgbench" -i -q -s "$SCALE" "$DB" >"$WORK/pgbench.log" 2>&1 || { tail -n 20 "$WORK/pgbench.log" >&2; die "pgbench -i failed"; }
    ;;
random)
    # pgbench's rows are mostly blanks (gzip shrinks them ~30x, unusually fast); these carry
    # random hex text, which gzip only halves: the hard end for compression.
    DATA_TEXT="random: table \`events\`, $((SCALE * 100000)) rows of md5 text + pgbench's \`pgbench -i -s 1\`"
    say "generating $((SCALE * 100000)) rows of random text, plus pgbench -i -s 1 (this takes a while)"
    "$PG_BIN/pgbench" -i -q -s 1 "$DB" >"$WORK/pgbench.log" 2>&1 || { tail -n 20 "$WORK/pgbench.log" >&2; die "pgbench -i failed"; }
    "${PSQL[@]}" -d "$DB" >/dev/null <<SQL
CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, account int NOT NULL,
                     kind text NOT NULL, payload text NOT NULL);
INSERT INTO events
SELECT g, timestamptz '2024-01-01' + g * interval '1 second', (random() * 100000)::int,
       (ARRAY['login', 'view', 'purchase', 'logout'])[1 + g % 4],
       md5(random()::text) || ' ' || md5(random()::text)
FROM generate_series(1, $((SCALE * 100000))) g;
CREATE INDEX events_account ON events (account);
VACUUM ANALYZE events;
SQL
    ;;
*) die "BENCH_DATA=$DATA: use pgbench or random" ;;
esac
"${PSQL[@]}" -d "$DB" -c 'CHECKPOINT;' >/dev/null
DB_BYTES=$("${PSQL[@]}" -d "$DB" -c "SELECT pg_database_size('$DB');")
DB_PRETTY=$("${PSQL[@]}" -d "$DB" -c "SELECT pg_size_pretty(pg_database_size('$DB'));")
say "database $DB: $DB_PRETTY ($DB_BYTES bytes) generated in $(( $(date +%s) - t0 )) s"
(( DB_BYTES >= MIN_DB_BYTES )) \
    || die "database is $DB_BYTES bytes, less than BENCH_MIN_DB_BYTES=$MIN_DB_BYTES: raise BENCH_SCALE"

# --- the release that `rehearse` tries: two migrations, each in its own transaction ----------------
# AddNote adds a nullable column (instant); IndexBalance builds an index without CONCURRENTLY,
# which holds a SHARE lock (blocks writes) on pgbench_accounts while it reads the whole table.
"${PSQL[@]}" -d "$DB" -c 'CREATE TABLE bench_migrations (id serial PRIMARY KEY, name text NOT NULL);' >/dev/null
P="'$PG_BIN/psql' -X -q -v ON_ERROR_STOP=1"
cat >"$WORK/app/migrate.sh" <<EOF
applied() { $P -At -c "SELECT count(*) FROM bench_migrations WHERE name = '\$1'"; }
set -e
[ "\$(applied AddNote)" = 1 ] || $P -c "BEGIN; ALTER TABLE pgbench_accounts ADD COLUMN note text; INSERT INTO bench_migrations (name) VALUES ('AddNote'); COMMIT;"
[ "\$(applied IndexBalance)" = 1 ] || $P -c "BEGIN; CREATE INDEX bench_abalance ON pgbench_accounts (abalance); INSERT INTO bench_migrations (name) VALUES ('IndexBalance'); COMMIT;"
EOF
cat >"$WORK/app/revert.sh" <<EOF
set -e
case "\$($P -At -c 'SELECT name FROM bench_migrations ORDER BY id DESC LIMIT 1')" in
IndexBalance) $P -c "BEGIN; DROP INDEX bench_abalance; DELETE FROM bench_migrations WHERE name = 'IndexBalance'; COMMIT;" ;;
AddNote) $P -c "BEGIN; ALTER TABLE pgbench_accounts DROP COLUMN note; DELETE FROM bench_migrations WHERE name = 'AddNote'; COMMIT;" ;;
esac
EOF

# --- deploy-guard's config ---------------------------------------------------------------------
echo v1 >"$WORK/app/state"
CONFIG=$WORK/deploy-guard.yml
cat >"$CONFIG" <<EOF
project: bench
app:
  runtime: shell
  workdir: "$WORK/app"
  commands:
    deploy: echo {tag} > state
    current_tag: cat state
  health:
    command: "true"
database:
  host: 127.0.0.1
  port: $PORT
  user: postgres
  name: $DB
  bin_dir: "$PG_BIN"
migrations:
  tool: command
  run: sh migrate.sh
  revert: sh revert.sh
  table: bench_migrations
  order_by: id
  lock_warn: 1s
backup:
  store: "file://$WORK/store"
EOF
CONFIG_DIR=$WORK/deploy-guard-dir.yml
sed "s|^backup:\$|backup:\n  format: directory\n  jobs: $JOBS|" "$CONFIG" >"$CONFIG_DIR"

# --- measuring ---------------------------------------------------------------------------------
# measure NAME CMD...: runs CMD under `/usr/bin/time -v`, its stderr timestamped into
# $WORK/out/NAME.log, while a sampler records the peak RSS of the command itself (VmHWM; for
# deploy-guard this excludes the pg_dump/psql children) and the peak summed RSS of its process
# tree. Sets WALL (s), CPU (user+sys s), TIME_RSS (KiB; the largest single process, as
# getrusage reports it), OWN_HWM (KiB), TREE_RSS (KiB), RC.
tree_rss() { # PID -> summed VmRSS (KiB) of PID and its descendants
    local pid=$1 sum=0 kid rss
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    sum=$(( ${rss:-0} ))
    for kid in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        sum=$(( sum + $(tree_rss "$kid") ))
    done
    echo "$sum"
}
stamp() { # prefixes each line with the seconds since $1 (microseconds since the epoch)
    local start=$1 line d
    while IFS= read -r line; do
        d=$(( ${EPOCHREALTIME/[.,]/} - start ))
        printf '%4d.%02d %s\n' $(( d / 1000000 )) $(( d % 1000000 / 10000 )) "$line"
    done
}

measured_pid() { # the process /usr/bin/time runs: below $1 (bash may keep a subshell around it)
    local p=$1 i
    for i in 1 2 3 4; do
        if [[ $(cat "/proc/$p/comm" 2>/dev/null) == time ]]; then
            cat /proc/"$p"/task/*/children 2>/dev/null | awk '{print $1}'
            return
        fi
        p=$(cat /proc/"$p"/task/*/children 2>/dev/null | awk '{print $1}')
        [[ -n $p ]] || return 0
    done
}

measure() {
    local name=$1; shift
    local tfile=$WORK/out/$name.time log=$WORK/out/$name.log hwm_file=$WORK/out/$name.hwm
    local start tpid
    say "measuring $name: $*"
    sync
    start=${EPOCHREALTIME/[.,]/}
    START_US=$start
    mkfifo "$WORK/out/$name.fifo"
    stamp "$start" <"$WORK/out/$name.fifo" >"$log" &
    local stamp_pid=$!
    /usr/bin/time -v -o "$tfile" "$@" >"$WORK/out/$name.stdout" 2>"$WORK/out/$name.fifo" &
    tpid=$!
    MEASURED_PID=$tpid
    (   # sampler: every 0.1 s, the command's own high-water mark and its tree's summed RSS
        own=0 tree=0
        while kill -0 "$tpid" 2>/dev/null; do
            kid=$(measured_pid "$tpid")
            if [[ -n $kid ]]; then
                h=$(awk '/^VmHWM:/ {print $2}' "/proc/$kid/status" 2>/dev/null || true)
                (( ${h:-0} > own )) && own=$h
                t=$(tree_rss "$kid")
                (( t > tree )) && tree=$t
                echo "$own $tree" >"$hwm_file"
            fi
            sleep 0.1
        done
    ) &
    SAMPLER_PID=$!
    RC=0
    wait "$tpid" || RC=$?
    MEASURED_PID=
    wait "$SAMPLER_PID" 2>/dev/null || true
    wait "$stamp_pid" 2>/dev/null || true
    SAMPLER_PID=
    local e
    e=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tfile")
    WALL=$(awk -v e="$e" 'BEGIN { n = split(e, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.1f", s }')
    CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", u + s}' "$tfile")
    TIME_RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tfile")
    read -r OWN_HWM TREE_RSS 2>/dev/null <"$hwm_file" || { OWN_HWM=0; TREE_RSS=0; }
    say "$name: rc $RC, ${WALL}s wall, ${CPU}s cpu, max rss $(( TIME_RSS / 1024 )) MiB"
    if (( RC != 0 )); then
        say "$name failed (exit $RC); the end of its stderr (repeated lines counted):"
        sed 's/\x1b\[[0-9;]*m//g' "$log" | cut -c9- | uniq -c | tail -n 20 >&2
    fi
}

mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1048576 / s; else print "-" }'; }
kib_mib() { awk -v k="${1:-0}" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "-" }'; }
json_num() { grep -o "\"$1\": *[0-9]*" "$2" | head -n1 | grep -o '[0-9]*$'; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
spread() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR > 1) printf " (%s–%s)", a[1], a[NR] }'; }

# Per step: the walls, CPU times and streaming parts of every round; the peaks over all rounds.
declare -A WALLS CPUS TAKES OWN MAXRSS TREE FAILS
record() {
    local k=$1
    if (( RC != 0 )); then
        FAILS[$k]+="${FAILS[$k]:+, }round $ROUND exited $RC"
        FAILED+=("$k, round $ROUND (exit $RC)")
        return
    fi
    WALLS[$k]+="$WALL "
    CPUS[$k]+="$CPU "
    (( ${OWN_HWM:-0} > ${OWN[$k]:-0} )) && OWN[$k]=$OWN_HWM
    (( ${TIME_RSS:-0} > ${MAXRSS[$k]:-0} )) && MAXRSS[$k]=$TIME_RSS
    (( ${TREE_RSS:-0} > ${TREE[$k]:-0} )) && TREE[$k]=$TREE_RSS
    return 0
}

FAILED=()
PLAIN_BYTES=0 PLAIN_GZ=0 SHELL_GZ=0 DUMP_BYTES=0 GZ_BYTES=0
export DEPLOY_GUARD_LOG=${DEPLOY_GUARD_LOG:-info}
drop_kept() { # the swap keeps the replaced database for forensics: drop it to free the disk
    "${PSQL[@]}" -d postgres -c "SELECT format('DROP DATABASE %I;', datname) FROM pg_database WHERE datname LIKE '${DB}\\_\\_%'" \
        | "${PSQL[@]}" -d postgres >/dev/null || true
}

# Rounds interleave the steps, so that a burst of load elsewhere on the machine hits all of them.
for ROUND in $(seq 1 "$RUNS"); do
    say "round $ROUND of $RUNS"

    # 1. pg_dump alone (the first one also warms the page cache for what follows).
    measure "pg_dump_only.$ROUND" bash -c "set -o pipefail; '$PG_BIN/pg_dump' --no-password --format=plain -d $DB > '$WORK/out/plain.sql'"
    record pg_dump_only
    PLAIN_BYTES=$(stat -c %s "$WORK/out/plain.sql")

    # 2. gzip alone on that file.
    measure "gzip_only.$ROUND" bash -c "gzip -$GZIP_LEVEL -c '$WORK/out/plain.sql' > '$WORK/out/plain.sql.gz'"
    record gzip_only
    PLAIN_GZ=$(stat -c %s "$WORK/out/plain.sql.gz")
    rm -f "$WORK/out/plain.sql" "$WORK/out/plain.sql.gz"

    # 3. The shell pipeline a person would write.
    measure "shell_backup.$ROUND" bash -c "set -o pipefail; '$PG_BIN/pg_dump' --no-password --format=plain -d $DB | gzip -$GZIP_LEVEL > '$WORK/out/shell.sql.gz'"
    record shell_backup
    SHELL_GZ=$(stat -c %s "$WORK/out/shell.sql.gz")
    # 3b. The same with zstd at deploy-guard's default level.
    measure "shell_backup_zst.$ROUND" bash -c "set -o pipefail; '$PG_BIN/pg_dump' --no-password --format=plain -d $DB | zstd -q -1 -c > '$WORK/out/shell.sql.zst'"
    record shell_backup_zst

    # 4. deploy-guard backup: dump -> zstd -> store, then read back and decompress whole to verify.
    SHA=$(printf '%s %s' "$ROUND" "$(date +%s%N)" | sha1sum | cut -c1-40)
    measure "dg_backup.$ROUND" "$BIN" backup --sha "$SHA" --config "$CONFIG"
    record dg_backup
    if (( RC == 0 )); then
        MANIFEST=$(find "$WORK/store" -name "*_*-${SHA:0:7}-*.manifest.json" | head -n1)
        DUMP_BYTES=$(json_num dump_bytes "$MANIFEST")
        GZ_BYTES=$(json_num size "$MANIFEST")
        # The data file (.sql.zst or .sql.gz) is last written when the streamed dump ends;
        # reading it back whole to verify it, the fingerprint and the manifest come after.
        DATA_FILE=$(ls "${MANIFEST%.manifest.json}".sql.* | head -n1)
        TAKEN_US=$(stat -c %.6Y "$DATA_FILE" | tr -d '.,')
        TAKE_S=$(awk -v a="$START_US" -v b="$TAKEN_US" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
        TAKES[dg_backup]+="$TAKE_S "
        say "dg_backup: dump → compress → store took ${TAKE_S}s of ${WALL}s; the rest is verify, fingerprint, manifest"

        # 5. deploy-guard restore: scratch database, stream gunzip -> psql, validate, swap.
        measure "dg_restore.$ROUND" "$BIN" restore --sha "${SHA:0:7}" --config "$CONFIG"
        record dg_restore
        drop_kept

        # 5b. deploy-guard rehearse: the backup restored into a copy, the release's two
        # migrations up and back down there (locks sampled), compared with the backup, dropped.
        measure "dg_rehearse.$ROUND" "$BIN" rehearse --sha "${SHA:0:7}" --tag v2 --json --config "$CONFIG"
        record dg_rehearse
        if (( RC == 0 )); then cp "$WORK/out/dg_rehearse.$ROUND.stdout" "$WORK/out/rehearse.json"; fi
    fi

    # 5c. The same by hand: restore into a copy, migrate up, revert twice, drop the copy (no
    # comparison, no lock sampling).
    "$PG_BIN/createdb" "${DB}_rehearse"
    measure "shell_rehearse.$ROUND" bash -c "set -o pipefail; gunzip -c '$WORK/out/shell.sql.gz' | '$PG_BIN/psql' -X -q --no-password -v ON_ERROR_STOP=1 --single-transaction -o /dev/null -d ${DB}_rehearse && cd '$WORK/app' && export PGDATABASE=${DB}_rehearse && sh migrate.sh && sh revert.sh && sh revert.sh"
    record shell_rehearse
    "$PG_BIN/dropdb" "${DB}_rehearse"

    # 6. The shell restore a person would write, into a fresh database.
    "$PG_BIN/createdb" "${DB}_shell"
    measure "shell_restore.$ROUND" bash -c "set -o pipefail; gunzip -c '$WORK/out/shell.sql.gz' | '$PG_BIN/psql' -X -q --no-password -v ON_ERROR_STOP=1 --single-transaction -o /dev/null -d ${DB}_shell"
    record shell_restore
    "$PG_BIN/dropdb" "${DB}_shell"
    "$PG_BIN/createdb" "${DB}_shell"
    measure "shell_restore_zst.$ROUND" bash -c "set -o pipefail; zstd -q -d -c '$WORK/out/shell.sql.zst' | '$PG_BIN/psql' -X -q --no-password -v ON_ERROR_STOP=1 --single-transaction -o /dev/null -d ${DB}_shell"
    record shell_restore_zst
    "$PG_BIN/dropdb" "${DB}_shell"
    rm -f "$WORK/out/shell.sql.zst"

    # 7. The directory format by hand, for what `pg_dump -j` / `pg_restore -j` would give:
    # BENCH_JOBS parallel dumps of uncompressed files, then tar | zstd -1 (one object to store);
    # and pg_restore -j from the unpacked directory (it cannot read -j from a pipe, nor run in
    # one transaction).
    measure "dir_backup.$ROUND" bash -c "set -o pipefail; '$PG_BIN/pg_dump' --no-password -Fd -j $JOBS -Z 0 -f '$WORK/out/dir' -d $DB && tar -C '$WORK/out/dir' -cf - . | zstd -q -1 -c > '$WORK/out/dir.tar.zst'"
    record dir_backup
    measure "dir_dump_only.$ROUND" bash -c "rm -rf '$WORK/out/dir' && '$PG_BIN/pg_dump' --no-password -Fd -j $JOBS -Z 0 -f '$WORK/out/dir' -d $DB"
    record dir_dump_only
    rm -rf "$WORK/out/dir"
    "$PG_BIN/createdb" "${DB}_shell"
    measure "dir_restore.$ROUND" bash -c "set -o pipefail; mkdir '$WORK/out/dir' && zstd -q -d -c '$WORK/out/dir.tar.zst' | tar -C '$WORK/out/dir' -xf - && '$PG_BIN/pg_restore' --no-password -j $JOBS --exit-on-error -d ${DB}_shell '$WORK/out/dir'"
    record dir_restore
    "$PG_BIN/dropdb" "${DB}_shell"
    "$PG_BIN/createdb" "${DB}_shell"
    measure "dir_restore_only.$ROUND" "$PG_BIN/pg_restore" --no-password -j "$JOBS" --exit-on-error -d "${DB}_shell" "$WORK/out/dir"
    record dir_restore_only
    "$PG_BIN/dropdb" "${DB}_shell"
    rm -rf "$WORK/out/dir" "$WORK/out/dir.tar.zst"

    # 8. deploy-guard with backup.format: directory (pg_dump -j / pg_restore -j, the tar read
    # back and checked, restored into a scratch database and swapped in).
    SHA=$(printf 'dir %s %s' "$ROUND" "$(date +%s%N)" | sha1sum | cut -c1-40)
    measure "dg_backup_dir.$ROUND" "$BIN" backup --sha "$SHA" --config "$CONFIG_DIR"
    record dg_backup_dir
    if (( RC == 0 )); then
        MANIFEST=$(find "$WORK/store" -name "*_*-${SHA:0:7}-*.manifest.json" | head -n1)
        DIR_TAR_BYTES=$(json_num dump_bytes "$MANIFEST")
        DIR_ZST_BYTES=$(json_num size "$MANIFEST")
        measure "dg_restore_dir.$ROUND" "$BIN" restore --sha "${SHA:0:7}" --config "$CONFIG_DIR"
        record dg_restore_dir
        drop_kept
    fi
done

ROWS=()
row() { # step, label, bytes for MiB/s, own-RSS column?, note
    local k=$1 label=$2 bytes=$3 own=$4 note=$5 w
    if [[ -z ${WALLS[$k]:-} ]]; then
        ROWS+=("| $label | FAILED | - | - | - | - | - | ${FAILS[$k]:-not run} |")
        return
    fi
    w=$(median "${WALLS[$k]}")
    [[ -n ${FAILS[$k]:-} ]] && note="$note; **FAILED** in ${FAILS[$k]} (see stderr)"
    ROWS+=("| $label | $w$(spread "${WALLS[$k]}") | $(rate "$bytes" "$w") | $(median "${CPUS[$k]}") | $([[ $own == own ]] && kib_mib "${OWN[$k]:-0}" || echo -) | $(kib_mib "${MAXRSS[$k]:-0}") | $(kib_mib "${TREE[$k]:-0}") | $note |")
}
TAKE_MED=$(median "${TAKES[dg_backup]:-}")
row pg_dump_only "\`pg_dump > file\` (no compression)" "$PLAIN_BYTES" - "$(mib "$PLAIN_BYTES") MiB of SQL"
row gzip_only "\`gzip -$GZIP_LEVEL\` of that file" "$PLAIN_BYTES" - "→ $(mib "$PLAIN_GZ") MiB"
row shell_backup "\`pg_dump \\| gzip -$GZIP_LEVEL > file\`" "$PLAIN_BYTES" - "unverified"
row shell_backup_zst "\`pg_dump \\| zstd -1 > file\`" "$PLAIN_BYTES" - "unverified"
row dg_backup "**\`deploy-guard backup\`** (dump, compress, store, verify)" "$DUMP_BYTES" own "$(mib "$DUMP_BYTES") MiB SQL → $(mib "$GZ_BYTES") MiB; dump → compress → store ${TAKE_MED} s ($(rate "$DUMP_BYTES" "$TAKE_MED") MiB/s), then verify etc."
row dg_restore "**\`deploy-guard restore\`** (scratch, psql, validate, swap)" "$DUMP_BYTES" own "into a scratch database, then swapped in"
row shell_restore "\`gunzip \\| psql --single-transaction\`" "$PLAIN_BYTES" - "into an empty database"
row shell_restore_zst "\`zstd -d \\| psql --single-transaction\`" "$PLAIN_BYTES" - "into an empty database"
row dir_dump_only "\`pg_dump -Fd -j $JOBS -Z 0\` (directory format, no compression)" "$PLAIN_BYTES" - "files on the dumping host's disk"
row dir_backup "\`pg_dump -Fd -j $JOBS -Z 0\`, then \`tar \\| zstd -1 > file\`" "$PLAIN_BYTES" - "one object to store; unverified"
row dir_restore "\`zstd -d \\| tar -x\`, then \`pg_restore -j $JOBS\`" "$PLAIN_BYTES" - "into an empty database, not in one transaction"
row dir_restore_only "\`pg_restore -j $JOBS\` of the unpacked directory" "$PLAIN_BYTES" - "into an empty database"
row dg_backup_dir "**\`deploy-guard backup\`**, \`format: directory\`, \`jobs: $JOBS\`" "$PLAIN_BYTES" own "$(mib "${DIR_TAR_BYTES:-0}") MiB tar → $(mib "${DIR_ZST_BYTES:-0}") MiB; verified"
row dg_restore_dir "**\`deploy-guard restore\`**, \`format: directory\`, \`jobs: $JOBS\`" "$PLAIN_BYTES" own "into a scratch database (pg_restore -j), then swapped in"
# What the last rehearsal reported: per migration, and the locks held over migrations.lock_warn.
REHEARSED=$(python3 - "$WORK/out/rehearse.json" <<'PY' 2>/dev/null || echo "-"
import json, sys
r = json.load(open(sys.argv[1]))["rehearsal"]
out = ["up %.1f s, down %.1f s" % (r["up_secs"], r["down_secs"])]
for m in r["migrations"]:
    down = "-" if m["down_secs"] is None else "%.1f" % m["down_secs"]
    out.append("%s: applied %.1f s, reverted %s s" % (m["name"], m["up_secs"], down))
for l in r["long_locks"]:
    out.append("%s on %s ≥ %.1f s by %s%s" % (l["mode"], l["table"], l["secs"], "the revert of " if l["revert"] else "", l["migration"]))
print("; ".join(out))
PY
)
row dg_rehearse "**\`deploy-guard rehearse\`** (copy, up, down, compare, drop)" "$DUMP_BYTES" own "last round: $REHEARSED"
row shell_rehearse "by hand: \`gunzip \\| psql\` into a copy, \`migrate.sh\`, \`revert.sh\` ×2" "$PLAIN_BYTES" - "no comparison, no lock sampling"

# --- where deploy-guard's time went (from its timestamped log) ---------------------------------
{
    echo "deploy-guard logs (seconds since start):"
    for n in dg_backup.1 dg_restore.1 dg_rehearse.1; do
        [[ -f $WORK/out/$n.log ]] || continue
        echo "--- $n"
        sed 's/\x1b\[[0-9;]*m//g' "$WORK/out/$n.log" | grep -v '^ *[0-9.]* *$' | cut -c1-200 || true
    done
} >&2

# --- the report --------------------------------------------------------------------------------
MEM_TOTAL=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
cat <<EOF

**Database**: $DATA_TEXT, $DB_PRETTY on disk ($DB_BYTES bytes), $(mib "$PLAIN_BYTES") MiB of plain SQL. **Machine**: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $MEM_TOTAL RAM, PostgreSQL $PG_VERSION, load average at the start $LOAD_BEFORE, at the end $(cut -d' ' -f1-3 /proc/loadavg).

| What | Wall (s), median$( (( RUNS > 1 )) && echo " (min–max)") of $RUNS | MiB/s of plain SQL | CPU user+sys (s) | deploy-guard's own peak RSS (MiB) | max RSS, /usr/bin/time (MiB) | peak RSS of process tree (MiB) | Notes |
|---|---:|---:|---:|---:|---:|---:|---|
$(printf '%s\n' "${ROWS[@]}")

EOF
if (( ${#FAILED[@]} > 0 )); then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
