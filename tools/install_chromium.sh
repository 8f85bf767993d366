#!/usr/bin/env bash
# Debian's chromium for the browser tests (Playwright cannot download its own browsers here).
# Idempotent: does nothing when /usr/bin/chromium exists.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
    command -v sudo >/dev/null || { echo "install_chromium: $CHROMIUM is missing; run 'apt-get install chromium' as root" >&2; exit 1; }
else
    SUDO=
fi
echo "installing Debian's chromium for the browser tests (apt-get) ..."
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists (or stale ones): update first.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
"$CHROMIUM" --version
