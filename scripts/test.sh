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
# psiphond's GeoIP is tested against MaxMind's own test databases, which pip downloads below
# (Debian's pip refuses to install into the system Python, but downloading works).
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
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

# MaxMind's test databases (MaxMind-DB's test-data, source-data and bad-data) ship in the
# maxminddb source distribution on PyPI; crates/psiphon-server/tests/geoip_maxmind.rs reads its
# tests/data. Pinned and checked, so the expectations cannot change under us; extracted once into
# target/ and reused.
maxmind_version=3.2.0
maxmind_sha256=d28e0073fd1dd637c8b95947bc864b5625eca9f8f2db1538145e33b2a1cd4b92
maxmind_cache="$PWD/target/maxmind-test-data"
maxmind_data="$maxmind_cache/maxminddb-$maxmind_version/tests/data"
if [ ! -d "$maxmind_data/test-data" ]; then
  echo "test.sh: downloading MaxMind's test databases (maxminddb $maxmind_version from PyPI)" >&2
  mkdir -p "$maxmind_cache"
  download=$(mktemp -d "$maxmind_cache/download.XXXXXX")
  tarball="$download/maxminddb-$maxmind_version.tar.gz"
  if ! python3 -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    --dest "$download" "maxminddb==$maxmind_version" ||
    ! echo "$maxmind_sha256  $tarball" | sha256sum --check --quiet; then
    rm -rf "$download"
    echo "test.sh: could not download and verify MaxMind's test databases" \
      "(pip download maxminddb==$maxmind_version, sha256 $maxmind_sha256)" >&2
    exit 1
  fi
  # Only tests/data; moved into place whole, so an interrupted run leaves no partial cache.
  tar -xzf "$tarball" -C "$download" --wildcards "maxminddb-$maxmind_version/tests/data/*"
  rm -rf "$maxmind_cache/maxminddb-$maxmind_version"
  mv "$download/maxminddb-$maxmind_version" "$maxmind_cache/"
  rm -rf "$download"
fi
export PSIPHON_MAXMIND_TEST_DATA="$maxmind_data"

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
export PSIPHON_REQUIRE_MAXMIND=1
cargo test --workspace --all-features --locked "$@"
