#!/usr/bin/env bash
# Throughput through the real client and server (`psiphon` + `psiphond`, OSSH, separate
# processes) next to OpenSSH's `ssh -D`, in one sitting, with ../shared/bench: curl downloads
# 1 GiB from a local nginx through each SOCKS5 proxy. Also reports the client's peak RSS and
# the stripped size of the release binaries.
#
# Needs: nginx, openssh-server/client, curl, python3. Usage: scripts/bench-client.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
B=../shared/bench
RUNS=${1:-3}
cargo build --release -q --bin psiphon --bin psiphond
W=$(mktemp -d /tmp/bench-client.XXXXXX)
cleanup() {
  [ -n "${CPID:-}" ] && kill "$CPID" 2>/dev/null || true
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null || true
  "$B/ssh-tunnel.sh" stop 1080 >/dev/null 2>&1 || true
  "$B/ssh-tunnel.sh" sshd-stop >/dev/null 2>&1 || true
  "$B/origin.sh" stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
"$B/origin.sh" start >/dev/null
"$B/ssh-tunnel.sh" sshd-start >/dev/null
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== binaries (stripped): psiphon $(stat -c %s target/release/psiphon) bytes, psiphond $(stat -c %s target/release/psiphond) bytes"

"$B/ssh-tunnel.sh" start aes128-gcm@openssh.com 1080 >/dev/null
read -r SSH_PID SSHD_PID < <("$B/ssh-tunnel.sh" pids 1080)
"$B/wait-quiet.sh" 15 3 300 >/dev/null || true
echo "== OpenSSH ssh -D, aes128-gcm"
"$B/proxy-throughput.sh" socks5 127.0.0.1:1080 -n "$RUNS" --cpu "ssh:$SSH_PID" --cpu "sshd:$SSHD_PID" | grep RESULT
"$B/ssh-tunnel.sh" stop 1080 >/dev/null

# Our server: generated as an operator would, with AllowBogons so it may reach nginx on loopback.
( cd "$W" && "$OLDPWD/target/release/psiphond" generate --ipaddress 127.0.0.1 --protocol OSSH:29999 >/dev/null )
python3 - "$W/psiphond.config" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["AllowBogons"] = True; c["LogFilename"] = p + ".log"
json.dump(c, open(p, "w"))
PY
# Run 1 as generated (no host-bytes regexes: no host sniffing); run 2 with the sponsor's
# https_request_regexes set, so the client sniffs each forward's Host/SNI and counts bytes per
# domain (the cost of per-domain statistics).
run_ours() {
  local label=$1
  ( cd "$W" && exec "$OLDPWD/target/release/psiphond" run --config psiphond.config ) & SPID=$!
  cat > "$W/client.json" <<'JSON'
{"PropagationChannelId":"24BCA4EE20BEB92C","SponsorId":"721AE60D76700F5A","LocalSocksProxyPort":1090,"LocalHttpProxyPort":0}
JSON
  rm -rf "$W/client-data"
  target/release/psiphon --config "$W/client.json" --server-list "$W/server-entry.dat" \
    --data-root "$W/client-data" 2>"$W/notices" & CPID=$!
  for _ in $(seq 200); do grep -q '"count":1' "$W/notices" 2>/dev/null && break; sleep 0.05; done
  "$B/wait-quiet.sh" 15 3 300 >/dev/null || true
  echo "== psiphon-rs client + psiphond, OSSH (negotiated cipher: aes128-gcm), $label"
  "$B/proxy-throughput.sh" socks5 127.0.0.1:1090 -n "$RUNS" --cpu "client:$CPID" --cpu "server:$SPID" | grep RESULT
  echo "peak RSS: client $(awk '/VmHWM/ {print $2, $3}' /proc/$CPID/status), server $(awk '/VmHWM/ {print $2, $3}' /proc/$SPID/status)"
  # The client first: at shutdown it sends its last status request (with its byte counts).
  kill "$CPID" 2>/dev/null || true
  wait "$CPID" 2>/dev/null || true
  kill "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  CPID= SPID=
  # psiphond logs its per-domain buckets at shutdown: proof that counting was on (or off).
  echo "domain_dest_bytes events: $(grep -c '"domain_dest_bytes"' "$W/psiphond.config.log" || true)"
  : > "$W/psiphond.config.log"
}
run_ours "no host sniffing"
python3 - "$W/psinet.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
s = d.setdefault("sponsors", {}).setdefault("721AE60D76700F5A", {"id": "721AE60D76700F5A"})
s["https_request_regexes"] = [{"regex": "^(.*)$", "replace": "$1"}]
json.dump(d, open(p, "w"))
PY
run_ours "host sniffing and per-domain byte counting on"
