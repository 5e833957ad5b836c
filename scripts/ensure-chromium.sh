#!/usr/bin/env sh
# Make sure Playwright has a Chromium to launch, in this order:
# $SYNTH_CHROMIUM, a system Chromium, Playwright's own (already downloaded),
# Debian's `chromium` package (apt-get, as root or with password-less sudo),
# then Playwright's download. Says what to do if none works.
set -u
BIN=${1:-.venv/bin}

for c in "${SYNTH_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
  if [ -n "$c" ] && [ -x "$c" ]; then echo "chromium: $c"; exit 0; fi
done

if "$BIN/python" -c "
import os, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    sys.exit(0 if os.path.exists(p.chromium.executable_path) else 1)
" 2>/dev/null; then
  echo "chromium: Playwright's own"; exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  if $SUDO true 2>/dev/null; then
    echo "chromium: installing Debian's package with apt-get (one time)..."
    $SUDO apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1
    if [ -x /usr/bin/chromium ]; then echo "chromium: /usr/bin/chromium"; exit 0; fi
  fi
fi

echo "chromium: trying Playwright's own download..."
if "$BIN/playwright" install chromium >/dev/null 2>&1; then echo "chromium: Playwright's own"; exit 0; fi

cat >&2 <<'MSG'
error: no Chromium found, and none could be installed here.
  Debian/Ubuntu:  sudo apt-get install chromium
  with network:   .venv/bin/playwright install chromium
  elsewhere:      export SYNTH_CHROMIUM=/path/to/chromium-or-chrome
MSG
exit 1
