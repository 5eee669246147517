#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, then runs every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/sbin/nginx ] || need+=(nginx)
# psiphon-transport's upstream proxy tests run their own instances on free ports with their own
# configs; a system service the package may start does not matter to them.
[ -x /usr/bin/tinyproxy ] || need+=(tinyproxy)
[ -x /usr/sbin/danted ] || need+=(dante-server)
# The censor lab (crates/psiphon-testkit, docs/censor-lab.md) runs as root only: network
# namespaces, nftables, ethtool and python3 (its delay line, for kernels without netem); its
# scenario 6 uses the tinyproxy installed above.
if [ "$(id -u)" -eq 0 ]; then
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v nft >/dev/null 2>&1 || need+=(nftables)
  command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
fi
# psinet's report test checks its SVG charts with xmllint.
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${need[@]}"
  else
    echo "test.sh: missing ${need[*]}; install them (sudo apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
fi

# The OpenSSH, curl, nginx and upstream proxy (tinyproxy, danted) tests skip themselves when
# those programs are absent; here they are installed, so make a missing binary a failure
# instead of a silent skip.
export PSIPHON_REQUIRE_OPENSSH=1
export PSIPHON_REQUIRE_CURL=1
export PSIPHON_REQUIRE_NGINX=1
export PSIPHON_REQUIRE_UPSTREAM_PROXIES=1
# The censor lab needs root (namespaces, nftables); as root it must run, not skip.
if [ "$(id -u)" -eq 0 ]; then
  export PSIPHON_REQUIRE_LAB=1
fi
export PSIPHON_REQUIRE_XMLLINT=1
cargo test --workspace --all-features --locked "$@"
