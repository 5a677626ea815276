#!/bin/sh
# Installs everything tunflow's tests, examples, benchmarks and docs need on Debian/Ubuntu:
# system packages (iproute2, ping, arping, iperf3, tshark, wireguard-go, …) and a virtual
# environment in .venv with tunflow (editable) and its dev group. Safe to run again.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
if [ -z "${TUNFLOW_SKIP_APT:-}" ]; then
    $SUDO apt-get update -qq
    # --no-install-recommends: wireguard-tools would otherwise pull a kernel image and systemd
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv python3-dev gcc \
        iproute2 iputils-ping iputils-arping ethtool procps psmisc kmod util-linux \
        iperf3 socat tshark wireguard-go wireguard-tools openvpn openssl nftables >/dev/null
fi
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "tunflow needs Python >= 3.11"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e . --group dev
echo "tunflow installed in .venv"
