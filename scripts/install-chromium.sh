#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser test, installed with apt-get if missing.
# Playwright drives it (executable_path); `playwright install` (a browser download) is
# never used. Prints the browser's path.
set -euo pipefail
for candidate in "${SEGSTREAM_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then
        echo "$candidate"
        exit 0
    fi
done
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "chromium is not installed: run \`sudo apt-get install chromium\` (Debian)" >&2
    exit 1
fi
echo "chromium not found; installing the Debian package with apt-get..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium >&2; then
    apt-get update -q >&2
    apt-get install -y -q chromium >&2
fi
echo /usr/bin/chromium
