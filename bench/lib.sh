# Shared setup of the Rampart load scripts (sourced by bench/auth.sh and
# bench/audit.sh; bench/run.sh predates it). Expects SCRIPT_DIR to be set.
# Gives: ROOT, DURATION, CONNS, THREADS, COUNT, BIN, TMP (removed on exit
# unless BENCH_KEEP_TMP=1), PIDS (killed on exit), a self-signed P-256
# certificate in $TMP/cert.pem / key.pem for 127.0.0.1, and the functions
# below.
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
DURATION="${BENCH_DURATION:-10}"
CONNS="${BENCH_CONNS:-64}"
THREADS="${BENCH_THREADS:-2}"
COUNT="${BENCH_REQUESTS:-400000}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
cd "$ROOT"
[[ "${BENCH_NO_BUILD:-0}" == "1" ]] || cargo build --release --locked -p rampart -p bench-upstream >&2
BIN="$ROOT/target/release"
TMP="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; [[ "${BENCH_KEEP_TMP:-0}" == "1" ]] || rm -rf "$TMP"; }
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1

# wrk_stats FILE: "requests/s p50 p99 non-2xx requests" of a `wrk --latency` output.
wrk_stats() {
  local f="$1" rps p50 p99 non2xx reqs
  rps="$(awk '/Requests\/sec/ {print $2}' "$f")"
  p50="$(awk '$1=="50%" {print $2}' "$f")"
  p99="$(awk '$1=="99%" {print $2}' "$f")"
  non2xx="$(awk '/Non-2xx/ {print $5}' "$f")"
  reqs="$(awk '/requests in/ {print $1}' "$f")"
  echo "${rps:-?} ${p50:-?} ${p99:-?} ${non2xx:-0} ${reqs:-0}"
}

# create_key CONFIG SCHEME [extra `keys create` args…]: prints the new key's
# JSON (HMAC secrets included) on stdout.
create_key() {
  local cfg="$1" scheme="$2"; shift 2
  "$BIN/rampart" keys create --config "$cfg" --account bench --scheme "$scheme" --scopes read "$@" 2>/dev/null
}
json_field() { sed -n "s/.*\"$1\": \"\\(.*\\)\".*/\\1/p"; }
