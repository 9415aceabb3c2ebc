#!/usr/bin/env bash
# Backup, restore and a failed deploy's recovery over a rate-limited link, like a GitHub runner's
# to a VPS (issue 11, item 4): deploy-guard against the shell pipelines a person would write.
#
#   CARGO_TARGET_DIR=target cargo build --release && sudo bash benches/link.sh
#
# The "target" (the VPS) is a network namespace, `dgbench-target`, holding a throwaway PostgreSQL
# cluster (127.0.0.1 inside the namespace only) and an OpenSSH server on 10.77.0.2. This machine
# (the "runner") reaches it only through a veth pair whose two ends are each shaped by
# `tc ... tbf rate 100mbit`, so both directions are limited. (netem is not available here, so
# no latency is added: the round trip is the tbf queue's, not a real WAN's.) The namespace
# shares this machine's filesystem: the same binaries run on both sides, and a `file://` store
# "on the target" is a directory here, reached by deploy-guard over SSH.
#
# Settings (environment):
#   BENCH_SCALE=25            pgbench scale factor (about 15 MiB of database per unit: ~380 MiB)
#   BENCH_DATA=pgbench        pgbench: `pgbench -i -s SCALE` (mostly blanks: gzip shrinks it
#                             ~30x); random: SCALE x 100,000 rows of random hex text (gzip only
#                             halves it), the hard case for compression
#   BENCH_RUNS=3              rounds of every measurement (the table shows the median)
#   BENCH_RATE=100mbit        tbf rate on each end of the link
#   BENCH_GZIP_LEVEL=6        gzip level of the shell baseline
#   BENCH_ZSTD_LEVEL=3        zstd level of the shell baseline (zstd is installed if missing)
#   BENCH_COMPRESSION=        when set, written as `backup.compression:` into deploy-guard.yml
#   BENCH_BACKUP_YAML=        extra lines for the `backup:` section, verbatim (indent them by
#                             two spaces), e.g. $'  part_size: 16MiB\n'
#   BENCH_DEPLOY=1            0: skip the failed deploy rows (each is a backup plus a restore)
#   DEPLOY_GUARD_MANIFEST_KEY when set, manifests are signed: a restore over SSH from the store
#                             on the runner then checks each piece as it streams (one pass)
#   BENCH_SSH_PORT=2222       the target's sshd port (inside the namespace)
#   BENCH_TMP=${TMPDIR:-/tmp} where the cluster, stores and dump files go (needs ~4x the db size)
#   BENCH_LOGS=               a directory to keep each measurement's timestamped stderr in
#   CARGO_TARGET_DIR          where the release binary is (default: target)
#   DEPLOY_GUARD_PG_BIN       PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
#
# Must run as root (network namespace, veth, tc). Prints the commands to rerun and markdown tables
# on stdout; progress and deploy-guard's timestamped logs go to stderr. On exit, including Ctrl-C
# and failure, it stops the cluster and sshd, deletes the namespace and the veth pair, and removes
# its temp dir.
set -euo pipefail

SCALE=${BENCH_SCALE:-25}
DATA=${BENCH_DATA:-pgbench}
RUNS=${BENCH_RUNS:-3}
RATE=${BENCH_RATE:-100mbit}
GZIP_LEVEL=${BENCH_GZIP_LEVEL:-6}
ZSTD_LEVEL=${BENCH_ZSTD_LEVEL:-3}
COMPRESSION=${BENCH_COMPRESSION:-}
BACKUP_YAML=${BENCH_BACKUP_YAML:-}
DO_DEPLOY=${BENCH_DEPLOY:-1}
SSH_PORT=${BENCH_SSH_PORT:-2222}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT_DIR/$TARGET ;; esac
BIN=$TARGET/release/deploy-guard
DB=bench
NS=dgbench-target
VETH_RUNNER=dgbench0 VETH_TARGET=dgbench1
IP_RUNNER=10.77.0.1 IP_TARGET=10.77.0.2
PG_PORT=5432 # inside the namespace: nothing else listens there

say() { printf '[link %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root: it creates a network namespace, a veth pair and tc qdiscs"
[[ -x $BIN ]] || die "$BIN not found: run \`cargo build --release\` first (CARGO_TARGET_DIR=$TARGET)"

apt_install() { # PACKAGE: installs a Debian package, updating the lists once if needed
    say "installing $1 (apt-get install -y $1)"
    apt-get install -y "$1" >&2 || { apt-get update >&2 && apt-get install -y "$1" >&2; }
}
[[ -x /usr/bin/time ]] || apt_install time
command -v tc >/dev/null && command -v ip >/dev/null || apt_install iproute2
command -v zstd >/dev/null || apt_install zstd
[[ -x /usr/sbin/sshd ]] || apt_install openssh-server
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || apt_install openssh-client
command -v python3 >/dev/null || die "python3 is needed to read deploy-guard's JSON"
id postgres >/dev/null 2>&1 || die "the cluster must belong to a \`postgres\` user (initdb refuses root): apt-get install postgresql"

# --- PostgreSQL binaries: the same search as sandbox::find_bin_dir -----------------------------
PG_BIN=${DEPLOY_GUARD_PG_BIN:-}
if [[ -z $PG_BIN ]]; then
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4n | tail -n1 || true)
fi
[[ -n $PG_BIN && -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] \
    || die "PostgreSQL server binaries (initdb, pgbench) not found: apt-get install postgresql, or set DEPLOY_GUARD_PG_BIN"

[[ -e /run/netns/$NS ]] && die "network namespace $NS exists (another run, or a killed one): \`ip netns pids $NS | xargs -r kill -9; ip netns del $NS\`"
ip link show "$VETH_RUNNER" >/dev/null 2>&1 && die "interface $VETH_RUNNER exists: \`ip link del $VETH_RUNNER\`"
ip route show | grep -q '^10\.77\.0\.' && die "10.77.0.0/24 is already routed here: \`ip route show\`"

# --- scratch space and cleanup -----------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/deploy-guard-link-XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/data" "$WORK/app" "$WORK/store-runner" "$WORK/store-target" "$WORK/out" "$WORK/ssh"
chown -R postgres: "$WORK/data"
chown postgres: "$WORK"
NS_MADE= SSHD_PID= SAMPLER_PID= MEASURED_PID=
in_ns() { ip netns exec "$NS" "$@"; }
cleanup() {
    local rc=$?
    trap '' INT TERM
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    [[ -n $MEASURED_PID ]] && kill "$MEASURED_PID" $(cat /proc/"$MEASURED_PID"/task/*/children 2>/dev/null) 2>/dev/null || true
    if [[ -n $NS_MADE ]]; then
        [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null || true
        if [[ -f $WORK/data/postmaster.pid ]]; then
            in_ns runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
        fi
        # Whatever still runs in the namespace is ours (ssh sessions, a psql): end it.
        local pids
        pids=$(ip netns pids "$NS" 2>/dev/null || true)
        [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
        ip link del "$VETH_RUNNER" 2>/dev/null || true
        ip netns del "$NS" 2>/dev/null || true
    fi
    if [[ -n ${BENCH_LOGS:-} && -d $WORK/out ]]; then
        mkdir -p "$BENCH_LOGS" && cp "$WORK"/out/*.log "$BENCH_LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the link ----------------------------------------------------------------------------------
say "network namespace $NS, veth $VETH_RUNNER ($IP_RUNNER) <-> $VETH_TARGET ($IP_TARGET), tbf $RATE each way"
ip netns add "$NS"
NS_MADE=1
ip link add "$VETH_RUNNER" type veth peer name "$VETH_TARGET"
ip link set "$VETH_TARGET" netns "$NS"
ip addr add "$IP_RUNNER/24" dev "$VETH_RUNNER"
ip link set "$VETH_RUNNER" up
in_ns ip addr add "$IP_TARGET/24" dev "$VETH_TARGET"
in_ns ip link set "$VETH_TARGET" up
in_ns ip link set lo up
tc qdisc add dev "$VETH_RUNNER" root tbf rate "$RATE" burst 256kb latency 50ms \
    || die "tc tbf failed on $VETH_RUNNER (is sch_tbf in this kernel?)"
in_ns tc qdisc add dev "$VETH_TARGET" root tbf rate "$RATE" burst 256kb latency 50ms \
    || die "tc tbf failed on $VETH_TARGET"
say "$(tc qdisc show dev "$VETH_RUNNER") / $(in_ns tc qdisc show dev "$VETH_TARGET")"

# --- sshd on the target (the config tests/common/sshd.rs uses) -----------------------------------
ssh-keygen -q -t ed25519 -N '' -C deploy-guard-bench -f "$WORK/ssh/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C deploy-guard-bench -f "$WORK/ssh/client"
cp "$WORK/ssh/client.pub" "$WORK/ssh/authorized_keys"
mkdir -p /run/sshd
cat >"$WORK/ssh/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress $IP_TARGET
HostKey $WORK/ssh/host_ed25519
PidFile $WORK/ssh/sshd.pid
AuthorizedKeysFile $WORK/ssh/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxSessions 64
MaxStartups 64
LogLevel ERROR
EOF
# `ip netns exec` execs sshd: $! is sshd's pid.
ip netns exec "$NS" /usr/sbin/sshd -D -e -f "$WORK/ssh/sshd_config" 2>"$WORK/ssh/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/$IP_TARGET/$SSH_PORT") 2>/dev/null && break
    kill -0 "$SSHD_PID" 2>/dev/null || { cat "$WORK/ssh/sshd.log" >&2; die "sshd exited"; }
    sleep 0.1
done
read -r KEY_TYPE KEY_B64 _ <"$WORK/ssh/host_ed25519.pub"
KNOWN_HOSTS="[$IP_TARGET]:$SSH_PORT $KEY_TYPE $KEY_B64"
echo "$KNOWN_HOSTS" >"$WORK/ssh/known_hosts"
TARGET_USER=$(id -un)
SSH=(ssh -F /dev/null -i "$WORK/ssh/client" -p "$SSH_PORT" -o BatchMode=yes -o IdentitiesOnly=yes
     -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$WORK/ssh/known_hosts" "$TARGET_USER@$IP_TARGET")
SSH_Q=$(printf '%q ' "${SSH[@]}")
"${SSH[@]}" true || { cat "$WORK/ssh/sshd.log" >&2; die "ssh to the target failed"; }
say "sshd on $IP_TARGET:$SSH_PORT inside $NS (pid $SSHD_PID)"

# --- what the link carries: the veth counters on the runner's side -------------------------------
link_bytes() { # -> "DOWN UP" bytes so far (down: target -> runner)
    echo "$(cat /sys/class/net/$VETH_RUNNER/statistics/rx_bytes) $(cat /sys/class/net/$VETH_RUNNER/statistics/tx_bytes)"
}
mb_s() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else print "-" }'; }
probe() { # DIRECTION: 50 MiB of random bytes through ssh; sets PROBE_S
    local t0 t1
    t0=${EPOCHREALTIME/[.,]/}
    if [[ $1 == up ]]; then
        head -c 50M /dev/urandom | "${SSH[@]}" 'cat > /dev/null'
    else
        "${SSH[@]}" 'head -c 50M /dev/urandom' >/dev/null
    fi
    t1=${EPOCHREALTIME/[.,]/}
    PROBE_S=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e6 }')
}
probe up; UP_S=$PROBE_S
probe down; DOWN_S=$PROBE_S
LINK_TEXT="50 MiB through ssh: runner → target $(mb_s 52428800 "$UP_S") MB/s, target → runner $(mb_s 52428800 "$DOWN_S") MB/s"
say "the link: $LINK_TEXT (100 Mbit/s is 12.5 MB/s)"

# --- the cluster, inside the namespace ---------------------------------------------------------
say "initdb ($PG_BIN) in $WORK/data"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 --no-sync >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
# No Unix socket: a socket file would be reachable from outside the namespace.
in_ns runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 \
    -o "-p $PG_PORT -c unix_socket_directories= -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null 2>&1 || { cat "$WORK/server.log" >&2 2>/dev/null || true; die "PostgreSQL did not start"; }
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres
PSQL=(in_ns "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1)
PG_VERSION=$("${PSQL[@]}" -d postgres -c 'SHOW server_version;')
say "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT inside $NS"

# --- the database ------------------------------------------------------------------------------
in_ns "$PG_BIN/createdb" "$DB"
t0=$(date +%s)
case $DATA in
pgbench)
    DATA_TEXT="\`pgbench -i -s $SCALE\`"
    say "pgbench -i -s $SCALE"
    in_ns "$PG_BIN/pgbench" -i -q -s "$SCALE" "$DB" >"$WORK/pgbench.log" 2>&1 || { tail -n 20 "$WORK/pgbench.log" >&2; die "pgbench -i failed"; }
    ;;
random)
    DATA_TEXT="random: table \`events\`, $((SCALE * 100000)) rows of md5 text + \`pgbench -i -s 1\`"
    say "generating $((SCALE * 100000)) rows of random text, plus pgbench -i -s 1"
    in_ns "$PG_BIN/pgbench" -i -q -s 1 "$DB" >"$WORK/pgbench.log" 2>&1 || { tail -n 20 "$WORK/pgbench.log" >&2; die "pgbench -i failed"; }
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
"${PSQL[@]}" -d "$DB" -c 'CREATE TABLE bench_migrations (id serial PRIMARY KEY, name text NOT NULL); CHECKPOINT;' >/dev/null
DB_BYTES=$("${PSQL[@]}" -d "$DB" -c "SELECT pg_database_size('$DB');")
DB_PRETTY=$("${PSQL[@]}" -d "$DB" -c "SELECT pg_size_pretty(pg_database_size('$DB'));")
PLAIN_BYTES=$(in_ns "$PG_BIN/pg_dump" --no-password --format=plain -d "$DB" | wc -c)
say "database $DB: $DB_PRETTY ($DB_BYTES bytes), $PLAIN_BYTES bytes of plain SQL, made in $(( $(date +%s) - t0 )) s"

# --- deploy-guard's configs: the same target, the store on the runner or on the target ----------
# The release deploy-guard deploys fails after changing the database: its migration creates a
# table, deletes half of pgbench_tellers, records nothing and exits 1. A new table alone would be
# kept (path `none`); deleted rows cannot be reverted (and revert is `false`), so the rollback
# takes the restore path.
# The migration runs on the target, where libpq's defaults reach no cluster: name this one.
P="'$PG_BIN/psql' -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $PG_PORT -U postgres -d $DB"
cat >"$WORK/app/migrate.sh" <<EOF
$P -c "CREATE TABLE half_done AS SELECT g AS id FROM generate_series(1, 1000) g;"
$P -c "DELETE FROM pgbench_tellers WHERE tid % 2 = 0;"
echo "the migration failed halfway" >&2
exit 1
EOF
echo v1 >"$WORK/app/state"
config() { # STORE_ON -> a deploy-guard.yml
    cat <<EOF
project: bench
target:
  host: $IP_TARGET
  port: $SSH_PORT
  user: $TARGET_USER
  known_hosts: "$KNOWN_HOSTS"
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
  port: $PG_PORT
  user: postgres
  name: $DB
  bin_dir: "$PG_BIN"
migrations:
  tool: command
  run: sh migrate.sh
  revert: "false"
  table: bench_migrations
  order_by: id
backup:
  store: "file://$WORK/store-$1"
  store_on: $1
EOF
    [[ -z $COMPRESSION ]] || echo "  compression: $COMPRESSION"
    [[ -z $BACKUP_YAML ]] || printf '%s\n' "$BACKUP_YAML"
}
config runner >"$WORK/runner.yml"
config target >"$WORK/target.yml"
export DEPLOY_GUARD_SSH_KEY
DEPLOY_GUARD_SSH_KEY=$(cat "$WORK/ssh/client")
export DEPLOY_GUARD_LOG=${DEPLOY_GUARD_LOG:-info}
# Not a GitHub job, whatever the environment says: no deployments, comments or issues, and a
# runner store is allowed.
DG=(env -u GITHUB_ACTIONS -u GITHUB_TOKEN -u GITHUB_REPOSITORY -u GITHUB_STEP_SUMMARY -u GITHUB_OUTPUT
    -u RUNNER_ENVIRONMENT "$BIN")

# --- measuring (as benches/backup-restore.sh, plus the bytes the link carried) -------------------
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
measured_pid() { # the process /usr/bin/time runs
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

# measure NAME CMD...: runs CMD under `/usr/bin/time -v` (its stdout to out/NAME.stdout, its
# stderr timestamped to out/NAME.log). Sets WALL (s), CPU (user+sys s, of the runner's side
# only), OWN_HWM and TREE_RSS (KiB), DOWN and UP (bytes the link carried), RC, START_US.
measure() {
    local name=$1; shift
    local tfile=$WORK/out/$name.time log=$WORK/out/$name.log hwm_file=$WORK/out/$name.hwm
    local tpid before after
    say "measuring $name: $*"
    sync
    before=$(link_bytes)
    START_US=${EPOCHREALTIME/[.,]/}
    mkfifo "$WORK/out/$name.fifo"
    stamp "$START_US" <"$WORK/out/$name.fifo" >"$log" &
    local stamp_pid=$!
    /usr/bin/time -v -o "$tfile" "$@" >"$WORK/out/$name.stdout" 2>"$WORK/out/$name.fifo" &
    tpid=$!
    MEASURED_PID=$tpid
    (
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
    after=$(link_bytes)
    read -r d0 u0 <<<"$before"
    read -r d1 u1 <<<"$after"
    DOWN=$((d1 - d0)) UP=$((u1 - u0))
    local e
    e=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tfile")
    WALL=$(awk -v e="$e" 'BEGIN { n = split(e, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.1f", s }')
    CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", u + s}' "$tfile")
    read -r OWN_HWM TREE_RSS 2>/dev/null <"$hwm_file" || { OWN_HWM=0; TREE_RSS=0; }
    say "$name: rc $RC, ${WALL}s wall, ${CPU}s cpu here, link down $(mib "$DOWN") MiB / up $(mib "$UP") MiB"
    if (( RC != 0 )); then
        say "$name exited $RC; the end of its stderr (repeated lines counted):"
        sed 's/\x1b\[[0-9;]*m//g' "$log" | cut -c9- | uniq -c | tail -n 20 >&2
    fi
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1048576 / s; else print "-" }'; }
kib_mib() { awk -v k="${1:-0}" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "-" }'; }
median() { tr ' ' '\n' <<<"$1" | { grep . || true; } | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
spread() { tr ' ' '\n' <<<"$1" | { grep . || true; } | sort -g | awk '{ a[NR] = $1 } END { if (NR > 1) printf " (%s–%s)", a[1], a[NR] }'; }

declare -A WALLS CPUS OWN TREE DOWNS UPS FAILS TAKES SIZES REC
FAILED=()
# record KEY [OK_RC]: files the last measurement under KEY (a failed deploy exits 1 by design)
record() {
    local k=$1 ok=${2:-0}
    if (( RC != ok )); then
        FAILS[$k]+="${FAILS[$k]:+, }round $ROUND exited $RC"
        FAILED+=("$k, round $ROUND (exit $RC)")
        return 1
    fi
    WALLS[$k]+="$WALL "
    CPUS[$k]+="$CPU "
    DOWNS[$k]+="$DOWN "
    UPS[$k]+="$UP "
    (( ${OWN_HWM:-0} > ${OWN[$k]:-0} )) && OWN[$k]=$OWN_HWM
    (( ${TREE_RSS:-0} > ${TREE[$k]:-0} )) && TREE[$k]=$TREE_RSS
    return 0
}
drop_kept() { # a swap keeps the replaced database for forensics: drop it to free the disk
    "${PSQL[@]}" -d postgres -c "SELECT format('DROP DATABASE %I;', datname) FROM pg_database WHERE datname LIKE '${DB}\\_\\_%'" \
        | "${PSQL[@]}" -d postgres >/dev/null || true
}
manifest() { # STORE_ON SHA -> the manifest's path
    find "$WORK/store-$1" -name "*_*-${2:0:7}-*.manifest.json" | head -n1
}
manifest_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# The shell pipelines, run on the runner: ssh to the target, which dumps (or restores) there.
PGENV="PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres"
DUMP_REMOTE="set -o pipefail; $PGENV '$PG_BIN/pg_dump' --no-password --format=plain -d $DB"
restore_remote() { # DB DECOMPRESSOR -> the remote command
    echo "set -o pipefail; $2 | $PGENV '$PG_BIN/psql' -X -q --no-password -v ON_ERROR_STOP=1 --single-transaction -o /dev/null -d $1"
}
shell_round() { # NAME COMPRESS DECOMPRESS EXT
    local name=$1 comp=$2 decomp=$3 ext=$4 file=$WORK/out/shell.$4
    measure "${name}_backup.$ROUND" bash -c "set -o pipefail; $SSH_Q $(printf '%q' "bash -c $(printf '%q' "$DUMP_REMOTE | $comp")") > '$file'"
    record "${name}_backup" && SIZES[$name]=$(stat -c %s "$file")
    in_ns "$PG_BIN/createdb" "${DB}_shell"
    measure "${name}_restore.$ROUND" bash -c "set -o pipefail; $SSH_Q $(printf '%q' "bash -c $(printf '%q' "$(restore_remote "${DB}_shell" "$decomp")")") < '$file'"
    record "${name}_restore" || true
    in_ns "$PG_BIN/dropdb" "${DB}_shell"
    rm -f "$file"
}

# deploy_round STORE_ON: a deploy whose migration fails; its report's steps, per round.
deploy_round() {
    local on=$1 sha k=deploy_$1
    sha=$(printf 'deploy %s %s %s' "$on" "$ROUND" "$(date +%s%N)" | sha1sum | cut -c1-40)
    measure "$k.$ROUND" "${DG[@]}" deploy --sha "$sha" --tag v2 --json --config "$WORK/$on.yml"
    drop_kept
    # A rolled-back deploy exits 1.
    record "$k" 1 || return 0
    cp "$WORK/out/$k.$ROUND.stdout" "$WORK/out/$k.json"
    while read -r key val; do
        REC[$on:$key]+="$val "
    done < <(python3 - "$WORK/out/$k.json" <<'PY'
import json, re, sys
from datetime import datetime
r = json.load(open(sys.argv[1]))
# chrono writes nanoseconds; fromisoformat (before 3.11) takes at most microseconds.
t = lambda s: datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", s.replace("Z", "+00:00")))
steps = {}
for e in r["steps"]:
    if e.get("finished_at"):
        steps[e["step"]] = e
        print("step:%s %.2f" % (e["step"], (t(e["finished_at"]) - t(e["started_at"])).total_seconds()))
print("result %s" % r["result"])
print("path %s" % r["path"])
if r.get("recovery_secs") is not None:
    print("recovery %.2f" % r["recovery_secs"])
if "migrate" in steps and "redeploy-health" in steps:
    print("failure_to_healthy %.2f" % (t(steps["redeploy-health"]["finished_at"]) - t(steps["migrate"]["finished_at"])).total_seconds())
print("total %.2f" % r["duration_secs"])
PY
)
    say "$k: ${REC[$on:result]:-?} by ${REC[$on:path]:-?}, from the failure to healthy on v1 in ${REC[$on:failure_to_healthy]:-?} s"
}

for ROUND in $(seq 1 "$RUNS"); do
    say "round $ROUND of $RUNS"
    # 1. What a person writes: dump and compress on the target, carry the result home; and back.
    shell_round gzip "gzip -$GZIP_LEVEL" "gunzip" gz
    shell_round zstd "zstd -q -$ZSTD_LEVEL" "zstd -q -d" zst

    # 2. deploy-guard backup and restore, the store on the runner, then on the target.
    for on in runner target; do
        SHA=$(printf '%s %s %s' "$on" "$ROUND" "$(date +%s%N)" | sha1sum | cut -c1-40)
        measure "dg_backup_$on.$ROUND" "${DG[@]}" backup --sha "$SHA" --config "$WORK/$on.yml"
        if record "dg_backup_$on"; then
            M=$(manifest "$on" "$SHA")
            SIZES[dg_$on]=$(manifest_field "$M" size)
            DUMP_BYTES=$(manifest_field "$M" dump_bytes)
            OBJ=$WORK/store-$on/$(manifest_field "$M" key)
            # The object is last written when the stream ends; the read-back etc. come after.
            if [[ -f $OBJ ]]; then
                TAKEN_US=$(stat -c %.6Y "$OBJ" | tr -d '.,')
                TAKES[$on]+="$(awk -v a="$START_US" -v b="$TAKEN_US" 'BEGIN { printf "%.1f", (b - a) / 1e6 }') "
            fi
            measure "dg_restore_$on.$ROUND" "${DG[@]}" restore --sha "${SHA:0:7}" --config "$WORK/$on.yml"
            record "dg_restore_$on" || true
            drop_kept
        fi
    done

    # 3. A deploy whose migration fails: backup, migrate (fails), assess, restore, swap, redeploy.
    if [[ $DO_DEPLOY == 1 ]]; then
        for on in runner target; do deploy_round "$on"; done
    fi
done

# --- the tables --------------------------------------------------------------------------------
ROWS=()
row() { # key, label, note
    local k=$1 label=$2 note=$3 w
    if [[ -z ${WALLS[$k]:-} ]]; then
        ROWS+=("| $label | FAILED | - | - | - | - | - | ${FAILS[$k]:-not run} |")
        return
    fi
    w=$(median "${WALLS[$k]}")
    [[ -n ${FAILS[$k]:-} ]] && note="$note; **FAILED** in ${FAILS[$k]} (see stderr)"
    ROWS+=("| $label | $w$(spread "${WALLS[$k]}") | $(rate "$PLAIN_BYTES" "$w") | $(mib "$(median "${DOWNS[$k]}")") / $(mib "$(median "${UPS[$k]}")") | $(median "${CPUS[$k]}") | $([[ $k == dg_* || $k == deploy_* ]] && kib_mib "${OWN[$k]:-0}" || echo -) | $(kib_mib "${TREE[$k]:-0}") | $note |")
}
size_note() { [[ -n ${SIZES[$1]:-} ]] && echo "→ $(mib "${SIZES[$1]}") MiB" || echo "-"; }
take_note() {
    local m
    m=$(median "${TAKES[$1]:-}")
    [[ $m == - ]] && return
    echo "; stream to the store ${m} s, then read back, verify, manifest"
}
row gzip_backup "\`ssh target 'pg_dump \\| gzip -$GZIP_LEVEL' > file\`" "$(size_note gzip); unverified"
row zstd_backup "\`ssh target 'pg_dump \\| zstd -$ZSTD_LEVEL' > file\`" "$(size_note zstd); unverified"
row dg_backup_runner "**\`deploy-guard backup\`**, store on the runner" "$(size_note dg_runner)$(take_note runner)"
row dg_backup_target "**\`deploy-guard backup\`**, store on the target" "$(size_note dg_target)$(take_note target)"
row gzip_restore "\`ssh target 'gunzip \\| psql --single-transaction' < file\`" "into an empty database"
row zstd_restore "\`ssh target 'zstd -d \\| psql --single-transaction' < file\`" "into an empty database"
row dg_restore_runner "**\`deploy-guard restore\`**, store on the runner" "scratch database, validate, swap"
row dg_restore_target "**\`deploy-guard restore\`**, store on the target" "scratch database, validate, swap"
if [[ $DO_DEPLOY == 1 ]]; then
    row deploy_runner "\`deploy-guard deploy\`, migration fails, store on the runner" "backup + failed migration + restore path; exit 1 expected"
    row deploy_target "\`deploy-guard deploy\`, migration fails, store on the target" "backup + failed migration + restore path; exit 1 expected"
fi

rec() { median "${REC[$1:$2]:-}"; }
REC_ROWS=()
rec_row() { # label, key
    REC_ROWS+=("| $1 | $(rec runner "$2") | $(rec target "$2") |")
}
if [[ $DO_DEPLOY == 1 ]]; then
    rec_row "the whole deploy (exit 1: rolled back)" total
    rec_row "step \`backup\`" step:backup
    rec_row "step \`migrate\` (fails)" step:migrate
    rec_row "**from the failure to healthy on the previous tag** (end of \`migrate\` → end of \`redeploy-health\`)" failure_to_healthy
    rec_row "recovery as the report gives it (\`recovery_secs\`: first rollback step → end, incl. \`checks\`)" recovery
    for s in assess revert verify-revert restore validate-restore stop-app swap lost-writes redeploy redeploy-health checks; do
        [[ -n ${REC[runner:step:$s]:-}${REC[target:step:$s]:-} ]] && rec_row "… step \`$s\`" "step:$s"
    done
    REC_ROWS+=("| \`deploy-guard restore\` alone, for scale (table above) | $(median "${WALLS[dg_restore_runner]:-}") | $(median "${WALLS[dg_restore_target]:-}") |")
    last() { local a; read -ra a <<<"${REC[$1]:-}"; if (( ${#a[@]} )); then echo "${a[-1]}"; else echo -; fi; }
    REC_ROWS+=("| database path, result (last round) | $(last runner:path), $(last runner:result) | $(last target:path), $(last target:result) |")
fi

# --- where deploy-guard's time went (from its timestamped log) ---------------------------------
{
    echo "deploy-guard logs of round 1 (seconds since start):"
    for n in dg_backup_runner.1 dg_restore_runner.1 dg_backup_target.1 dg_restore_target.1 deploy_runner.1 deploy_target.1; do
        [[ -f $WORK/out/$n.log ]] || continue
        echo "--- $n"
        sed 's/\x1b\[[0-9;]*m//g' "$WORK/out/$n.log" | grep -v '^ *[0-9.]* *$' | cut -c1-200 || true
    done
} >&2

MEM_TOTAL=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
REV=$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT_DIR" diff --quiet HEAD 2>/dev/null || echo '+dirty')
ENV_TEXT="BENCH_SCALE=$SCALE BENCH_DATA=$DATA BENCH_RUNS=$RUNS"
[[ $RATE == 100mbit ]] || ENV_TEXT+=" BENCH_RATE=$RATE"
[[ -z $COMPRESSION ]] || ENV_TEXT+=" BENCH_COMPRESSION=$COMPRESSION"
[[ -z $BACKUP_YAML ]] || ENV_TEXT+=" BENCH_BACKUP_YAML=$(printf '%q' "$BACKUP_YAML")"
[[ $DO_DEPLOY == 1 ]] || ENV_TEXT+=" BENCH_DEPLOY=0"
cat <<EOF

Rerun (as root, from the repository; tree at $REV):

\`\`\`sh
CARGO_TARGET_DIR=$TARGET cargo build --release
CARGO_TARGET_DIR=$TARGET $ENV_TEXT nice -n 10 bash benches/link.sh
\`\`\`

**Link**: veth with \`tbf rate $RATE burst 256kb latency 50ms\` on both ends, no added latency; measured $LINK_TEXT. **Database**: $DATA_TEXT, $DB_PRETTY on disk ($DB_BYTES bytes), $(mib "$PLAIN_BYTES") MiB of plain SQL. **Machine**: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $MEM_TOTAL RAM, PostgreSQL $PG_VERSION, zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n1), load average at the start $LOAD_BEFORE, at the end $(cut -d' ' -f1-3 /proc/loadavg).$([[ -n $COMPRESSION ]] && echo " \`backup.compression: $COMPRESSION\`.")

| What | Wall (s), median$( (( RUNS > 1 )) && echo " (min–max)") of $RUNS | MiB/s of plain SQL | MiB over the link, down / up | CPU on the runner, user+sys (s) | deploy-guard's own peak RSS (MiB) | peak RSS of the runner's process tree (MiB) | Notes |
|---|---:|---:|---:|---:|---:|---:|---|
$(printf '%s\n' "${ROWS[@]}")

Down is target → runner, up is runner → target (the veth's byte counters, SSH and TCP included). CPU is the runner's side only: pg_dump, psql, gzip and zstd run on the target.
EOF
if [[ $DO_DEPLOY == 1 ]]; then
    cat <<EOF

A failed deploy's recovery: the migration creates a table and exits 1, the revert cannot be trusted, so deploy-guard restores the deploy's own backup and redeploys v1 (from its \`--json\` report, median of $RUNS):

| Failed deploy, s | store on the runner | store on the target |
|---|---:|---:|
$(printf '%s\n' "${REC_ROWS[@]}")
EOF
fi
if (( ${#FAILED[@]} > 0 )); then
    echo
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
