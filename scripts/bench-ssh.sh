#!/usr/bin/env bash
# Bulk throughput through our SSH (client with a SOCKS5 front, server relaying direct-tcpip)
# next to OpenSSH's `ssh -D`, measured in one sitting with ../shared/bench (curl downloads 1 GiB
# from a local nginx through each SOCKS5 proxy).
#
# Needs: nginx, openssh-server/client, curl (apt-get install nginx openssh-server curl).
# Usage: scripts/bench-ssh.sh [RUNS]         (default 3 runs per row, after a warm-up)
set -euo pipefail
cd "$(dirname "$0")/.."
B=../shared/bench
RUNS=${1:-3}
[ -d "$B" ] || { echo "bench-ssh.sh: $B not found (the shared/ folder beside the project)" >&2; exit 1; }

cargo build --release -q -p psiphon-ssh --example ssh_tunnel
BIN=target/release/examples/ssh_tunnel
OUR_SERVER_PORT=2223
OUR_SOCKS=1090

cleanup() {
  [ -n "${CPID:-}" ] && kill "$CPID" 2>/dev/null || true
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null || true
  "$B/ssh-tunnel.sh" stop >/dev/null 2>&1 || true
  "$B/ssh-tunnel.sh" sshd-stop >/dev/null 2>&1 || true
  "$B/origin.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$B/origin.sh" start
"$B/ssh-tunnel.sh" sshd-start

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

for cipher in aes128-gcm@openssh.com chacha20-poly1305@openssh.com; do
  "$B/ssh-tunnel.sh" start "$cipher" 1080 >/dev/null
  read -r SSH_PID SSHD_PID < <("$B/ssh-tunnel.sh" pids 1080)
  "$B/wait-quiet.sh" 15 3 300 >/dev/null || true
  echo "== OpenSSH ssh -D, $cipher"
  "$B/proxy-throughput.sh" socks5 127.0.0.1:1080 -n "$RUNS" --cpu "ssh:$SSH_PID" --cpu "sshd:$SSHD_PID" | grep -E 'RESULT|cpu'
  "$B/ssh-tunnel.sh" stop 1080 >/dev/null
done

coproc SERVER { exec "$BIN" server --listen 127.0.0.1:$OUR_SERVER_PORT; }
SPID=$SERVER_PID
read -r HOSTKEY <&"${SERVER[0]}"
for spec in "aes128-gcm@openssh.com" "chacha20-poly1305@openssh.com" "aes128-ctr hmac-sha2-256"; do
  set -- $spec
  args=(--cipher "$1"); [ $# -gt 1 ] && args+=(--mac "$2")
  "$BIN" client --server 127.0.0.1:$OUR_SERVER_PORT --host-key "$HOSTKEY" --socks 127.0.0.1:$OUR_SOCKS "${args[@]}" 2>/dev/null &
  CPID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$OUR_SOCKS) 2>/dev/null && break; sleep 0.05; done
  "$B/wait-quiet.sh" 15 3 300 >/dev/null || true
  echo "== psiphon-ssh, $spec"
  "$B/proxy-throughput.sh" socks5 127.0.0.1:$OUR_SOCKS -n "$RUNS" --cpu "client:$CPID" --cpu "server:$SPID" | grep -E 'RESULT|cpu'
  echo "peak RSS: client $(awk '/VmHWM/ {print $2, $3}' /proc/$CPID/status), server $(awk '/VmHWM/ {print $2, $3}' /proc/$SPID/status)"
  kill "$CPID"; wait "$CPID" 2>/dev/null || true; CPID=
done
