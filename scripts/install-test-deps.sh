#!/usr/bin/env bash
# Installs, when missing, the real servers and tools the test suite talks to:
# Dovecot (IMAP), tesseract with rus/pol/eng (fax OCR), Chromium (inbox browser tests),
# poppler (PDF pages for OCR), redis-server (private servers for the outage and cluster
# tests), openssl. The shared Redis at REDIS_URL is expected to be running already.
set -euo pipefail
need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr)
for lang in rus pol eng; do
  if ! tesseract --list-langs 2>/dev/null | grep -qx "$lang"; then need+=("tesseract-ocr-$lang"); fi
done
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)   # private servers: outage and cluster tests
command -v openssl >/dev/null 2>&1 || need+=(openssl)             # the STARTTLS test's certificate
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
