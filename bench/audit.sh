#!/usr/bin/env bash
# Audit trail overhead on the gateway's full path: the same pre-signed
# RFC 9421 hmac-sha256 requests (GET /v1/account, every one audited as an
# `auth.success` decision) through one Rampart with `[audit] enabled = true`
# and one with `enabled = false`, alternated ON/OFF/ON/OFF in one run to
# spread machine noise over both; medians are reported, and the gateway's
# CPU time per request (from /proc), which load-generator noise moves much
# less than throughput. Target: ON ≥ 0.95 × OFF.
#
#   bench/audit.sh                 # 10 s per measurement
#   BENCH_DURATION=5 bench/audit.sh
# Writes bench/out/audit.md. Needs wrk (apt-installed when missing).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
ROUNDS="${BENCH_ROUNDS:-3}"
UP_PORT="${BENCH_UP_PORT:-18091}"
GW_PORT="${BENCH_GW_PORT:-18454}"
OUT="${BENCH_OUT:-$ROOT/bench/out/audit.md}"
config() { # enabled
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
max_age = "5m"
nonce_cache_entries = 5000000
[audit]
enabled = $1
[upstreams.up]
endpoints = ["127.0.0.1:$UP_PORT"]
[[routes]]
method = "GET"
path = "/v1/account"
upstream = "up"
action = "GetAccount"
scope = "read"
CFG
}
config true >"$TMP/on.toml"
config false >"$TMP/off.toml"
"$BIN/bench-upstream" --listen "127.0.0.1:$UP_PORT" >"$TMP/up.log" 2>&1 & PIDS+=($!)
hmac_json="$(create_key "$TMP/on.toml" hmac-sha256)"
hmac_id="$(json_field key_id <<<"$hmac_json")"
json_field secret_b64 <<<"$hmac_json" >"$TMP/hmac.secret"
echo "generating $COUNT pre-signed requests…" >&2
"$BIN/presign" sign hmac-sha256 "$hmac_id" "$TMP/hmac.secret" "$COUNT" "127.0.0.1:$GW_PORT" /v1/account "$TMP/hmac.reqs"

# Each gateway process has its own nonce cache, so every run can replay
# the same file of single-use requests.
measure() { # label, config
  local label="$1" cfg="$2"
  "$BIN/rampart" serve --config "$cfg" >"$TMP/$label.log" 2>&1 & local pid=$!
  for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$GW_PORT/v1/account" 2>/dev/null && break; sleep 0.2; done
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$SCRIPT_DIR/presigned.lua" \
    "https://127.0.0.1:$GW_PORT/v1/account" -- "$TMP/hmac.reqs" "$THREADS" >"$TMP/$label.txt" 2>&1
  # CPU time the gateway used (user + system, clock ticks) for the run:
  # a steadier measure of the audit's cost than throughput on a shared box.
  local ticks
  ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
  kill -TERM "$pid"; wait "$pid" || true
  local rps p50 p99 non2xx reqs us_per_req
  read -r rps p50 p99 non2xx reqs < <(wrk_stats "$TMP/$label.txt")
  us_per_req="$(awk -v t="$ticks" -v n="${reqs:-1}" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz * 1e6 / (n > 0 ? n : 1)}')"
  echo "| $label | $rps | $p50 | $p99 | $non2xx | $us_per_req |"
  echo "$label $rps $us_per_req" >>"$TMP/rps"
}
{
  echo "# Audit overhead on the full path"
  echo
  echo "Command: \`$(env | grep -E '^BENCH_' | tr '\n' ' ')bench/audit.sh\` ($(date -u +%F), $(nproc) cores, wrk -t$THREADS -c$CONNS, ${DURATION}s each, TLS 1.3, HTTP/1.1, RFC 9421 hmac-sha256)"
  echo
  echo "| run | requests/s | p50 | p99 | non-2xx | gateway CPU µs / request |"
  echo "|---|---:|---:|---:|---:|---:|"
  for r in $(seq "$ROUNDS"); do
    measure "audit-on-$r" "$TMP/on.toml"
    measure "audit-off-$r" "$TMP/off.toml"
  done
  median() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
  on="$(awk '/^audit-on/ {print $2}' "$TMP/rps" | median)"
  off="$(awk '/^audit-off/ {print $2}' "$TMP/rps" | median)"
  cpu_on="$(awk '/^audit-on/ {print $3}' "$TMP/rps" | median)"
  cpu_off="$(awk '/^audit-off/ {print $3}' "$TMP/rps" | median)"
  echo
  echo "Median requests/s: audit on $on, audit off $off, ratio $(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", a/b}') (target ≥ 0.95)."
  echo "Median gateway CPU per request: audit on $cpu_on µs, audit off $cpu_off µs (off/on $(awk -v a="$cpu_on" -v b="$cpu_off" 'BEGIN {printf "%.3f", b/a}'))."
  entries="$("$BIN/rampart" audit verify --data-dir "$TMP/data" 2>&1 | head -1)"
  echo
  echo "Afterwards \`rampart audit verify\`: $entries"
} | { mkdir -p "$(dirname "$OUT")"; tee "$OUT.tmp"; }
mv "$OUT.tmp" "$OUT"
