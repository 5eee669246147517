#!/usr/bin/env bash
# Live interop between psiphon-rs and psiphon-tunnel-core's own programs, on 127.0.0.1 only.
#
#   a.PROTO         tunnel-core's psiphond  + our psiphon client
#   b.PROTO.json    our psiphond            + tunnel-core's ConsoleClient, TargetAPIEncoding "json"
#   b.PROTO.default our psiphond            + tunnel-core's ConsoleClient, default API encoding (CBOR)
#
# for PROTO in OSSH and SSH. Each case starts a tunnel, fetches a 1 MiB file from a local
# origin through the client's SOCKS5 proxy, its HTTP proxy (absolute URI) and its HTTP proxy
# (CONNECT), compares the bytes, stops the client, and checks the server's log for the
# session's server_tunnel event (and, in b, unique_user and the final status request).
#
# Usage:
#   TUNNEL_CORE_BIN=/dir/with/ConsoleClient/and/psiphond scripts/interop-tunnel-core.sh [CASE...]
#
# Environment:
#   TUNNEL_CORE_BIN  required: the directory holding tunnel-core's ConsoleClient and psiphond
#   PSIPHON_RS_BIN   our psiphon and psiphond (default: target/release of this repository;
#                    build them with `cargo build --release --bin psiphon --bin psiphond`)
#   INTEROP_TIMEOUT  seconds to wait for a tunnel (default 30)
#   INTEROP_KEEP     if set, keep the temporary directory (configs, notices, server logs)
#
# Prints PASS or FAIL per case and exits non-zero if any case failed. Building tunnel-core:
# docs/wire-stack.md, "Interop with psiphon-tunnel-core". Not part of .ci/run.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
TC=${TUNNEL_CORE_BIN:?set TUNNEL_CORE_BIN to the directory holding the tunnel-core ConsoleClient and psiphond}
RS=${PSIPHON_RS_BIN:-$REPO/target/release}
TIMEOUT=${INTEROP_TIMEOUT:-30}
ALL_CASES=(a.OSSH a.SSH b.OSSH.json b.SSH.json b.OSSH.default b.SSH.default)
if [ $# -gt 0 ]; then CASES=("$@"); else CASES=("${ALL_CASES[@]}"); fi

for f in "$TC/ConsoleClient" "$TC/psiphond" "$RS/psiphon" "$RS/psiphond"; do
  [ -x "$f" ] || { echo "interop: missing executable $f" >&2; exit 2; }
done
for c in curl python3 cmp setsid; do
  command -v "$c" >/dev/null 2>&1 || { echo "interop: $c is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/interop-tunnel-core.XXXXXX")
PIDS=()

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  if [ -n "${INTEROP_KEEP:-}" ]; then
    echo "interop: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "interop: $*" >&2; }

# start DIR LOG CMD...: runs CMD in DIR in its own process group (pgid = pid); sets LAST_PID.
start() {
  local dir=$1 out=$2
  shift 2
  (cd "$dir" && exec setsid "$@") >"$out" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# stop PID SIGNAL: signals the process group, waits up to 10 s, then kills it.
stop() {
  local pid=$1 sig=${2:-TERM}
  kill -"$sig" -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  log "pid $pid still running after SIG$sig; killing it"
  kill -KILL -- "-$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  local port=$1 deadline=$((SECONDS + TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# wait_line FILE ERE [SECONDS]: waits until a line of FILE matches.
wait_line() {
  local file=$1 re=$2 deadline=$((SECONDS + ${3:-$TIMEOUT}))
  while [ $SECONDS -lt $deadline ]; do
    grep -Eq -- "$re" "$file" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# Both clients write Go-ordered JSON notices: {"data":{...},"noticeType":"...",...}.
TUNNEL_UP='"data":\{"count":[1-9][0-9]*\},"noticeType":"Tunnels"'

session_id() { # NOTICES
  python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        n = json.loads(line)
    except ValueError:
        continue
    if n.get("noticeType") == "SessionId":
        print(n["data"]["sessionId"])
        break
PY
}

# server_event LOG EVENT SESSION [KEY=VALUE...]: succeeds when LOG has a JSON line with
# event_name EVENT, session_id SESSION and each KEY equal to VALUE (compared as JSON text, so
# strings are quoted: relay_protocol='"SSH"', handshake_completed=true) or, for KEY>=N, at least N.
server_event() {
  python3 - "$@" <<'PY'
import json, sys
path, event, session, *conds = sys.argv[1:]
for line in open(path, errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event_name") != event or e.get("session_id") != session:
        continue
    ok = True
    for c in conds:
        if ">=" in c:
            k, v = c.split(">=", 1)
            ok = ok and isinstance(e.get(k), int) and e[k] >= int(v)
        else:
            k, v = c.split("=", 1)
            ok = ok and e.get(k) == json.loads(v)
    if ok:
        sys.exit(0)
sys.exit(1)
PY
}

# wait_event SECONDS LOG EVENT SESSION [COND...]: server_event, retried for up to SECONDS.
wait_event() {
  local deadline=$((SECONDS + $1))
  shift
  while [ $SECONDS -lt $deadline ]; do
    server_event "$@" && return 0
    sleep 0.3
  done
  return 1
}

# ssh_kexinit PORT: the key exchange, cipher and MAC lists a plain SSH server offers.
ssh_kexinit() {
  python3 - "$1" <<'PY' 2>&1 || true
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"SSH-2.0-interop_probe\r\n")
buf = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        raise SystemExit("closed before KEXINIT")
    buf += chunk
    i = buf.find(b"\r\n")
    if i >= 0 and buf.startswith(b"SSH-"):
        rest = buf[i + 2:]
        break
while len(rest) < 5 or len(rest) < 4 + struct.unpack(">I", rest[:4])[0]:
    chunk = s.recv(4096)
    if not chunk:
        raise SystemExit("short KEXINIT")
    rest += chunk
length, pad = struct.unpack(">IB", rest[:5])
p = rest[5:4 + length - pad]
assert p[0] == 20, "not KEXINIT"
off = 17
lists = []
for _ in range(10):
    n = struct.unpack(">I", p[off:off + 4])[0]
    lists.append(p[off + 4:off + 4 + n].decode())
    off += 4 + n
print("kex=%s ciphers=%s macs=%s" % (lists[0], lists[2], lists[4]))
PY
}

RESULTS=()
FAILED=0
pass() { RESULTS+=("PASS  $1"); echo "PASS  $1"; }
fail() { RESULTS+=("FAIL  $1: $2"); FAILED=1; echo "FAIL  $1: $2"; }

# --- the origin: a local web server with a 1 MiB random file --------------------------------
mkdir -p "$WORK/www"
head -c 1048576 /dev/urandom >"$WORK/www/blob.bin"
ORIGIN_PORT=$(free_port)
start "$WORK/www" "$WORK/origin.log" python3 -m http.server "$ORIGIN_PORT" --bind 127.0.0.1
wait_port "$ORIGIN_PORT" || { echo "interop: the origin web server did not start" >&2; exit 2; }
ORIGIN="http://127.0.0.1:$ORIGIN_PORT/blob.bin"

# fetch_all SOCKS_PORT HTTP_PORT DIR: prints what failed (nothing on success).
fetch_all() {
  local socks=$1 http=$2 dir=$3 what
  for what in socks5 http connect; do
    case $what in
      socks5) curl -sS --max-time 20 --socks5-hostname "127.0.0.1:$socks" -o "$dir/got.$what" "$ORIGIN" ;;
      http) curl -sS --max-time 20 --proxy "http://127.0.0.1:$http" -o "$dir/got.$what" "$ORIGIN" ;;
      connect) curl -sS --max-time 20 --proxytunnel --proxy "http://127.0.0.1:$http" -o "$dir/got.$what" "$ORIGIN" ;;
    esac >"$dir/curl.$what.err" 2>&1 || { echo "$what: $(tr '\n' ' ' <"$dir/curl.$what.err")"; continue; }
    cmp -s "$dir/got.$what" "$WORK/www/blob.bin" || echo "$what: body differs"
  done
}

show_tail() { # FILE [N]: the last lines of a log, indented, for a failure report
  tail -n "${2:-8}" "$1" 2>/dev/null | cut -c1-400 | sed 's/^/      /' >&2 || true
}

# --- a: tunnel-core's psiphond + our client ------------------------------------------------
A_SRV=""
tc_server() {
  [ -n "$A_SRV" ] && return 0
  A_SRV=$WORK/a-server
  mkdir -p "$A_SRV"
  A_OSSH=$(free_port)
  A_SSH=$(free_port)
  (cd "$A_SRV" && "$TC/psiphond" -ipaddress 127.0.0.1 -protocol "OSSH:$A_OSSH" -protocol "SSH:$A_SSH" generate) \
    >"$A_SRV/generate.out" 2>&1
  python3 - "$A_SRV/psiphond.config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["AllowBogons"] = True        # the origin is on loopback
c["LogFilename"] = "psiphond.log"
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
  start "$A_SRV" "$A_SRV/run.out" "$TC/psiphond" -config psiphond.config run
  if ! wait_port "$A_OSSH" || ! wait_port "$A_SSH"; then show_tail "$A_SRV/run.out"; return 1; fi
  log "tunnel-core psiphond: OSSH $A_OSSH, SSH $A_SSH; its SSH KEXINIT: $(ssh_kexinit "$A_SSH")"
}

case_a() { # PROTO
  local proto=$1 name="a.$1" dir socks http pid sid problems
  tc_server || { fail "$name" "tunnel-core psiphond did not start"; return; }
  dir=$WORK/$name
  mkdir -p "$dir"
  socks=$(free_port)
  http=$(free_port)
  cat >"$dir/client.json" <<EOF
{"PropagationChannelId":"24BCA4EE20BEB92C","SponsorId":"721AE60D76700F5A",
 "LocalSocksProxyPort":$socks,"LocalHttpProxyPort":$http,
 "LimitTunnelProtocols":["$proto"],"EmitDiagnosticNotices":true}
EOF
  start "$dir" "$dir/notices.log" "$RS/psiphon" --config client.json \
    --server-list "$A_SRV/server-entry.dat" --data-root "$dir/data"
  pid=$LAST_PID
  if ! wait_line "$dir/notices.log" "$TUNNEL_UP"; then
    stop "$pid"
    local why="no tunnel within ${TIMEOUT}s"
    if [ "$proto" = SSH ] && grep -q 'no common key exchange' "$dir/notices.log" &&
      ! ssh_kexinit "$A_SSH" | grep -q 'kex=[^ ]*curve25519'; then
      # tunnel-core's psiphond shuffles and truncates its plain-SSH algorithm lists with a
      # PRNG seeded from ObfuscatedSSHKey; for about 1 server in 11 no curve25519 is left.
      why="$why: this tunnel-core server's SSH KEX (seeded from its ObfuscatedSSHKey) has no curve25519, our client's only KEX"
    fi
    fail "$name" "$why"
    grep -E 'failed|Error' "$dir/notices.log" | sed 's/"timestamp":"[^"]*"//' |
      sort | uniq -c | sort -rn | head -3 | cut -c1-500 >&2 || true
    [ "$proto" = SSH ] && log "tunnel-core's SSH server offers: $(ssh_kexinit "$A_SSH")"
    return
  fi
  problems=$(fetch_all "$socks" "$http" "$dir")
  sid=$(session_id "$dir/notices.log")
  stop "$pid" TERM
  if [ -n "$problems" ]; then
    fail "$name" "$problems"
    return
  fi
  if ! wait_event 10 "$A_SRV/psiphond.log" server_tunnel "$sid" \
    relay_protocol="\"$proto\"" handshake_completed=true; then
    fail "$name" "proxies worked, but tunnel-core logged no completed $proto server_tunnel for session $sid"
    show_tail "$A_SRV/psiphond.log" 3
    return
  fi
  pass "$name (SOCKS5, HTTP, CONNECT; server_tunnel $proto handshake_completed)"
}

# --- b: our psiphond + tunnel-core's ConsoleClient -----------------------------------------
B_SRV=""
rs_server() {
  [ -n "$B_SRV" ] && return 0
  B_SRV=$WORK/b-server
  mkdir -p "$B_SRV"
  B_OSSH=$(free_port)
  B_SSH=$(free_port)
  (cd "$B_SRV" && "$RS/psiphond" generate --ipaddress 127.0.0.1 --protocol "OSSH:$B_OSSH" --protocol "SSH:$B_SSH") \
    >"$B_SRV/generate.out" 2>&1
  # A sponsor with a home page and a host-bytes regex: the client then shows a Homepage notice
  # and has host_bytes to send, so it makes a final status request when it stops.
  cat >"$B_SRV/psinet.json" <<'EOF'
{"sponsors":{"721AE60D76700F5A":{"id":"721AE60D76700F5A",
  "home_pages":{"None":[{"region":"None","url":"http://127.0.0.1/interop-home"}]},
  "https_request_regexes":[{"regex":"^(.*)$","replace":"$1"}]}},
 "client_versions":{},"default_sponsor_id":"721AE60D76700F5A","default_alert_action_urls":{},
 "valid_server_entry_tags":{},"discovery_servers":[]}
EOF
  python3 - "$B_SRV/psiphond.config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["AllowBogons"] = True
c["LogFilename"] = "psiphond.log"
c["PsinetDatabaseFilename"] = "psinet.json"
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
  start "$B_SRV" "$B_SRV/run.out" "$RS/psiphond" run --config psiphond.config
  if ! wait_port "$B_OSSH" || ! wait_port "$B_SSH"; then show_tail "$B_SRV/run.out"; return 1; fi
  log "our psiphond: OSSH $B_OSSH, SSH $B_SSH"
}

case_b() { # PROTO ENCODING(json|default)
  local proto=$1 enc=$2 name="b.$1.$2" dir socks http pid sid problems dials
  rs_server || { fail "$name" "our psiphond did not start"; return; }
  dir=$WORK/$name
  mkdir -p "$dir/data"
  socks=$(free_port)
  http=$(free_port)
  python3 - "$dir" "$B_SRV/server-entry.dat" "$proto" "$enc" "$socks" "$http" <<'PY'
import json, sys
d, entry, proto, enc, socks, http = sys.argv[1:]
c = {
    "PropagationChannelId": "24BCA4EE20BEB92C", "SponsorId": "721AE60D76700F5A",
    "DataRootDirectory": d + "/data",
    "LocalSocksProxyPort": int(socks), "LocalHttpProxyPort": int(http),
    "TargetServerEntry": open(entry).read().strip(),
    "LimitTunnelProtocols": [proto],
    "EmitDiagnosticNotices": True,
    "DisableRemoteServerListFetcher": True,
}
if enc != "default":
    c["TargetAPIEncoding"] = enc
json.dump(c, open(d + "/client.json", "w"), indent=1)
PY
  start "$dir" "$dir/notices.log" "$TC/ConsoleClient" -config client.json
  pid=$LAST_PID
  if ! wait_line "$dir/notices.log" "$TUNNEL_UP"; then
    stop "$pid" INT
    dials=$(grep -c '"noticeType":"ConnectedServer"' "$dir/notices.log" || true)
    if grep -q 'API request rejected' "$dir/notices.log"; then
      fail "$name" "no tunnel within ${TIMEOUT}s: $dials SSH sessions established, each psiphon-handshake answered 'API request rejected'"
    else
      fail "$name" "no tunnel within ${TIMEOUT}s ($dials SSH sessions established)"
    fi
    grep -E '"Warning"' "$dir/notices.log" | grep -v 'Config migration\|tactics iterator' |
      sed 's/"timestamp":"[^"]*"//' | sort | uniq -c | sort -rn | head -3 | cut -c1-500 >&2 || true
    return
  fi
  problems=$(fetch_all "$socks" "$http" "$dir")
  grep -q '"noticeType":"Homepage"' "$dir/notices.log" || problems="${problems:+$problems; }no Homepage notice"
  sid=$(session_id "$dir/notices.log")
  wait_event 10 "$B_SRV/psiphond.log" unique_user "$sid" || true
  # SIGINT: ConsoleClient shuts down in order and sends a final status request (host_bytes).
  stop "$pid" INT
  dials=$(grep -Ec 'failed to (activate|connect)|ssh: handshake failed' "$dir/notices.log" || true)
  [ "$dials" -gt 0 ] && log "$name: $dials failed dial(s) before the tunnel (see notices)"
  if [ -n "$problems" ]; then
    fail "$name" "$problems"
    return
  fi
  if ! wait_event 10 "$B_SRV/psiphond.log" server_tunnel "$sid" relay_protocol="\"$proto\"" \
    handshake_completed=true status_request_count\>=1; then
    fail "$name" "proxies worked, but our psiphond logged no $proto server_tunnel with a status request for session $sid"
    show_tail "$B_SRV/psiphond.log" 3
    return
  fi
  if ! server_event "$B_SRV/psiphond.log" unique_user "$sid"; then
    fail "$name" "no unique_user (connected request) for session $sid"
    return
  fi
  pass "$name (SOCKS5, HTTP, CONNECT, Homepage; handshake, connected, status; server_tunnel $proto)"
}

for c in "${CASES[@]}"; do
  case $c in
    a.OSSH | a.SSH) case_a "${c#a.}" ;;
    b.OSSH.json | b.SSH.json | b.OSSH.default | b.SSH.default)
      p=${c#b.}
      case_b "${p%%.*}" "${p#*.}"
      ;;
    *) echo "interop: unknown case $c (cases: ${ALL_CASES[*]})" >&2; exit 2 ;;
  esac
done

echo
echo "psiphon-tunnel-core interop ($(date -u +%Y-%m-%dT%H:%MZ)):"
printf '  %s\n' "${RESULTS[@]}"
exit "$FAILED"
