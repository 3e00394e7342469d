#!/usr/bin/env bash
# Builds the real OpenSIPS 3.6.8 the parity tests run beside event-kafka, once: the install prefix is
# cached under $EVENT_KAFKA_CACHE/opensips-3.6.8/<sha256 of the tarball>/ and reused while the
# tarball is unchanged. Prints the prefix as the last line of stdout.
#
# --optimised: a second prefix, built as Debian's packaging builds OpenSIPS (packaging/debian/rules
# in the tarball, Debian 12 dpkg-buildflags with hardening=+bindnow): CFLAGS
# "-Wall -g -O2 -DVERSION_NODATE -fstack-protector-strong -Wformat -Werror=format-security
# -Wdate-time -D_FORTIFY_SOURCE=2", LDFLAGS "-Wl,-z,relro -Wl,-z,now", and Makefile.conf's
# allocators (F_MALLOC, Q_MALLOC, HP_MALLOC, F_PARALLEL_MALLOC) without DBG_MALLOC. Only the
# modules of examples/opensips/opensips.cfg. The default build is upstream's own `make`
# (-O9 -funroll-loops..., every allocator with its DBG_MALLOC flavour): what the tests use.
#
# The tarball is ../shared/vendor/opensips/opensips-3.6.8.tar.gz beside the repository (CI layout)
# or beside the main checkout of a git worktree; OPENSIPS_TARBALL overrides. Exit status 3 means
# "no tarball" so callers can tell "not available here" from "build broken".
set -euo pipefail
VERSION=3.6.8
here=$(cd "$(dirname "$0")/.." && pwd)

find_tarball() {
  if [[ -n "${OPENSIPS_TARBALL:-}" ]]; then echo "$OPENSIPS_TARBALL"; return; fi
  local top common
  top=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || echo "$here")
  common=$(cd "$here" && cd "$(git rev-parse --git-common-dir 2>/dev/null || echo .)" && pwd)
  for root in "$top" "$(dirname "$common")"; do
    local t="$root/../shared/vendor/opensips/opensips-$VERSION.tar.gz"
    if [[ -f "$t" ]]; then echo "$t"; return; fi
  done
  echo "$top/../shared/vendor/opensips/opensips-$VERSION.tar.gz"
}

tarball=$(find_tarball)
if [[ ! -f "$tarball" ]]; then
  echo "build-opensips: no tarball at $tarball (set OPENSIPS_TARBALL)" >&2
  exit 3
fi
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")

cache=${EVENT_KAFKA_CACHE:-$here/.cache}
# Modules the tests load (proto_udp: OpenSIPS refuses to start without a SIP transport);
# python is for a later issue. The cache key covers the tarball and this list.
modules="modules/event_kafka modules/event_datagram modules/event_stream modules/httpd modules/mi_http"
modules+=" modules/sl modules/tm modules/signaling modules/json modules/cfgutils modules/maxfwd"
modules+=" modules/sipmsgops modules/proto_udp modules/python"
flavour=default
cflags=""
ldflags=""
if [[ "${1:-}" == "--optimised" ]]; then
  flavour=optimised
  modules="modules/event_kafka modules/python modules/proto_udp modules/sl modules/sipmsgops"
  modules+=" modules/httpd modules/mi_http"
  cflags="-Wall -g -O2 -DVERSION_NODATE -fstack-protector-strong -Wformat"
  cflags+=" -Werror=format-security -Wdate-time -D_FORTIFY_SOURCE=2"
  ldflags="-Wl,-z,relro -Wl,-z,now"
fi

# The default flavour's key is unchanged (tarball + modules): existing caches stay valid.
key=$(sha256sum "$tarball" | cut -d' ' -f1; echo "$modules")
[[ $flavour == default ]] || key+=$'\n'"$flavour $cflags $ldflags"
sha=$(echo "$key" | sha256sum | cut -c1-16)
base="$cache/opensips-$VERSION"
prefix="$base/$sha"
mkdir -p "$base"

build() {
  local want=()
  command -v bison >/dev/null || want+=(bison)
  command -v flex >/dev/null || want+=(flex)
  command -v pkg-config >/dev/null || want+=(pkg-config)
  command -v cc >/dev/null || want+=(gcc)
  command -v make >/dev/null || want+=(make)
  for pkg in librdkafka-dev libmicrohttpd-dev libjson-c-dev libssl-dev python3-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || want+=("$pkg")
  done
  if ((${#want[@]})); then
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
    echo "build-opensips: installing ${want[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
  fi
  local src="$base/src.$$"
  rm -rf "$src" "$prefix"
  mkdir -p "$src"
  tar xzf "$tarball" -C "$src"
  local started=$SECONDS
  echo "build-opensips: building OpenSIPS $VERSION ($flavour) into $prefix (1-2 min)" >&2
  local flags=()
  if [[ $flavour == optimised ]]; then
    local conf="$src/opensips-$VERSION/Makefile.conf"
    grep -v -- '-DDBG_MALLOC' "$conf.template" >"$conf"
    # In the environment, as debian/rules does: on make's command line they would override
    # Makefile.defs' own additions (CFLAGS+=...).
    flags=(CFLAGS="$cflags" LDFLAGS="$ldflags")
  fi
  # PYTHON pins the interpreter whose headers modules/python compiles against (not a venv's).
  env "${flags[@]}" make -C "$src/opensips-$VERSION" -j2 prefix="$prefix/" PYTHON=/usr/bin/python3 \
    modules="$modules" all install >"$base/build-$flavour.log" 2>&1 \
    || { tail -40 "$base/build-$flavour.log" >&2; echo "build-opensips: FAILED, see $base/build-$flavour.log" >&2; exit 1; }
  rm -rf "$src"
  echo "$((SECONDS - started))" >"$prefix/.build-seconds"
  echo "$flavour CFLAGS=${cflags:-upstream} LDFLAGS=${ldflags:-none}" >"$prefix/.build-flags"
  touch "$prefix/.built"
  echo "build-opensips: built in $((SECONDS - started)) s" >&2
}

# One build at a time (make test and a pytest run may race); the loser finds it built.
exec 9>"$base/.lock"
flock 9
[[ -f "$prefix/.built" && -x "$prefix/sbin/opensips" ]] || build
echo "$prefix"
