#!/usr/bin/env bash
# Installs what the test suite needs into this clone: liveroom with its test extras in
# .venv, the example third-party plugin (its own package), the JavaScript client test's npm
# packages and, when running as root without them, Debian's chromium (browser tests) and
# ffmpeg (ffprobe, HLS tests). Tests that need a missing one skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip uninstall -q -y liveroom-luckybag 2>/dev/null || true  # the example's old name: its entry point would shadow the built-in luckybag
.venv/bin/pip install -q -e '.[test]' -e tests/example_plugin
npm ci --prefix tests/js --no-audit --no-fund
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v ffprobe >/dev/null || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || echo "tests/install.sh: could not install ${missing[*]}; the tests that need them will skip" >&2
fi
