#!/usr/bin/env bash
# Installs the Debian packages marketsync needs when they are missing; does nothing when all are there.
#   mosquitto        the MQTT broker the demo and the tests start on a free port of their own
#   chromium         headless browser for the web page tests (driven by Playwright)
#   python3-venv     to create .venv
#   fonts-dejavu-core  the font labels and sandboxes draw text with
#   systemd          systemd-analyze, to verify the unit files
#   postgresql       the server binaries `make test` runs a throwaway cluster of (the cloud's tests on PostgreSQL,
#                    as its `postgres` system user); the cluster Debian starts on 5432 is never used
set -euo pipefail
need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
have_cmd mosquitto || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
have_cmd chromium || [ -x /usr/bin/chromium ] || need+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
have_pkg fonts-dejavu-core || need+=(fonts-dejavu-core)
have_cmd systemd-analyze || need+=(systemd)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
# The distribution starts its own broker on 1883; marketsync never uses it and never needs it.
