#!/usr/bin/env bash
# Z-Image-Turbo WebUI: set-up, serving under Supervisor, and tests.
#
#   ./launch.sh                    set up if needed, start under Supervisor, wait until healthy
#   ./launch.sh worker             distributed mode: start the GPU workers (ZIMAGE_BROKER_URL)
#   ./launch.sh stop               stop everything this checkout started (no process left behind)
#   ./launch.sh restart            restart the WebUI and wait until healthy
#   ./launch.sh drain              pause the queue and wait until no pipeline call runs
#   ./launch.sh restart --drain    drain, restart, wait until healthy, then resume
#   ./launch.sh status             Supervisor's view and the app's /healthz
#   ./launch.sh logs               follow the WebUI log
#   ./launch.sh serve [--flags]    run in the foreground without Supervisor
#   ./launch.sh test [pytest args] set up if needed, then ruff and the test suite
#   ./launch.sh setup              only create .venv and install requirements.txt
#
# Settings come from ZIMAGE_* environment variables (README). Set-up creates .venv and
# installs the pinned requirements, again only when requirements.txt changes; PYTHON picks
# the interpreter (3.10+). `test` also installs Debian's chromium and redis-server for the
# browser and distributed tests when they are missing and this user can (root with apt-get).
# With ZIMAGE_BROKER_URL naming this machine, `./launch.sh` and `./launch.sh worker` start
# Redis themselves (supervisor/redis.conf) unless one already answers there.
set -euo pipefail
cd "$(dirname "$0")"
PROJECT=$(pwd)

PYTHON=${PYTHON:-python3}
VENV=.venv
CONF=supervisor/supervisord.conf
CTL=("$VENV/bin/supervisorctl" -c "$CONF")
PORT=${ZIMAGE_PORT:-7860}
HOST=${ZIMAGE_HOST:-127.0.0.1}
[ "$HOST" = 0.0.0.0 ] || [ "$HOST" = "::" ] && PROBE_HOST=127.0.0.1 || PROBE_HOST=$HOST
HEALTH_URL="http://$PROBE_HOST:$PORT/healthz"

say() { echo "launch.sh: $*"; }
die() { echo "launch.sh: $*" >&2; exit 1; }

setup() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
    die "needs Python 3.10 or newer as \$PYTHON (now: $PYTHON)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
  fi
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    say "installing requirements.txt into $VENV (first run: several minutes)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -r requirements.txt
    echo "$want" >"$VENV/.requirements.sha256"
  fi
  cjk_font
}

# Contact sheets draw Chinese, Japanese and Korean prompts with a CJK font that webui/sheet.py
# finds at run time; without one they are boxes and the sheet says so.
has_cjk_font() {
  local found
  for found in /usr/share/fonts/*/noto/NotoSansCJK* /usr/share/fonts/truetype/wqy/* \
               /usr/share/fonts/truetype/droid/DroidSansFallback*; do
    [ -e "$found" ] && return 0
  done
  return 1
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

cjk_font() {
  has_cjk_font && return 0
  if can_apt; then
    say "installing Debian's fonts-wqy-microhei (CJK captions on contact sheets)"
    apt_install fonts-wqy-microhei || say "could not install it: CJK prompts on contact sheets will be boxes"
  else
    say "no CJK font (apt-get install fonts-wqy-microhei): CJK prompts on contact sheets will be boxes"
  fi
}

# The Debian packages that the browser, distributed, TLS and contact-sheet tests need and this
# machine lacks, one a line.
missing_test_tools() {
  local tool
  for tool in chromium redis-server openssl; do command -v "$tool" >/dev/null || echo "$tool"; done
  has_cjk_font || echo fonts-wqy-microhei
}

# Those installed when this user can (root with apt-get). With CI set, one still missing fails
# the run here, naming it; elsewhere its tests are skipped, each naming why.
test_tools() {
  local missing
  mapfile -t missing < <(missing_test_tools)
  [ ${#missing[@]} = 0 ] && return 0
  if can_apt; then
    say "installing Debian's ${missing[*]} for the browser, distributed, TLS and contact-sheet tests"
    apt_install "${missing[@]}" || true
    mapfile -t missing < <(missing_test_tools)
    [ ${#missing[@]} = 0 ] && return 0
  fi
  [ -z "${CI:-}" ] || die "CI must run every test, but these are missing: ${missing[*]} (apt-get install ${missing[*]}, as root)"
  say "missing ${missing[*]} and no way to install them (needs root and apt-get): their tests will be skipped"
}

gpus() {
  local n=0
  command -v nvidia-smi >/dev/null && n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  echo "${n:-0}"
}

running() { [ -S run/supervisor.sock ] && "${CTL[@]}" pid >/dev/null 2>&1; }

# supervisord gets exactly this environment; the program section adds a few of its own.
start_supervisord() {
  mkdir -p logs run
  chmod 700 run
  local startsecs=15 workers=${ZIMAGE_WORKERS:-0}
  [ "$(gpus)" -gt 0 ] && startsecs=180
  [ "$workers" -gt 0 ] || workers=$(gpus)
  [ "$workers" -gt 0 ] || workers=1
  echo "$workers" >run/workers
  local keep=(PATH="$PATH" HOME="${HOME:-$PROJECT}" LANG="${LANG:-C.UTF-8}"
              WEBUI_STARTSECS="${WEBUI_STARTSECS:-$startsecs}" WEBUI_WORKERS="$workers")
  local name
  for name in $(compgen -e); do
    case "$name" in ZIMAGE_* | HF_* | HUGGINGFACE_* | CUDA_* | PYTORCH_* | GRADIO_TEMP_DIR | TMPDIR)
      keep+=("$name=${!name}") ;;
    esac
  done
  env -i "${keep[@]}" "$VENV/bin/supervisord" -c "$CONF"
}

# What ZIMAGE_BROKER_URL names: "local PORT PASSWORD" or "remote"; `ping`: whether it answers.
broker() {
  "$VENV/bin/python" - "$ZIMAGE_BROKER_URL" "$1" <<'PY'
import sys, urllib.parse
import redis
url, what = sys.argv[1], sys.argv[2]
parts = urllib.parse.urlsplit(url)
if what == "where":
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    print("local" if local else "remote", parts.port or 6379, urllib.parse.unquote(parts.password or "-"))
else:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        sys.exit(f"{type(exc).__name__}: {exc}")
PY
}

# Start Redis under Supervisor when the broker URL names this machine and nothing answers there.
local_redis() {
  [ -n "${ZIMAGE_BROKER_URL:-}" ] || return 0
  local where port password dir
  read -r where port password < <(broker where)
  [ "$where" = local ] || return 0
  broker ping 2>/dev/null && return 0
  command -v redis-server >/dev/null ||
    die "nothing answers at ZIMAGE_BROKER_URL and redis-server is not installed (apt-get install redis-server)"
  [ "$password" != - ] || die "put a password in ZIMAGE_BROKER_URL (redis://:PASSWORD@127.0.0.1:$port/0)"
  dir=${ZIMAGE_STATE_DIR:-$PROJECT/state}/redis
  mkdir -p "$dir"
  (umask 077; printf 'bind 127.0.0.1\nport %s\nrequirepass %s\nappendonly yes\ndir %s\n' \
    "$port" "$password" "$dir" >run/redis.conf)
  say "starting Redis on 127.0.0.1:$port (data in $dir)"
  "${CTL[@]}" start redis >/dev/null
  local deadline=$((SECONDS + 20))
  until broker ping 2>/dev/null; do
    ((SECONDS < deadline)) || die "Redis did not answer on 127.0.0.1:$port; see logs/redis.log"
    sleep 0.3
  done
}

ensure_supervisord() {
  if running; then
    local want=${ZIMAGE_WORKERS:-0}
    if [ "$want" -gt 0 ] && [ "$want" != "$(cat run/workers)" ]; then
      say "supervisord runs with $(cat run/workers) worker slots; for $want: ./launch.sh stop, then start again"
    fi
  else
    start_supervisord
  fi
}

wait_healthy() {
  local deadline=$((SECONDS + ${WEBUI_START_TIMEOUT:-900})) state
  while ((SECONDS < deadline)); do
    if "$VENV/bin/python" - "$HEALTH_URL" <<'PY' 2>/dev/null; then
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if json.load(response).get("status") == "ok" else 1)
PY
      return 0
    fi
    state=$("${CTL[@]}" status webui 2>/dev/null | awk '{print $2}') || true
    if [ "$state" = FATAL ] || [ "$state" = EXITED ]; then
      tail -n 20 logs/webui.log >&2 || true
      die "the WebUI did not start ($state); full log: logs/webui.log"
    fi
    sleep 1
  done
  die "the WebUI was not healthy within ${WEBUI_START_TIMEOUT:-900} s; see logs/webui.log"
}

stop_all() {
  running || { say "not running"; return 0; }
  local pid
  pid=$(cat run/supervisord.pid)
  "${CTL[@]}" stop all >/dev/null || true
  "${CTL[@]}" shutdown >/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  say "stopped"
}

case "${1:-start}" in
  start)
    setup
    ensure_supervisord
    local_redis
    "${CTL[@]}" start webui >/dev/null || true
    say "waiting for $HEALTH_URL (model loading; logs/webui.log shows progress)"
    wait_healthy
    say "ready: http://$HOST:$PORT/"
    ;;
  worker)
    setup
    [ -n "${ZIMAGE_BROKER_URL:-}" ] || die "set ZIMAGE_BROKER_URL to the broker's Redis URL (README: distributed mode)"
    ensure_supervisord
    local_redis
    "${CTL[@]}" start 'worker:*' || die "workers did not start; see logs/worker-*.log"
    say "$(cat run/workers) GPU workers running; logs in logs/worker-N.log"
    ;;
  stop) stop_all ;;
  restart)
    running || die "not running; start it with ./launch.sh"
    drained=false
    if [ "${2:-}" = --drain ]; then
      "$VENV/bin/python" -m webui.queue drain || die "not drained; the queue stays paused"
      drained=true
    fi
    "${CTL[@]}" restart webui
    wait_healthy
    if $drained; then "$VENV/bin/python" -m webui.queue resume; fi
    say "ready: http://$HOST:$PORT/"
    ;;
  drain)
    running || die "not running; start it with ./launch.sh"
    exec "$VENV/bin/python" -m webui.queue drain
    ;;
  status)
    running || { say "not running"; exit 3; }
    "${CTL[@]}" status
    "$VENV/bin/python" -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" \
      "$HEALTH_URL" || say "no answer from $HEALTH_URL"
    ;;
  logs) exec tail -n 200 -F logs/webui.log ;;
  serve)
    shift
    setup
    exec "$VENV/bin/python" -m webui "$@"
    ;;
  test)
    shift
    setup
    test_tools
    # Style first: a lint or format fault fails the run in seconds, naming the file and line.
    "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check . ||
      die "ruff found style faults (fix them, or run .venv/bin/ruff format . for the layout)"
    # Test files spread over up to 4 processes (pytest-xdist; a file's tests stay together, so
    # that they share their servers); `-n 0` after `test` runs them in this one.
    jobs=$(nproc)
    ((jobs <= 4)) || jobs=4
    exec "$VENV/bin/python" -m pytest -n "$jobs" --dist loadfile "$@"
    ;;
  setup) setup ;;
  -h | --help | help) sed -n '2,21s/^# \{0,1\}//p' "$0" ;;
  *) die "unknown command '$1'; see ./launch.sh --help" ;;
esac
