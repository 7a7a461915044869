#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks need, once.
# Idempotent: packages already present are not reinstalled, and apt-get update
# runs only when something is missing. Needs root (CI and the dev machines are root).
set -euo pipefail

# SabreDAV (third CalDAV server), libical (ICS validation via PyGObject),
# Chromium (subscribe page screenshot) and chromium-driver (Selenium drives it through the
# institution-mode pages: tests/web/test_browser_walkthrough.py), nginx + wrk (feed-serving benchmark),
# deploy/ checks: nginx and caddy (the reverse-proxy examples, with an openssl
# certificate), prometheus (promtool for the alert rules), sqlite3 (backup/restore),
# util-linux (setpriv: the unit's ExecStart as an unprivileged user).
packages=(php-cli php-sqlite3 php-sabre-dav gir1.2-ical-3.0 python3-gi
          chromium chromium-driver nginx-light wrk bc curl systemd
          caddy prometheus openssl sqlite3 util-linux)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
