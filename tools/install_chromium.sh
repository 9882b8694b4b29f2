#!/bin/sh
# Install Debian's chromium for the reader app's browser tests (tests/reader/test_reader_browser.py; Playwright
# drives this binary: a browser download by `playwright install` is never used). Idempotent, and never
# fails the build: without root or apt-get it says why it did not install, and the browser tests skip
# with that reason.
have_chromium() {
    [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null 2>&1
}
if have_chromium; then
    echo "install_chromium: chromium is installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_chromium: not installing chromium (needs root for apt-get); the browser tests will skip"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: not installing chromium (no apt-get on this system); the browser tests will skip"
    exit 0
fi
echo "install_chromium: installing chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "install_chromium: apt-get could not install chromium; the browser tests will skip"
if have_chromium; then
    echo "install_chromium: done"
fi
exit 0
