#!/usr/bin/env bash
# psiphond's memory per idle tunnel: a release psiphond on 127.0.0.1, and the idle_tunnels
# example (crates/psiphon-client/examples) opening COUNT tunnels to it, each a distinct client
# session with the SSH and Psiphon handshakes done, then holding them idle. Reports the
# server's RSS before, with all tunnels up, and after they close; its CPU time per tunnel
# established; and its open descriptors. Loopback only.
#
# Usage: scripts/bench-idle-tunnels.sh [COUNT] [OSSH|SSH]   (default 10000 OSSH)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-10000}
PROTO=${2:-OSSH}
# Each tunnel is a descriptor in each process, plus a margin.
ulimit -n $((COUNT + 1024))
cargo build --release -q --bin psiphond --example idle_tunnels
ROOT=$PWD
W=$(mktemp -d /tmp/bench-idle.XXXXXX)
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "${GPID:-}" ] && kill "$GPID" 2>/dev/null || true
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$W" && "$ROOT/target/release/psiphond" -ipaddress 127.0.0.1 -protocol "$PROTO:$port" \
  -logFilename "$W/psiphond.log" generate >/dev/null)
# The generated config names its files relative to where it was written.
(cd "$W" && exec "$ROOT/target/release/psiphond" -config psiphond.config run >psiphond.out 2>&1) &
SPID=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
  sleep 0.1
done

rss() { awk '/^VmRSS/ {print $2}' "/proc/$SPID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
fds() { ls "/proc/$SPID/fd" | wc -l; }
threads() { awk '/^Threads/ {print $2}' "/proc/$SPID/status"; }

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== psiphond $PROTO, $COUNT idle tunnels"
base=$(rss)
echo "server before:      RSS ${base} KiB, $(fds) fds, $(threads) threads"

mkfifo "$W/hold"
"$ROOT/target/release/examples/idle_tunnels" "$W/server-entry.dat" "$COUNT" "$PROTO" \
  <"$W/hold" >"$W/gen.out" 2>&1 &
GPID=$!
exec 3>"$W/hold"
t0=$(cpu_ticks)
start=$(date +%s.%N)
for _ in $(seq 3000); do
  grep -q "tunnels up" "$W/gen.out" && break
  kill -0 "$GPID" 2>/dev/null || break
  sleep 0.2
done
end=$(date +%s.%N)
cat "$W/gen.out"
t1=$(cpu_ticks)
sleep 2
up=$(rss)
hz=$(getconf CLK_TCK)
echo "server with tunnels: RSS ${up} KiB, $(fds) fds, $(threads) threads"
python3 - "$base" "$up" "$COUNT" "$t0" "$t1" "$hz" "$start" "$end" <<'PY'
import sys
base, up, n, t0, t1, hz = (int(x) for x in sys.argv[1:7])
start, end = float(sys.argv[7]), float(sys.argv[8])
print(f"per idle tunnel:    {(up - base) / n:.1f} KiB of server RSS")
print(f"establishment:      {n / (end - start):.0f} tunnels/s, server CPU {(t1 - t0) / hz * 1000 / n:.2f} ms per tunnel")
PY
exec 3>&-
wait "$GPID" || true
GPID=
sleep 2
echo "server after close: RSS $(rss) KiB, $(fds) fds, $(threads) threads"
