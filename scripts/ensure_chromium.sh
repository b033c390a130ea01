#!/usr/bin/env bash
# Called by scripts/test.sh before pytest: the browser tests (tests/browser, marker `browser`)
# drive Debian's Chromium through Playwright (executable_path=/usr/bin/chromium; no browser
# download). Installs the `chromium` package when it is missing and this user may
# (root, or password-less sudo); otherwise says so and the browser tests skip.
set -uo pipefail
CHROMIUM=${RECON_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "==> $CHROMIUM missing and no apt-get: browser tests will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "==> $CHROMIUM missing and apt-get needs root: browser tests will be skipped" >&2
  exit 0
fi
echo "==> installing Debian's chromium for the browser tests (once)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >&2; then
  echo "==> could not install chromium: browser tests will be skipped" >&2
fi
exit 0
