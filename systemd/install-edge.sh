#!/usr/bin/env bash
# Install the marketsync edge agent on a Raspberry Pi OS (Debian 12) box:
# the service user, the code in /opt/marketsync with its venv, /etc/marketsync/edge.toml, the unit.
#
#   sudo systemd/install-edge.sh --site site-1 --mqtt-host broker.example.lan [--mqtt-port 8883] \
#        [--mqtt-user site-1 --mqtt-password-file FILE --link-keys FILE] [--ca ca.crt] [--pin 1234] [--name "Анна"]
#   (FILEs: credentials/site-1.password and credentials/site-1.keys of `marketsync link broker-config`)
#
# Idempotent: an existing /etc/marketsync/edge.toml is kept. `--root DIR` stages every file under DIR
# instead (no apt, no user, no venv, no systemctl): what the tests use.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
SITE=""
MQTT_HOST="127.0.0.1"
MQTT_PORT=""
MQTT_USER=""
MQTT_PASSWORD_FILE=""
LINK_KEYS=""
CA=""
PIN=""
NAME="Упаковщик"
SVC_USER="marketsync"

die() { echo "install-edge: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --site) SITE="$2"; shift 2 ;;
    --mqtt-host) MQTT_HOST="$2"; shift 2 ;;
    --mqtt-port) MQTT_PORT="$2"; shift 2 ;;
    --mqtt-user) MQTT_USER="$2"; shift 2 ;;
    --mqtt-password-file) MQTT_PASSWORD_FILE="$2"; shift 2 ;;
    --link-keys) LINK_KEYS="$2"; shift 2 ;;
    --ca) CA="$2"; shift 2 ;;
    --pin) PIN="$2"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    --root) ROOT="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -n "$SITE" ] || die "--site is required (the site id the cloud knows this warehouse by)"
[[ "$SITE" =~ ^[A-Za-z0-9_.-]+$ ]] || die "site id may hold letters, digits, _ . - only"
[[ "$NAME$MQTT_HOST$MQTT_USER" != *[\"\\]* ]] || die "names and hosts may not contain quotes or backslashes"
[ -n "$MQTT_PORT" ] || { [ -n "$CA" ] && MQTT_PORT=8883 || MQTT_PORT=1883; }
[[ "$MQTT_PORT" =~ ^[0-9]+$ ]] || die "--mqtt-port must be a number"
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (sudo), or stage with --root DIR"; fi

ETC="$ROOT/etc/marketsync"
OPT="$ROOT/opt/marketsync"
STATE="$ROOT/var/lib/marketsync"
UNITS="$ROOT/etc/systemd/system"
PY="$OPT/.venv/bin/python"

if [ -z "$ROOT" ]; then
  echo "== packages"
  apt-get install -y --no-install-recommends python3 python3-venv python3-dev libusb-1.0-0 >/dev/null
  echo "== user $SVC_USER"
  id "$SVC_USER" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/marketsync --shell /usr/sbin/nologin "$SVC_USER"
  for g in input lp video dialout; do getent group "$g" >/dev/null && usermod -aG "$g" "$SVC_USER"; done
fi

echo "== code in $OPT"
mkdir -p "$OPT" "$ETC" "$STATE/labels" "$UNITS"
copy_code() {
  tar -C "$SRC" --exclude=.venv --exclude=.git --exclude=var --exclude=test-artifacts --exclude='__pycache__' -cf - . \
    | tar -C "$OPT" -xf -
}
if [ "$SRC" != "$OPT" ]; then
  # tar's status 1 is "file changed as we read it": something wrote in the source tree meanwhile (a run of
  # the checkout creating var/, say); the tree is read again, and given up on only after three tries
  for try in 1 2 3; do
    status=0
    copy_code || status=$?
    [ "$status" -eq 0 ] && break
    if [ "$status" -ne 1 ] || [ "$try" -eq 3 ]; then
      echo "copying the code from $SRC to $OPT failed (tar's status $status)" >&2
      exit "$status"
    fi
    echo "the code in $SRC changed while it was copied: copying it again" >&2
  done
fi
if [ -z "$ROOT" ]; then
  [ -x "$PY" ] || python3 -m venv "$OPT/.venv"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -e "$OPT[edge]"   # editable: the page's templates live in $OPT/web
  HASH_CMD=("$OPT/.venv/bin/marketsync" edge hash-pin)
else
  HASH_CMD=("${PYTHON:-python3}" -c 'import sys; sys.path.insert(0, sys.argv[1]); from edge_agent.config import hash_pin; print(hash_pin(sys.argv[2]))' "$SRC")
fi

if [ -e "$ETC/edge.toml" ]; then
  echo "== keeping the existing $ETC/edge.toml"
else
  echo "== config $ETC/edge.toml"
  if [ -z "$PIN" ]; then PIN="$(printf '%04d' $(( $(od -An -N2 -tu2 /dev/urandom) % 10000 )))"; NEWPIN=1; fi
  PIN_HASH="$("${HASH_CMD[@]}" "$PIN")"
  SECRET="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
  if [ -n "$MQTT_PASSWORD_FILE" ]; then
    install -m 0640 "$MQTT_PASSWORD_FILE" "$ETC/mqtt-password"
    PASSLINE="password_file = \"/etc/marketsync/mqtt-password\""
  else PASSLINE="# password_file = \"/etc/marketsync/mqtt-password\""; fi
  if [ -n "$LINK_KEYS" ]; then
    install -m 0640 "$LINK_KEYS" "$ETC/link-keys"
    KEYSLINE="keys_file = \"/etc/marketsync/link-keys\""
  else KEYSLINE="# keys_file = \"/etc/marketsync/link-keys\"  # the site's envelope keys: without them nothing is signed"; fi
  if [ -n "$CA" ]; then install -m 0644 "$CA" "$ETC/ca.crt"; CALINE="tls_ca = \"/etc/marketsync/ca.crt\""
  else CALINE="# tls_ca = \"/etc/marketsync/ca.crt\""; fi
  USERLINE="# username = \"$SITE\""; [ -n "$MQTT_USER" ] && USERLINE="username = \"$MQTT_USER\""
  umask 027
  cat > "$ETC/edge.toml" <<TOML
# marketsync edge agent of site $SITE (written by install-edge.sh; see config/edge.toml for every key)
[site]
id = "$SITE"
warehouse = "main"
db_path = "/var/lib/marketsync/site.sqlite"
stations = ["pack-1", "pack-2", "tsd-1"]

[web]
host = "0.0.0.0"    # the packers' page on the LAN
port = 8090
secret_key = "$SECRET"

[mqtt]
host = "$MQTT_HOST"
port = $MQTT_PORT
$USERLINE
$PASSLINE
$CALINE
$KEYSLINE

[printer]
kind = "virtual"    # set your printer: escpos_usb, zpl_tcp (host), tspl_usb, cups (queue)... see edge_agent/devices
out_dir = "/var/lib/marketsync/labels"

[label]
width_mm = 58
height_mm = 40
dpi = 203

[tasks]
auto_pack = false

[[staff]]
name = "$NAME"
pin_hash = "$PIN_HASH"
TOML
  [ -n "${NEWPIN:-}" ] && echo "   staff \"$NAME\" has PIN $PIN (add more with: marketsync edge hash-pin)"
fi

echo "== systemd unit"
install -m 0644 "$SRC/systemd/marketsync-edge.service" "$UNITS/marketsync-edge.service"
if [ -z "$ROOT" ]; then
  chown -R root:"$SVC_USER" "$ETC"; chmod 0750 "$ETC"; chmod 0640 "$ETC"/edge.toml
  [ -e "$ETC/mqtt-password" ] && chmod 0640 "$ETC/mqtt-password"
  [ -e "$ETC/link-keys" ] && chmod 0640 "$ETC/link-keys"
  chown -R "$SVC_USER":"$SVC_USER" "$STATE"
  # USB label printers reached through libusb (pyusb): readable by the lp group
  echo 'SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", ATTRS{bDeviceClass}=="07", GROUP="lp", MODE="0660"' \
    > /etc/udev/rules.d/70-marketsync-printers.rules
  echo 'SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_interface", ATTRS{bInterfaceClass}=="07", GROUP="lp", MODE="0660"' \
    >> /etc/udev/rules.d/70-marketsync-printers.rules
  udevadm control --reload-rules || true
  systemctl daemon-reload
  systemctl enable --now marketsync-edge.service
  systemctl --no-pager --lines=0 status marketsync-edge.service || true
fi
echo "== done: the packers' page will be at http://$(hostname 2>/dev/null || echo this-box):8090"
