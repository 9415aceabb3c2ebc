#!/usr/bin/env bash
# Backup of a >= 1 GiB PostgreSQL database to an S3-compatible server (s3s-fs on 127.0.0.1):
# `deploy-guard backup` next to the shell pipeline a person would write instead,
# `pg_dump | gzip | aws s3 cp - s3://…` (aws CLI from PyPI), same machine, same run.
#
#   cargo build --release && bash benches/s3-backup.sh
#
# Settings (environment):
#   BENCH_SCALE=75            pgbench scale factor (about 15 MiB of database per unit)
#   BENCH_DATA=pgbench        pgbench: `pgbench -i -s SCALE`; random: SCALE x 100,000 rows of md5
#                             text (gzip only halves them) on top of `pgbench -i -s 1`
#   BENCH_MIN_DB_BYTES=1GiB   refuse to measure a smaller database (0: any size)
#   BENCH_RUNS=3              rounds of each measurement (the table shows the median)
#   BENCH_GZIP_LEVEL=6        gzip level of both (deploy-guard's default is 6)
#   BENCH_TMP=${TMPDIR:-/tmp} where the cluster and the S3 server's files go (~3x the db size)
#   CARGO_TARGET_DIR          where the release binary is (default: target)
#   S3S_FS                    the s3s-fs binary (default: on PATH or ~/.cargo/bin; scripts/setup
#                             installs it)
#   DEPLOY_GUARD_PG_BIN       PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
#
# Peak memory is each tool's own high-water mark (VmHWM of the deploy-guard process; of the aws
# CLI's python process), sampled from /proc, so pg_dump and gzip are not counted in either.
# Prints a markdown table on stdout; progress goes to stderr.
set -euo pipefail

SCALE=${BENCH_SCALE:-75}
DATA=${BENCH_DATA:-pgbench}
MIN_DB_BYTES=${BENCH_MIN_DB_BYTES:-1073741824}
GZIP_LEVEL=${BENCH_GZIP_LEVEL:-6}
RUNS=${BENCH_RUNS:-3}
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT_DIR/$TARGET ;; esac
BIN=$TARGET/release/deploy-guard
DB=bench
BUCKET=bench
export AWS_ACCESS_KEY_ID=AKIABENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf '[s3-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ -x $BIN ]] || die "$BIN not found: run \`cargo build --release\` first (CARGO_TARGET_DIR=$TARGET)"
S3S=${S3S_FS:-$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")}
[[ -x $S3S ]] || die "s3s-fs not found: run scripts/setup (cargo install s3s-fs --version 0.14.1 --locked --features binary)"
if ! command -v aws >/dev/null 2>&1; then
    say "installing the aws CLI from PyPI"
    python3 -m pip install --quiet awscli >&2 || die "pip install awscli failed"
fi
AWS_VERSION=$(aws --version 2>&1 | cut -d' ' -f1)

PG_BIN=${DEPLOY_GUARD_PG_BIN:-}
if [[ -z $PG_BIN ]]; then
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4n | tail -n1 || true)
fi
[[ -n $PG_BIN && -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] \
    || die "PostgreSQL server binaries (initdb, pgbench) not found: apt-get install postgresql, or set DEPLOY_GUARD_PG_BIN"

WORK=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/deploy-guard-s3-bench-XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/data" "$WORK/app" "$WORK/s3/$BUCKET" "$WORK/out"
RUN_AS=()
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root, the cluster must belong to a \`postgres\` user (initdb refuses root)"
    chown -R postgres: "$WORK/data"
    chown postgres: "$WORK"
    RUN_AS=(runuser -u postgres --)
fi
S3_PID=
cleanup() {
    local rc=$?
    [[ -n $S3_PID ]] && kill "$S3_PID" 2>/dev/null || true
    if [[ -f $WORK/data/postmaster.pid ]]; then
        "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p; for _ in $(seq 1 20); do p=$((20000 + RANDOM % 40000)); port_free "$p" && { echo "$p"; return; }; done; die "no free port"; }

# --- the cluster (as src/simulate/sandbox.rs makes one) --------------------------------------
say "initdb ($PG_BIN) in $WORK/data"
"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 --no-sync >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
PORT=$(free_port)
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 \
    -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null 2>&1 || { cat "$WORK/server.log" >&2; die "PostgreSQL did not start"; }
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
PSQL=("$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1)
PG_VERSION=$("${PSQL[@]}" -d postgres -c 'SHOW server_version;')

# --- the S3 server -----------------------------------------------------------------------------
S3_PORT=$(free_port)
"$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
    "$WORK/s3" >"$WORK/s3.log" 2>&1 &
S3_PID=$!
for _ in $(seq 1 100); do port_free "$S3_PORT" || break; sleep 0.1; done
port_free "$S3_PORT" && die "s3s-fs did not start: $(cat "$WORK/s3.log")"
ENDPOINT=http://127.0.0.1:$S3_PORT
say "PostgreSQL $PG_VERSION on 127.0.0.1:$PORT; s3s-fs at $ENDPOINT"

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
    DATA_TEXT="random: $((SCALE * 100000)) rows of md5 text + \`pgbench -i -s 1\`"
    say "generating $((SCALE * 100000)) rows of random text (this takes a while)"
    "$PG_BIN/pgbench" -i -q -s 1 "$DB" >"$WORK/pgbench.log" 2>&1 || die "pgbench -i failed"
    "${PSQL[@]}" -d "$DB" >/dev/null <<SQL
CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, account int NOT NULL,
                     kind text NOT NULL, payload text NOT NULL);
INSERT INTO events
SELECT g, timestamptz '2024-01-01' + g * interval '1 second', (random() * 100000)::int,
       (ARRAY['login', 'view', 'purchase', 'logout'])[1 + g % 4],
       md5(random()::text) || ' ' || md5(random()::text)
FROM generate_series(1, $((SCALE * 100000))) g;
SQL
    ;;
*) die "BENCH_DATA=$DATA: use pgbench or random" ;;
esac
"${PSQL[@]}" -d "$DB" -c 'CHECKPOINT;' >/dev/null
DB_BYTES=$("${PSQL[@]}" -d "$DB" -c "SELECT pg_database_size('$DB');")
DB_PRETTY=$("${PSQL[@]}" -d "$DB" -c "SELECT pg_size_pretty(pg_database_size('$DB'));")
say "database $DB: $DB_PRETTY generated in $(( $(date +%s) - t0 )) s"
(( DB_BYTES >= MIN_DB_BYTES )) || die "database is $DB_BYTES bytes, less than BENCH_MIN_DB_BYTES=$MIN_DB_BYTES: raise BENCH_SCALE"

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
  run: "true"
backup:
  store: "s3://$BUCKET/dg"
  endpoint: "$ENDPOINT"
  region: us-east-1
  compression: $GZIP_LEVEL
EOF

# --- measuring ---------------------------------------------------------------------------------
# measure NAME PATTERN CMD...: runs CMD; samples every 0.05 s the VmHWM of the process whose
# command line matches PATTERN (the tool itself). Sets WALL (s), PEAK (KiB), RC.
measure() {
    local name=$1 pattern=$2; shift 2
    say "measuring $name"
    sync
    local start end peak=0 pid h
    start=${EPOCHREALTIME/[.,]/}
    "$@" >"$WORK/out/$name.stdout" 2>"$WORK/out/$name.log" &
    local runner=$!
    while kill -0 "$runner" 2>/dev/null; do
        for pid in $(pgrep -f -- "$pattern" || true); do
            h=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            (( ${h:-0} > peak )) && peak=$h
        done
        sleep 0.05
    done
    RC=0
    wait "$runner" || RC=$?
    end=${EPOCHREALTIME/[.,]/}
    WALL=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
    PEAK=$peak
    say "$name: rc $RC, ${WALL}s, peak $(( PEAK / 1024 )) MiB"
    (( RC == 0 )) || { tail -n 30 "$WORK/out/$name.log" >&2; die "$name failed"; }
}

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maxof() { tr ' ' '\n' <<<"$1" | grep . | sort -g | tail -n1; }
DG_WALLS= DG_TAKES= DG_PEAKS= AWS_WALLS= AWS_PEAKS=
for ROUND in $(seq 1 "$RUNS"); do
    say "round $ROUND of $RUNS"
    # The shell pipeline: aws s3 cp reads stdin into 8 MiB multipart chunks (its default).
    measure "aws.$ROUND" "aws s3 cp - s3://$BUCKET/shell/$ROUND" bash -c \
        "set -o pipefail; '$PG_BIN/pg_dump' --no-password --format=plain -d $DB | gzip -$GZIP_LEVEL \
         | aws s3 cp - s3://$BUCKET/shell/$ROUND.sql.gz --endpoint-url $ENDPOINT --only-show-errors"
    AWS_WALLS+="$WALL "; AWS_PEAKS+="$PEAK "
    AWS_GZ=$(stat -c %s "$WORK/s3/$BUCKET/shell/$ROUND.sql.gz")

    SHA=$(printf '%s %s' "$ROUND" "$(date +%s%N)" | sha1sum | cut -c1-40)
    START_US=${EPOCHREALTIME/[.,]/}
    measure "dg.$ROUND" "release/deploy-guard backup" "$BIN" backup --sha "$SHA" --config "$CONFIG"
    DG_WALLS+="$WALL "; DG_PEAKS+="$PEAK "
    OBJ=$(find "$WORK/s3/$BUCKET/dg" -name "*_*-${SHA:0:7}-*.sql.gz" | head -n1)
    DG_GZ=$(stat -c %s "$OBJ")
    # The object's file appears when the upload completes; reading it back to verify it, the
    # fingerprint and the manifest come after.
    TAKEN_US=$(stat -c %.6Y "$OBJ" | tr -d '.,')
    DG_TAKES+="$(awk -v a="$START_US" -v b="$TAKEN_US" 'BEGIN { printf "%.1f", (b - a) / 1e6 }') "
    PLAIN=$(grep -o '"dump_bytes": *[0-9]*' "$(find "$WORK/s3/$BUCKET/dg" -name "*_*-${SHA:0:7}-*.manifest.json")" | grep -o '[0-9]*$')
    rm -f "$OBJ" "$WORK/s3/$BUCKET/shell/$ROUND.sql.gz"
done

DG=$(median "$DG_WALLS"); TAKE=$(median "$DG_TAKES"); AWS=$(median "$AWS_WALLS")
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
kib_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
cat <<EOF

**Database**: $DATA_TEXT, $DB_PRETTY on disk, $(mib "$PLAIN") MiB of plain SQL → $(mib "$DG_GZ") MiB gzip -$GZIP_LEVEL (aws pipeline: $(mib "$AWS_GZ") MiB). **S3 server**: s3s-fs 0.14.1 on 127.0.0.1 (path-style, signed requests). **Machine**: $(nproc) CPUs, PostgreSQL $PG_VERSION, $AWS_VERSION, load average at the start $LOAD_BEFORE, at the end $(cut -d' ' -f1-3 /proc/loadavg). $RUNS rounds, medians (min–max).

| What | Wall (s) | Peak RSS of the tool itself (MiB, max of rounds) | Notes |
|---|---:|---:|---|
| \`pg_dump \| gzip -$GZIP_LEVEL \| aws s3 cp - s3://…\` | $AWS ($(echo $AWS_WALLS | tr ' ' '\n' | sort -g | head -n1)–$(maxof "$AWS_WALLS")) | $(kib_mib "$(maxof "$AWS_PEAKS")") (aws CLI) | unverified |
| **\`deploy-guard backup\`**, dump → gzip → S3 part | $TAKE | | the object is complete in S3 |
| **\`deploy-guard backup\`**, whole command | $DG ($(echo $DG_WALLS | tr ' ' '\n' | sort -g | head -n1)–$(maxof "$DG_WALLS")) | $(kib_mib "$(maxof "$DG_PEAKS")") | then read back whole from S3 and verified (size, sha256, gunzip, trailer), fingerprint, manifest |

Ratio deploy-guard / shell pipeline: **$(awk -v a="$TAKE" -v b="$AWS" 'BEGIN { printf "%.2f", a / b }')** up to the stored object, **$(awk -v a="$DG" -v b="$AWS" 'BEGIN { printf "%.2f", a / b }')** for the whole verified backup (below 1: deploy-guard is faster).
EOF
