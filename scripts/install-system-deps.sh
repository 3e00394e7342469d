#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing: Java 17+ and Maven for the
# local Apache Kafka; with --e2e also Kamailio (app_python3) and SIPp for the SIP end-to-end test,
# and promtool (Debian ships it in the prometheus package) to check examples/prometheus-alerts.yml,
# python3-dev for OpenSIPS's python module.
set -euo pipefail
want=()
command -v java >/dev/null || want+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || want+=(maven)
command -v openssl >/dev/null || want+=(openssl)   # TLS certificates of the SASL_SSL tests
if [[ "${1:-}" == "--e2e" ]]; then
  command -v kamailio >/dev/null || want+=(kamailio)
  [[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so ]] || want+=(kamailio-python3-modules)
  command -v sipp >/dev/null || want+=(sip-tester)
  command -v promtool >/dev/null || want+=(prometheus)
  command -v systemd-analyze >/dev/null || want+=(systemd)   # verifies examples/event-kafka.service
  # OpenSIPS's python module (scripts/build-opensips.sh) builds against Debian's Python; the
  # OpenSIPS doc's by-hand block polls its MI with curl.
  dpkg-query -W -f='${Status}' python3-dev 2>/dev/null | grep -q 'ok installed' || want+=(python3-dev)
  command -v curl >/dev/null || want+=(curl)
fi
if ((${#want[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  echo "installing: ${want[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${want[@]}" >/dev/null
fi
