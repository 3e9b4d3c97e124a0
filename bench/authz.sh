#!/usr/bin/env bash
# Authorization and pre-trade risk overhead on the gateway's full path
# (issue 6): the same pre-signed RFC 9421 hmac-sha256 requests through one
# Rampart without `[policy]`/`[pretrade]` (OFF) and one with the shipped
# Cedar defaults, an instrument catalogue and pre-trade limits (ON), on two
# routes:
#   GET  /v1/account  authorization only (Cedar `read`, KYC tier ≥ 1)
#   POST /v1/orders   authorization + pre-trade risk (a distinct limit order
#                     per request: qty, notional, collar against a fixed
#                     reference price, open orders, duplicate client order id)
# The gateway is restarted for every measurement (fresh nonce cache and
# pre-trade state, so a round's request files serve both configs),
# alternating OFF, ON per route and round; medians of the rounds are
# reported, with the gateway's CPU time per request (from /proc), which
# load-generator noise moves much less than throughput. Target: ON ≥ 0.9 × OFF.
#
#   bench/authz.sh                 # 2 rounds, 10 s per measurement
#   BENCH_DURATION=5 BENCH_ROUNDS=3 bench/authz.sh
#   BENCH_ROUNDS=1 BENCH_PERF=post-on-1 bench/authz.sh   # + perf profile of one run (BENCH_PERF_FREQ Hz, default 999)
#   BENCH_ON=policy bench/authz.sh   # ON = [policy] only (BENCH_ON=pretrade: [pretrade] only)
# Writes bench/out/authz.md. Needs wrk and openssl (apt-installed when missing).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
# The gateway restarts for every measurement: run copies of the binaries, so
# a rebuild of the shared target/ during the run cannot swap them.
mkdir -p "$TMP/bin"
cp "$BIN/rampart" "$BIN/presign" "$BIN/bench-upstream" "$TMP/bin/"
BIN="$TMP/bin"
ROUNDS="${BENCH_ROUNDS:-2}"
# Enough unique requests for the whole run at ~60k requests/s: a replayed
# (exhausted) request file shows up as non-2xx and spoils the row.
COUNT="${BENCH_REQUESTS:-$((DURATION * 60000 > 400000 ? DURATION * 60000 : 400000))}"
UP_PORT="${BENCH_UP_PORT:-18092}"
GW_PORT="${BENCH_GW_PORT:-18455}"
OUT="${BENCH_OUT:-$ROOT/bench/out/authz.md}"
ACCOUNT="bench-authz"
config() { # on|off
  cat <<CFG
[server]
listen = "127.0.0.1:$GW_PORT"
max_connections = 10000
[server.tls]
cert = "cert.pem"
key = "key.pem"
[log]
access_log = false
level = "warn"
[storage]
data_dir = "data"
[auth]
# Pre-signed requests are generated before each round: allow them to age.
max_age = "5m"
nonce_cache_entries = 5000000
[upstreams.up]
endpoints = ["127.0.0.1:$UP_PORT"]
[[routes]]
method = "GET"
path = "/v1/account"
upstream = "up"
action = "GetAccount"
scope = "read"
[[routes]]
method = "POST"
path = "/v1/orders"
upstream = "up"
action = "PlaceOrder"
scope = "trade"
group = "orders"
max_body_bytes = 4096
CFG
  [[ "$1" == "on" ]] || return 0
  # BENCH_ON=policy|pretrade: ON with only one of the two (to split the cost).
  if [[ "${BENCH_ON:-full}" != pretrade ]]; then
  cat <<CFG
[policy]
defaults = true
[policy.instruments]
"BTC-USD" = "spot"
"BTC-PERP" = "perp"
CFG
  fi
  if [[ "${BENCH_ON:-full}" != policy ]]; then
  cat <<CFG
[pretrade]
reference_refresh = "off"
[pretrade.defaults]
max_qty = "100"
max_notional = "2000000"
collar_pct = "10"
max_open_orders = 200
duplicate_window = "10m"
[pretrade.fixed_prices]
"BTC-USD" = "65000"
CFG
  fi
}
config off >"$TMP/off.toml"
config on >"$TMP/on.toml"
"$BIN/bench-upstream" --listen "127.0.0.1:$UP_PORT" >"$TMP/up.log" 2>&1 & PIDS+=($!)

# The key (read + trade) and its account, created at KYC tier 0 by
# `keys create`; the shipped policies want tier ≥ 1 for reads and spot.
key_json="$("$BIN/rampart" keys create --config "$TMP/off.toml" --account "$ACCOUNT" --scheme hmac-sha256 --scopes read,trade 2>"$TMP/keys.err")" \
  || { cat "$TMP/keys.err" >&2; exit 1; }
key_id="$(json_field key_id <<<"$key_json")"
json_field secret_b64 <<<"$key_json" >"$TMP/hmac.secret"
if "$BIN/rampart" accounts set-kyc --help >/dev/null 2>&1; then
  "$BIN/rampart" accounts set-kyc --config "$TMP/on.toml" "$ACCOUNT" 1 >/dev/null 2>"$TMP/kyc.err" \
    || { cat "$TMP/kyc.err" >&2; exit 1; }
  KYC_HOW="rampart accounts set-kyc $ACCOUNT 1"
else
  command -v sqlite3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3; }
  sqlite3 "$TMP/data/rampart.sqlite3" "UPDATE accounts SET kyc_tier = 1 WHERE id = '$ACCOUNT'"
  KYC_HOW="sqlite3 UPDATE accounts SET kyc_tier = 1 (no \`rampart accounts set-kyc\`)"
fi

start_gw() { # config, log → pid in GW_PID
  "$BIN/rampart" serve --config "$1" >"$2" 2>&1 & GW_PID=$!
  for _ in $(seq 100); do
    curl -sk -o /dev/null "https://127.0.0.1:$GW_PORT/v1/account" 2>/dev/null && return 0
    kill -0 "$GW_PID" 2>/dev/null || { cat "$2" >&2; exit 1; }
    sleep 0.1
  done
  echo "the gateway did not start" >&2; cat "$2" >&2; exit 1
}
stop_gw() { kill -TERM "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; }

# sign FILE PATH [presign options]: COUNT unique pre-signed requests.
sign() { local f="$1" path="$2"; shift 2
  "$BIN/presign" sign hmac-sha256 "$key_id" "$TMP/hmac.secret" "$COUNT" "127.0.0.1:$GW_PORT" "$path" "$f" "$@"
}

# Smoke test: the first request of each file, sent once by openssl with
# `Connection: close` (not a covered component) added, through each config;
# anything but a 2xx stops the run with the gateway's answer.
sign "$TMP/smoke-get.reqs" /v1/account
sign "$TMP/smoke-post.reqs" /v1/orders --order
first_req() { # FILE: the first request, Connection: close added
  awk 'BEGIN { RS = "\n#####\n" } NR == 1 { printf "%s", $0; exit }' "$1" \
    | sed '0,/^Host:/s//Connection: close\r\nHost:/'
}
SMOKE=()
for cfg in off on; do
  start_gw "$TMP/$cfg.toml" "$TMP/smoke-$cfg.log"
  for route in get post; do
    first_req "$TMP/smoke-$route.reqs" >"$TMP/smoke.req"
    answer="$(openssl s_client -quiet -connect "127.0.0.1:$GW_PORT" -servername 127.0.0.1 <"$TMP/smoke.req" 2>/dev/null || true)"
    status="$(head -1 <<<"$answer" | awk '{print $2}')"
    if [[ "$status" != 2?? ]]; then
      echo "smoke test: $cfg $route answered ${status:-nothing}:" >&2; echo "$answer" >&2; stop_gw; exit 1
    fi
    SMOKE+=("$cfg $route $status")
  done
  stop_gw
done

# ctx_switches PID: voluntary + involuntary context switches of all its
# threads (a blocked lock or an idle worker shows up here).
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'
}

# measure LABEL ROUTE CONFIG ROUND URL FILE: one wrk run on a fresh gateway.
measure() {
  local label="$1" route="$2" cfg="$3" round="$4" url="$5" file="$6"
  start_gw "$TMP/$cfg.toml" "$TMP/$label.log"
  # CPU ticks (user + system) used while loaded, startup excluded.
  local t0 ticks
  t0="$(awk '{print $14 + $15}' "/proc/$GW_PID/stat")"
  local cs0
  cs0="$(ctx_switches "$GW_PID")"
  # BENCH_PERF=<label> (e.g. post-on-1): profile that measurement's gateway
  # with perf (its figures then include perf's own overhead).
  local perf_pid=""
  if [[ -n "${BENCH_PERF:-}" && "$label" == "$BENCH_PERF" ]] && command -v perf >/dev/null; then
    perf record -F "${BENCH_PERF_FREQ:-999}" -g -p "$GW_PID" -o "$ROOT/bench/out/perf-$label.data" -- sleep "$((DURATION > 2 ? DURATION - 1 : 1))" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$SCRIPT_DIR/presigned.lua" \
    "$url" -- "$file" "$THREADS" >"$TMP/$label.txt" 2>&1
  [[ -z "$perf_pid" ]] || wait "$perf_pid" || true
  ticks="$(($(awk '{print $14 + $15}' "/proc/$GW_PID/stat") - t0))"
  local cs1
  cs1="$(ctx_switches "$GW_PID")"
  stop_gw
  local rps p50 p99 non2xx reqs us_per_req sockerr
  read -r rps p50 p99 non2xx reqs < <(wrk_stats "$TMP/$label.txt")
  sockerr="$(awk '/Socket errors/ {print $0}' "$TMP/$label.txt")"
  [[ -z "$sockerr" ]] || echo "$label: $sockerr" >>"$TMP/notes"
  us_per_req="$(awk -v t="$ticks" -v n="${reqs:-1}" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz * 1e6 / (n > 0 ? n : 1)}')"
  local cs_per_req
  cs_per_req="$(awk -v c="$((cs1 - cs0))" -v n="${reqs:-1}" 'BEGIN {printf "%.2f", c / (n > 0 ? n : 1)}')"
  echo "| $route | ${cfg^^} | $round | $rps | $p50 | $p99 | $non2xx | $us_per_req | $cs_per_req |"
  echo "$route $cfg $rps $us_per_req $non2xx" >>"$TMP/results"
}

LOAD_BEFORE="$(uptime)"
: >"$TMP/results"
: >"$TMP/notes"
{
  echo "# Authorization and pre-trade risk overhead on the full path"
  echo
  echo "Command: \`$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')bench/authz.sh\` ($(date -u '+%F %H:%M UTC'), $(nproc) cores, wrk -t$THREADS -c$CONNS, ${DURATION}s each, $ROUNDS rounds, TLS 1.3, HTTP/1.1, RFC 9421 hmac-sha256, unique pre-signed requests)"
  echo
  echo "OFF: no \`[policy]\`, no \`[pretrade]\`. ON: \`[policy] defaults = true\` with an instrument catalogue, \`[pretrade]\` limits on BTC-USD (fixed reference price 65000, collar 10 %, max_qty, max_notional, max_open_orders, duplicate_window). The key's account at KYC tier 1 ($KYC_HOW). Each POST is a distinct limit order (client_order_id b-<n>) with a covered Content-Digest. The gateway restarts for every row."
  echo
  echo "| route | config | round | requests/s | p50 | p99 | non-2xx | gateway CPU µs/req | context switches/req |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  for round in $(seq "$ROUNDS"); do
    # Fresh files per round keep every request within max_age (5 min).
    sign "$TMP/get.reqs" /v1/account
    sign "$TMP/post.reqs" /v1/orders --order
    for cfg in off on; do
      measure "get-$cfg-$round" "GET /v1/account" "$cfg" "$round" "https://127.0.0.1:$GW_PORT/v1/account" "$TMP/get.reqs"
    done
    for cfg in off on; do
      measure "post-$cfg-$round" "POST /v1/orders" "$cfg" "$round" "https://127.0.0.1:$GW_PORT/v1/orders" "$TMP/post.reqs"
    done
  done
  echo
  echo "ON/OFF (median of the rounds; target requests/s ratio ≥ 0.90):"
  echo
  echo "| route | OFF requests/s | ON requests/s | ON/OFF requests/s | OFF CPU µs/req | ON CPU µs/req | ON/OFF CPU per request |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for route in "GET /v1/account" "POST /v1/orders"; do
    med() { # config, column (3 rps, 4 µs/req)
      awk -v r="$route" -v c="$1" -v k="$2" '$1 " " $2 == r && $3 == c {print $(k + 1)}' "$TMP/results" \
        | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
    }
    off_rps="$(med off 3)"; on_rps="$(med on 3)"; off_us="$(med off 4)"; on_us="$(med on 4)"
    awk -v r="$route" -v a="$off_rps" -v b="$on_rps" -v c="$off_us" -v d="$on_us" \
      'BEGIN {printf "| %s | %s | %s | %.3f | %s | %s | %.3f |\n", r, a, b, b / a, c, d, d / c}'
  done
  echo
  echo "Smoke test (one request per route and config before the runs): ${SMOKE[*]}."
  echo "Load before: \`$LOAD_BEFORE\`; after: \`$(uptime)\`."
  if [[ -s "$TMP/notes" ]]; then echo; echo "wrk socket errors:"; sed 's/^/- /' "$TMP/notes"; fi
} | { mkdir -p "$(dirname "$OUT")"; tee "$OUT.tmp"; }
mv "$OUT.tmp" "$OUT"
# A refused request (403 policy, 422 risk limit) would be a setup error,
# not overhead: fail the run.
if awk '$6 != 0 {bad = 1} END {exit !bad}' "$TMP/results"; then
  echo "authz.sh: some runs had non-2xx answers (see $OUT)" >&2
  exit 1
fi
