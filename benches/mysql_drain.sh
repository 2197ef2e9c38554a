#!/usr/bin/env bash
# Drain benchmark of the MySQL binlog listener on a throwaway MariaDB, against the server's own
# client: a binlog of 175,000 changes (100,000 inserts in 1,000-row transactions, 50,000
# updates, 25,000 deletes; columns BIGINT, INT, TEXT), read to its end by
#   mariadb-binlog --read-from-remote-server --raw        (the bytes only, to a temp dir)
#   mariadb-binlog --read-from-remote-server              (decoded to SQL text, to /dev/null)
#   cdc-tui --headless                                     (every change as a JSON line)
# cdc-tui resumes from a position saved before the workload, and is timed until it printed the
# 175,000th change line. Each contender runs ROUNDS times (3); the median is printed.
# Run: cargo build --release && bash benches/mysql_drain.sh  (BENCHMARKS.md has the figures)
set -euo pipefail
cd "$(dirname "$0")/.."
CDC_TUI=${CDC_TUI:-${CARGO_TARGET_DIR:-target}/release/cdc-tui}
ROUNDS=${ROUNDS:-3}
[ -x "$CDC_TUI" ] || { echo "build first: cargo build --release ($CDC_TUI)" >&2; exit 2; }

dir=$(mktemp -d)
user_args=()
if [ "$(id -u)" = 0 ]; then chown mysql:mysql "$dir"; user_args=(--user=mysql); fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
  while [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; do sleep 0.1; done
  rm -rf "$dir"
}
trap cleanup EXIT
mariadb-install-db --no-defaults --datadir="$dir/data" "${user_args[@]}" \
  --auth-root-authentication-method=normal --skip-test-db >/dev/null
mariadbd --no-defaults --datadir="$dir/data" "${user_args[@]}" --port="$port" \
  --bind-address=127.0.0.1 --socket="$dir/sock" --pid-file="$dir/pid" --log-error="$dir/err" \
  --log-bin="$dir/data/binlog" --binlog-format=ROW --server-id=1 --skip-name-resolve \
  --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
  --max-binlog-size=1G >/dev/null 2>&1 &
until mariadb --no-defaults -S "$dir/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.1; done
sql() { mariadb --no-defaults -S "$dir/sock" -uroot "$@"; }
sql -e "CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'; GRANT ALL ON *.* TO 'bench'@'%';
        CREATE DATABASE bench; CREATE TABLE bench.t (id BIGINT PRIMARY KEY, n INT, s TEXT);
        CREATE TABLE bench.mark (id INT PRIMARY KEY)"

# cdc-tui saves a position before the workload: it watches bench.* and sees one mark row.
work=$(mktemp -d)
cat >"$work/cdc.toml" <<TOML
[state]
dir = "$work/state"
[[database]]
name = "db"
kind = "mysql"
url = "mysql://bench:bench@127.0.0.1:$port/bench"
[[listener]]
identifier = "bench"
database = "db"
table = "bench.*"
strategy = "binlog"
TOML
"$CDC_TUI" --headless --config "$work/cdc.toml" > "$work/first.jsonl" &
cdc=$!
until grep -q '"state":"running"' "$work/first.jsonl" 2>/dev/null; do sleep 0.1; done
sql -e "INSERT INTO bench.mark VALUES (1)"
until grep -q '"type":"flush"' "$work/first.jsonl"; do sleep 0.1; done
# Saved within a second of its flush (a file per listener under the state dir).
until [ -n "$(ls -A "$work/state" 2>/dev/null)" ]; do sleep 0.1; done
kill -TERM $cdc; wait $cdc || true

start_file=$(sql -N -e "SHOW BINARY LOGS" | tail -n 1 | cut -f1)
echo "workload: 175,000 changes"
for tx in $(seq 0 99); do
  echo "INSERT INTO bench.t SELECT seq, seq % 1000, CONCAT('row ', seq) FROM seq_$((tx * 1000 + 1))_to_$((tx * 1000 + 1000));"
done | sql
for tx in $(seq 0 49); do
  echo "UPDATE bench.t SET n = n + 1, s = CONCAT(s, ' updated') WHERE id BETWEEN $((tx * 1000 + 1)) AND $((tx * 1000 + 1000));"
done | sql
for tx in $(seq 0 24); do
  echo "DELETE FROM bench.t WHERE id BETWEEN $((50000 + tx * 1000 + 1)) AND $((50000 + tx * 1000 + 1000));"
done | sql
binlog_bytes=$(sql -N -e "SHOW BINARY LOGS" | awk '{ total += $2 } END { print total }')
echo "binlog: $binlog_bytes bytes from $start_file"

now() { date +%s.%N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A times
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$work/raw"; mkdir "$work/raw"
  t0=$(now)
  mariadb-binlog --no-defaults --read-from-remote-server --host=127.0.0.1 --port="$port" \
    -ubench -pbench --raw --result-file="$work/raw/" --to-last-log "$start_file"
  t1=$(now); times[raw]+="$(awk "BEGIN { print $t1 - $t0 }") "
  t0=$(now)
  mariadb-binlog --no-defaults --read-from-remote-server --host=127.0.0.1 --port="$port" \
    -ubench -pbench --to-last-log "$start_file" >/dev/null
  t1=$(now); times[decoded]+="$(awk "BEGIN { print $t1 - $t0 }") "
  rm -rf "$work/state.round"; cp -r "$work/state" "$work/state.round"
  sed "s|$work/state\"|$work/state.round\"|" "$work/cdc.toml" > "$work/round.toml"
  t0=$(now)
  "$CDC_TUI" --headless --config "$work/round.toml" | grep -m 175000 -F '"type":"change"' | tail -n 1 >/dev/null
  t1=$(now); times[cdc]+="$(awk "BEGIN { print $t1 - $t0 }") "
done
for name in raw decoded cdc; do
  printf '%-8s median %.2f s  (rounds: %s)\n' "$name" "$(tr ' ' '\n' <<<"${times[$name]}" | grep . | median)" "${times[$name]}"
done
rm -rf "$work"
