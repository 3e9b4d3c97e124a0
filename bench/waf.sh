#!/usr/bin/env bash
# WAF benchmark (issue 7): in one run, on the same upstream and the same
# requests, three TLS gateways in front of crates/bench-upstream:
#
#   nginx    Debian nginx, plain TLS reverse proxy (no WAF)               — baseline
#   modsec   the same nginx + ModSecurity v3 (libnginx-mod-http-modsecurity)
#            + OWASP CRS (modsecurity-crs), paranoia level 1, blocking
#            (SecRuleEngine On), anomaly-scoring defaults
#   rampart  Rampart with input validation (JSON Schema per route) +
#            injection detection ([waf] mode = "block") + rate limits on
#
# For each: requests/s and p99 under wrk with a typical order
# (POST /v1/orders, JSON body; bench/order.lua), median of BENCH_RUNS runs;
# then the team's attack and benign corpora
# (`cargo run -p rampart-shield --example corpus`) replayed one by one over
# HTTPS by bench/waf_replay.py: detection rate (attacks refused with
# 400/403/413/431) and false-positive rate (benign requests refused).
#
# Usage:
#   bench/waf.sh                          # everything (~4 min of load + replay)
#   ONLY=nginx,modsec bench/waf.sh        # a subset of the gateways
#   BENCH_PARTS=corpus bench/waf.sh       # only the corpus replay (or: load)
#   BENCH_QUICK=1 bench/waf.sh            # smoke run: 1 run × 3 s per gateway
#
# Environment (defaults in brackets):
#   ONLY=nginx,modsec,rampart   gateways to run
#   BENCH_PARTS=load,corpus     what to measure
#   BENCH_DURATION=15           seconds per measured wrk run
#   BENCH_WARMUP=2              seconds of unmeasured wrk warm-up before each run
#   BENCH_RUNS=3                wrk runs per gateway (interleaved; median reported)
#   BENCH_THREADS=2 BENCH_CONNS=64   wrk -t / -c
#   BENCH_WORKERS=$(nproc)      nginx worker_processes
#   BENCH_BASE_PORT=18180       upstream port; nginx/modsec/rampart = +1/+2/+3
#   BENCH_CORPUS=FILE           corpus (JSON lines) instead of running the example
#   BENCH_REPLAY_WORKERS=8      replayer threads (keep-alive connections)
#   BENCH_REPLAY_TARGETS=       gateways replayed (default: all started ones)
#   BENCH_RAMPART_WAF=block     Rampart's [waf] mode (diagnostics: detect | off;
#                               off also skips the schemas)
#   BENCH_RAMPART_LIMITS=1      0 = no [limits] (diagnostics)
#   BENCH_NO_BUILD=1            do not run cargo (binaries must exist)
#   BENCH_RAMPART_BIN=PATH      this rampart binary instead of target/release/rampart
#   BENCH_OUT=FILE              results JSON [bench/results/waf-<UTC date>.json]
#   BENCH_KEEP_TMP=0            delete the work dir (configs, logs) at exit [kept]
#
# Exit status: 0 ok; 1 harness error; 2 a requested gateway could not be
# built/started (the others are still measured and reported).
#
# The load generator (wrk) and the gateways share the machine's cores (2 on
# the project's boxes): absolute numbers are bounded by that; compare ratios.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
INVOCATION="$( (env | grep -E '^(BENCH_|ONLY=)' || true) | sort | tr '\n' ' ')bench/waf.sh${*:+ $*}"

if [[ "${BENCH_QUICK:-0}" == "1" ]]; then DEF_DURATION=3 DEF_WARMUP=1 DEF_RUNS=1; else DEF_DURATION=15 DEF_WARMUP=2 DEF_RUNS=3; fi
ONLY="${ONLY:-nginx,modsec,rampart}"
PARTS="${BENCH_PARTS:-load,corpus}"
DURATION="${BENCH_DURATION:-$DEF_DURATION}"
WARMUP="${BENCH_WARMUP:-$DEF_WARMUP}"
RUNS="${BENCH_RUNS:-$DEF_RUNS}"
THREADS="${BENCH_THREADS:-2}"
CONNS="${BENCH_CONNS:-64}"
NPROC="$(nproc)"
WORKERS="${BENCH_WORKERS:-$NPROC}"
BASE_PORT="${BENCH_BASE_PORT:-18180}"
REPLAY_WORKERS="${BENCH_REPLAY_WORKERS:-8}"
RAMPART_WAF="${BENCH_RAMPART_WAF:-block}"
RAMPART_LIMITS="${BENCH_RAMPART_LIMITS:-1}"
[[ "$RAMPART_WAF" =~ ^(block|detect|off)$ ]] || { echo "BENCH_RAMPART_WAF must be block, detect or off" >&2; exit 1; }
DATE="$(date -u +%F)"
OUT_JSON="${BENCH_OUT:-$ROOT/bench/results/waf-$DATE.json}"
RAMPART_SRC_BIN="${BENCH_RAMPART_BIN:-$ROOT/target/release/rampart}"
UPSTREAM_SRC_BIN="$ROOT/target/release/bench-upstream"
SCHEMAS="$ROOT/crates/rampart-shield/corpus/schemas"
ORDER_BODY='{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}'

UP_PORT="$BASE_PORT"
declare -A PORT=([nginx]=$((BASE_PORT + 1)) [modsec]=$((BASE_PORT + 2)) [rampart]=$((BASE_PORT + 3)))
declare -A LABEL=([nginx]="nginx (TLS proxy, no WAF)" [modsec]="nginx + ModSecurity + CRS" [rampart]="Rampart")
declare -A SKIP=()
ALL_TARGETS=(nginx modsec rampart)

log() { printf '[waf] %s\n' "$*" >&2; }
warn() { printf '[waf] WARNING: %s\n' "$*" >&2; }
die() { printf '[waf] ERROR: %s\n' "$*" >&2; exit 1; }
has() { [[ ",$1," == *",$2,"* ]]; }
first() { awk 'NR == 1'; }

for t in ${ONLY//,/ }; do [[ -n "${PORT[$t]:-}" ]] || die "unknown gateway '$t' in ONLY (known: nginx,modsec,rampart)"; done
for p in ${PARTS//,/ }; do [[ "$p" == load || "$p" == corpus ]] || die "unknown part '$p' in BENCH_PARTS (known: load,corpus)"; done

# ------------------------------------------------------------ work dir, trap --
TMP="$(mktemp -d /tmp/rampart-waf.XXXXXX)"
PIDS=()
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${BENCH_KEEP_TMP:-1}" == "0" ]]; then
        rm -rf "$TMP"
    else
        log "configs and logs kept in $TMP (BENCH_KEEP_TMP=0 deletes them)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "work dir (configs, logs): $TMP"

# --------------------------------------------------------------- 1. tools --
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
MODSEC_SO=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
CRS_DIR=/usr/share/modsecurity-crs
if has "$ONLY" modsec; then
    [[ -f "$MODSEC_SO" ]] || need+=(libnginx-mod-http-modsecurity)
    [[ -d "$CRS_DIR/rules" ]] || need+=(modsecurity-crs)
fi
if ((${#need[@]} > 0)); then
    log "installing: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 \
        || die "could not install ${need[*]}"
fi

# --------------------------------------------------------------- 2. build ---
if [[ "${BENCH_NO_BUILD:-0}" != "1" ]]; then
    pkgs=(-p bench-upstream)
    if has "$ONLY" rampart && [[ -z "${BENCH_RAMPART_BIN:-}" ]]; then pkgs+=(-p rampart); fi
    log "cargo build --release ${pkgs[*]}"
    if ! (cd "$ROOT" && cargo build --release "${pkgs[@]}") >&2; then
        if has "$ONLY" rampart; then
            SKIP[rampart]="cargo build --release -p rampart failed"
            warn "${SKIP[rampart]}; retrying bench-upstream alone"
        fi
        (cd "$ROOT" && cargo build --release -p bench-upstream) >&2 || die "cargo build -p bench-upstream failed"
    fi
fi
# Private copies: other people rebuilding target/ during the run cannot swap them.
mkdir -p "$TMP/bin"
[[ -x "$UPSTREAM_SRC_BIN" ]] || die "$UPSTREAM_SRC_BIN not found (build it or unset BENCH_NO_BUILD)"
cp "$UPSTREAM_SRC_BIN" "$TMP/bin/bench-upstream"
if has "$ONLY" rampart && [[ -z "${SKIP[rampart]:-}" ]]; then
    if [[ -x "$RAMPART_SRC_BIN" ]]; then cp "$RAMPART_SRC_BIN" "$TMP/bin/rampart"; else SKIP[rampart]="$RAMPART_SRC_BIN not found"; fi
fi

# --------------------------------------------------------------- 3. corpus --
CORPUS=""
CORPUS_SRC=""
if has "$PARTS" corpus; then
    if [[ -n "${BENCH_CORPUS:-}" ]]; then
        [[ -s "$BENCH_CORPUS" ]] || die "BENCH_CORPUS=$BENCH_CORPUS is missing or empty"
        CORPUS="$TMP/corpus.jsonl"
        cp "$BENCH_CORPUS" "$CORPUS"
        CORPUS_SRC="$BENCH_CORPUS"
    elif [[ "${BENCH_NO_BUILD:-0}" == "1" && -x "$ROOT/target/release/examples/corpus" ]]; then
        CORPUS="$TMP/corpus.jsonl"
        "$ROOT/target/release/examples/corpus" >"$CORPUS"
        CORPUS_SRC="target/release/examples/corpus"
    elif [[ -f "$ROOT/crates/rampart-shield/examples/corpus.rs" && "${BENCH_NO_BUILD:-0}" != "1" ]]; then
        log "generating the corpus: cargo run --release -q -p rampart-shield --example corpus"
        CORPUS="$TMP/corpus.jsonl"
        if ! (cd "$ROOT" && cargo run --release -q -p rampart-shield --example corpus) >"$CORPUS" 2>"$TMP/corpus-build.log"; then
            warn "the corpus example failed (see $TMP/corpus-build.log); skipping the corpus replay"
            CORPUS=""
        fi
        CORPUS_SRC="cargo run --release -p rampart-shield --example corpus"
    else
        warn "no corpus: crates/rampart-shield/examples/corpus.rs does not exist (or BENCH_NO_BUILD=1) and BENCH_CORPUS is unset; skipping the corpus replay"
    fi
    if [[ -n "$CORPUS" && ! -s "$CORPUS" ]]; then warn "the corpus is empty; skipping the replay"; CORPUS=""; fi
    if [[ -n "$CORPUS" ]]; then log "corpus: $(wc -l <"$CORPUS") requests ($CORPUS_SRC)"; fi
fi

# ---------------------------------------------------------------- 4. certs --
PKI="$TMP/pki"
mkdir -p "$PKI"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
openssl req -x509 -new -key "$PKI/ca.key" -sha256 -days 2 -subj "/CN=Rampart WAF bench throwaway CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/server.key" 2>/dev/null
openssl req -new -key "$PKI/server.key" -subj "/CN=localhost" -out "$PKI/server.csr" 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$PKI/server.ext"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
    -sha256 -extfile "$PKI/server.ext" -out "$PKI/server.crt" 2>/dev/null
cat "$PKI/server.crt" "$PKI/ca.pem" >"$PKI/server.pem"
chmod 600 "$PKI"/*.key
CERT="$PKI/server.pem"
KEY="$PKI/server.key"

LOADAVG_START="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$LOADAVG_START" 'BEGIN { exit !(l > 0.5) }'; then
    warn "load average is $LOADAVG_START before the benchmark: other processes compete for the CPU, results will be noisy"
fi

# -------------------------------------------------------------- 5. configs --
# Limits mirrored on all three gateways: 64 KiB bodies (4 KiB on /v1/orders),
# 16 KiB headers — Rampart's [server] / route settings of `rampart demo`.
write_nginx() { # write_nginx NAME WITH_MODSEC(0|1)
    local name="$1" waf="$2" d="$TMP/$1" user_line="" load_line="" modsec_lines=""
    mkdir -p "$d/logs" "$d/tmp/body" "$d/tmp/proxy" "$d/tmp/fastcgi" "$d/tmp/uwsgi" "$d/tmp/scgi" "$d/tmp/modsec"
    if [[ $EUID -eq 0 ]]; then user_line="user root;"; fi
    if [[ "$waf" == 1 ]]; then
        load_line="load_module $MODSEC_SO;"
        modsec_lines="modsecurity on;
        modsecurity_rules_file $d/modsec/main.conf;"
        write_modsec "$d"
    fi
    cat >"$d/nginx.conf" <<EOF
$user_line
$load_line
worker_processes $WORKERS;
worker_rlimit_nofile $(ulimit -n);
pid $d/nginx.pid;
error_log $d/logs/error.log warn;

events {
    worker_connections 16384;
    multi_accept on;
}

http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    # Same limits as Rampart's config (server.max_body_bytes, max_header_bytes).
    client_max_body_size 64k;
    client_body_buffer_size 64k;
    large_client_header_buffers 4 16k;

    upstream bench_up {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 100000000;
    }

    server {
        listen 127.0.0.1:${PORT[$name]} ssl;
        server_name localhost;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        $modsec_lines

        location / {
            proxy_pass http://bench_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        # Rampart's PlaceOrder route has max_body_bytes = 4096.
        location = /v1/orders {
            client_max_body_size 4k;
            proxy_pass http://bench_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# ModSecurity: Debian's /etc/nginx/modsecurity.conf (= ModSecurity's
# modsecurity.conf-recommended: request body access on, JSON and XML body
# processors by Content-Type, body limits) with SecRuleEngine On, then the
# Debian CRS package exactly as /usr/share/modsecurity-crs/owasp-crs.load
# loads it (crs-setup.conf, exclusion hooks, rules/*.conf). Changes from the
# packaged files are listed in MODSEC_CHANGES.
MODSEC_CHANGES=(
    "SecRuleEngine DetectionOnly -> On (blocking)"
    "SecAuditLog / SecTmpDir / SecDataDir moved into the work dir"
    "SecStatusEngine On -> Off (no status lookups)"
    "tx.allowed_methods += PUT PATCH DELETE (crs-setup.conf's own example for REST APIs; the API has DELETE /v1/orders/{id})"
    "paranoia level 1, inbound/outbound anomaly thresholds 5/4 set explicitly (the CRS defaults)"
)
write_modsec() {
    local d="$1" m="$1/modsec"
    mkdir -p "$m"
    sed -e 's/^SecRuleEngine .*/SecRuleEngine On/' \
        -e "s|^SecAuditLog .*|SecAuditLog $d/logs/modsec_audit.log|" \
        -e "s|^SecTmpDir .*|SecTmpDir $d/tmp/modsec/|" \
        -e "s|^SecDataDir .*|SecDataDir $d/tmp/modsec/|" \
        -e 's|^SecUnicodeMapFile unicode.mapping|SecUnicodeMapFile /etc/nginx/unicode.mapping|' \
        -e 's/^SecStatusEngine .*/SecStatusEngine Off/' \
        /etc/nginx/modsecurity.conf >"$m/modsecurity.conf"
    cat >"$m/main.conf" <<EOF
Include $m/modsecurity.conf
Include /etc/modsecurity/crs/crs-setup.conf
SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"
SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=5,setvar:tx.outbound_anomaly_score_threshold=4"
SecAction "id:900200,phase:1,nolog,pass,t:none,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
Include $CRS_DIR/rules/*.conf
Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
EOF
}

# The upstream for the corpus replay (see there): reads and discards every
# request body, answers 200 to anything.
write_sink() {
    local d="$TMP/sink" user_line=""
    mkdir -p "$d/logs" "$d/tmp/body" "$d/tmp/proxy" "$d/tmp/fastcgi" "$d/tmp/uwsgi" "$d/tmp/scgi"
    if [[ $EUID -eq 0 ]]; then user_line="user root;"; fi
    cat >"$d/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_max_body_size 0;
    large_client_header_buffers 8 128k;
    server {
        listen 127.0.0.1:$UP_PORT;
        default_type application/json;
        location / { return 200 '{"source":"corpus-sink"}'; }
    }
}
EOF
}

# Rampart: the demo exchange's nine routes, all `scope = "public"` (nginx has
# no authentication either; validation, detection and limits run whatever the
# scope), each with its JSON Schema; [waf] mode = "block"; the demo's
# [limits] with the per-IP rules raised so one load-generating IP is never
# throttled (key/account rules are skipped on public routes).
write_rampart() {
    local f="$TMP/rampart/rampart.toml"
    mkdir -p "$TMP/rampart"
    mkdir -p -m 700 "$TMP/rampart/data"
    cat >"$f" <<EOF
[server]
listen = "127.0.0.1:${PORT[rampart]}"
max_connections = 10000
max_header_bytes = 16384
max_body_bytes = 65536
header_read_timeout = "5s"
idle_timeout = "60s"
request_timeout = "10s"

[server.tls]
cert = "$CERT"
key = "$KEY"

[log]
access_log = false
level = "warn"

[storage]
data_dir = "$TMP/rampart/data"

[waf]
mode = "$RAMPART_WAF"

[upstreams.bench]
endpoints = ["127.0.0.1:$UP_PORT"]
protocol = "http1"
connect_timeout = "1s"
timeout = "5s"
EOF
    local m p a w
    while read -r m p a w; do
        printf '\n[[routes]]\nmethod = "%s"\npath = "%s"\nupstream = "bench"\naction = "%s"\nscope = "public"\nweight = %s\nschema = "%s/%s.json"\n' \
            "$m" "$p" "$a" "$w" "$SCHEMAS" "$a" >>"$f"
        if [[ "$a" == PlaceOrder ]]; then printf 'max_body_bytes = 4096\ngroup = "orders"\n' >>"$f"; fi
        if [[ "$a" == CancelOrder ]]; then printf 'group = "cancels"\n' >>"$f"; fi
    done <<'EOF'
GET /v1/time GetTime 1
GET /v1/markets ListMarkets 1
GET /v1/markets/{symbol}/book GetBook 2
GET /v1/account GetAccount 5
GET /v1/orders ListOrders 2
POST /v1/orders PlaceOrder 1
DELETE /v1/orders/{order_id} CancelOrder 1
POST /v1/withdrawals Withdraw 10
GET /v1/stream Stream 1
EOF
    [[ "$RAMPART_LIMITS" == 1 ]] || return 0
    # The demo's own limits file, with the per-IP weight raised far above
    # what this machine can serve (the whole load comes from 127.0.0.1): the
    # rule is evaluated on every request but never refuses one here.
    # key/account rules stay as in the demo; they skip public routes.
    printf '\n' >>"$f"
    sed '/^name = "ip-weight"/,/^per/ s/^rate = .*/rate = 6000000/' \
        "$ROOT/crates/rampart/src/demo_limits.toml" >>"$f"
    cat >>"$f" <<'EOF'

# One more per-IP rule on the order route, so the edge phase has two rules
# to check for the benchmarked request.
[[limits.rules]]
name = "ip-orders-1s"
by = ["ip"]
rate = 1000000
per = "1s"
cost = "one"
groups = ["orders"]
EOF
}

# ------------------------------------------------------------- 6. start -----
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_bg NAME LOG CMD... : starts CMD in the background, waits until
# https://127.0.0.1:PORT answers the typical order with 200.
start_bg() {
    local t="$1" logf="$2" pid code="" deadline
    shift 2
    if port_busy "${PORT[$t]}"; then SKIP[$t]="port ${PORT[$t]} already in use"; warn "$t: ${SKIP[$t]}"; return 1; fi
    "$@" >"$logf" 2>&1 </dev/null &
    pid=$!
    PIDS+=("$pid")
    GW_PID[$t]=$pid
    deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            SKIP[$t]="exited during start-up: $(tail -n 5 "$logf" | tr '\n' ' ' | cut -c1-400)"
            warn "$t: ${SKIP[$t]}"
            return 1
        fi
        code="$(curl -s --cacert "$PKI/ca.pem" --resolve "localhost:${PORT[$t]}:127.0.0.1" -o "$TMP/$t-probe.out" -w '%{http_code}' \
            --max-time 2 -H 'Content-Type: application/json' --data-binary "$ORDER_BODY" "https://localhost:${PORT[$t]}/v1/orders" || true)"
        [[ "$code" == 200 ]] && return 0
        sleep 0.25
    done
    SKIP[$t]="did not answer the typical order with 200 within 20 s (last status ${code:-none}: $(head -c 300 "$TMP/$t-probe.out" 2>/dev/null | tr '\n' ' '))"
    warn "$t: ${SKIP[$t]}"
    return 1
}

declare -A GW_PID=()
ACTIVE=()
if port_busy "$UP_PORT"; then die "upstream port $UP_PORT already in use (set BENCH_BASE_PORT)"; fi
log "starting bench-upstream on 127.0.0.1:$UP_PORT"
"$TMP/bin/bench-upstream" --listen "127.0.0.1:$UP_PORT" >"$TMP/upstream.log" 2>&1 </dev/null &
UP_PID=$!
PIDS+=("$UP_PID")
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/" || die "bench-upstream did not start (see $TMP/upstream.log)"

V_RAMPART=""
for t in "${ALL_TARGETS[@]}"; do
    has "$ONLY" "$t" || continue
    [[ -z "${SKIP[$t]:-}" ]] || continue
    case "$t" in
    nginx | modsec)
        write_nginx "$t" "$([[ $t == modsec ]] && echo 1 || echo 0)"
        if ! nginx -t -p "$TMP/$t/" -e "$TMP/$t/logs/error.log" -c "$TMP/$t/nginx.conf" >"$TMP/$t/configtest.log" 2>&1; then
            SKIP[$t]="nginx -t rejected the config: $(tail -n 3 "$TMP/$t/configtest.log" | tr '\n' ' ')"
            warn "$t: ${SKIP[$t]}"
            continue
        fi
        log "starting ${LABEL[$t]} on 127.0.0.1:${PORT[$t]}"
        start_bg "$t" "$TMP/$t/logs/stderr.log" nginx -p "$TMP/$t/" -e "$TMP/$t/logs/error.log" \
            -c "$TMP/$t/nginx.conf" -g 'daemon off;' && ACTIVE+=("$t")
        ;;
    rampart)
        write_rampart
        V_RAMPART="$("$TMP/bin/rampart" --version 2>/dev/null || echo unknown)"
        if ! "$TMP/bin/rampart" config check "$TMP/rampart/rampart.toml" >"$TMP/rampart/check.log" 2>&1; then
            SKIP[$t]="\`rampart config check\` rejected the config: $(tr '\n' ' ' <"$TMP/rampart/check.log" | cut -c1-600)"
            warn "$t: ${SKIP[$t]}"
            continue
        fi
        log "starting Rampart on 127.0.0.1:${PORT[$t]}"
        start_bg "$t" "$TMP/rampart/rampart.log" "$TMP/bin/rampart" serve --config "$TMP/rampart/rampart.toml" && ACTIVE+=("$t")
        ;;
    esac
done
((${#ACTIVE[@]} > 0)) || die "no gateway started"
log "running: ${ACTIVE[*]}"

# ------------------------------------------------------------- 7. load ------
LOAD_TSV="$TMP/load.tsv" # target run rps p50_ms p99_ms non2xx socket_errors requests cpu_s loadavg
: >"$LOAD_TSV"
to_ms() {
    awk -v v="$1" 'BEGIN { if (v == "") { print "NA"; exit }
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}
# CPU seconds (user + system) used so far by a process and its children.
cpu_ticks() {
    local pid="$1" p sum=0
    for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        [[ -r /proc/$p/stat ]] || continue
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$sum"
}
CLK_TCK="$(getconf CLK_TCK)"
# Busy (non-idle, non-iowait) CPU ticks of the whole machine.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
TIMEFORMAT='%U %S'   # `time wrk`: user and system CPU seconds of wrk

if has "$PARTS" load; then
    WRK_CMD="wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s bench/order.lua https://127.0.0.1:PORT/v1/orders"
    for run in $(seq 1 "$RUNS"); do
        for t in "${ACTIVE[@]}"; do
            url="https://127.0.0.1:${PORT[$t]}/v1/orders"
            log "run $run/$RUNS: wrk -> ${LABEL[$t]} (${WARMUP}s warm-up + ${DURATION}s)"
            if ((WARMUP > 0)); then wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$SCRIPT_DIR/order.lua" "$url" >/dev/null 2>&1 || true; fi
            c0="$(cpu_ticks "${GW_PID[$t]}")"
            u0="$(cpu_ticks "$UP_PID")"
            b0="$(busy_ticks)"
            out="$TMP/wrk-$t-$run.txt"
            if ! { time wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$SCRIPT_DIR/order.lua" "$url" >"$out" 2>&1; } 2>"$TMP/wrk-time"; then
                warn "wrk failed against $t: $(tail -n 3 "$out" | tr '\n' ' ')"
                printf '%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' "$t" "$run" >>"$LOAD_TSV"
                continue
            fi
            c1="$(cpu_ticks "${GW_PID[$t]}")"
            u1="$(cpu_ticks "$UP_PID")"
            b1="$(busy_ticks)"
            rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
            p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
            p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
            non2xx="$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$out")"
            sockerr="$(sed -n 's/.*Socket errors: //p' "$out" | tr -cd '0-9 ' | awk '{s=0; for(i=1;i<=NF;i++) s+=$i; print s}')"
            reqs="$(awk '/requests in/ {print $1}' "$out")"
            cpu="$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')"
            # CPU used by everything else on the machine during the run
            # (all busy time - gateway - upstream - wrk; includes kernel network time
            # not charged to a process): other people's
            # builds and tests show up here.
            others="$(awk -v b0="$b0" -v b1="$b1" -v u0="$u0" -v u1="$u1" -v g="$cpu" -v hz="$CLK_TCK" -v w="$(cat "$TMP/wrk-time")" \
                'BEGIN { split(w, x, " "); v = (b1 - b0 - (u1 - u0)) / hz - g - x[1] - x[2]; if (v < 0) v = 0; printf "%.2f", v }')"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$run" "${rps:-NA}" "$p50" "$p99" "${non2xx:-0}" "${sockerr:-0}" "${reqs:-0}" "$cpu" "$others" >>"$LOAD_TSV"
            log "    ${rps:-?} req/s, p99 ${p99} ms, non-2xx ${non2xx:-0}, socket errors ${sockerr:-0}, gateway CPU ${cpu} s, other processes' CPU ${others} s"
            if [[ "${non2xx:-0}" != 0 ]]; then warn "$t answered ${non2xx} non-2xx responses under load: its req/s are not comparable"; fi
        done
    done
fi

# ------------------------------------------------------------- 8. corpus ----
CORPUS_JSON=""
if has "$PARTS" corpus && [[ -n "$CORPUS" ]]; then
    targets=()
    for t in "${ACTIVE[@]}"; do
        if [[ -n "${BENCH_REPLAY_TARGETS:-}" ]] && ! has "$BENCH_REPLAY_TARGETS" "$t"; then continue; fi
        targets+=(--target "$t=127.0.0.1:${PORT[$t]}")
    done
    # bench-upstream answers before reading a request body and closes the
    # connection when the body is large (> ~32 KiB) instead of reading it:
    # a gateway still writing such a body then stalls or fails, and the
    # replay would count upstream artefacts. For the replay the same port is
    # served by an nginx "sink" that reads (discards) every body and answers
    # 200 to anything, keep-alive intact. All gateways share it.
    log "replacing bench-upstream by the body-reading nginx sink on 127.0.0.1:$UP_PORT for the replay"
    kill -TERM "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
    write_sink
    for _ in $(seq 1 50); do port_busy "$UP_PORT" || break; sleep 0.1; done
    nginx -p "$TMP/sink/" -e "$TMP/sink/logs/error.log" -c "$TMP/sink/nginx.conf" -g 'daemon off;' >"$TMP/sink/logs/stderr.log" 2>&1 </dev/null &
    PIDS+=($!)
    for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/" && break; sleep 0.1; done
    curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/" || die "the nginx sink did not start (see $TMP/sink/logs/)"
    # Flush connections the gateways pooled to the old upstream.
    for t in "${ACTIVE[@]}"; do
        ok=0
        for _ in $(seq 1 40); do
            code="$(curl -s --cacert "$PKI/ca.pem" --resolve "localhost:${PORT[$t]}:127.0.0.1" -o /dev/null -w '%{http_code}' \
                --max-time 2 "https://localhost:${PORT[$t]}/v1/time" || true)"
            if [[ "$code" == 200 ]]; then ok=$((ok + 1)); else ok=0; fi
            ((ok >= 5)) && break
            sleep 0.05
        done
        ((ok >= 5)) || warn "$t does not answer GET /v1/time with 200 through the sink (last status $code)"
    done
    log "replaying the corpus ($(wc -l <"$CORPUS") requests) against: ${targets[*]}"
    CORPUS_JSON="$TMP/corpus-summary.json"
    mkdir -p "$(dirname "$OUT_JSON")"
    python3 "$SCRIPT_DIR/waf_replay.py" --corpus "$CORPUS" --ca "$PKI/ca.pem" --sni localhost \
        --workers "$REPLAY_WORKERS" --out "$CORPUS_JSON" --details "${OUT_JSON%.json}-details.jsonl" "${targets[@]}" \
        || { warn "the replay failed"; CORPUS_JSON=""; }
fi

# ------------------------------------------------------------- 9. report ----
# Stop the gateways first: their logs are complete and the error-log counts final.
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
sleep 0.5

skip_json="$TMP/skip.tsv"
: >"$skip_json"
for t in "${!SKIP[@]}"; do printf '%s\t%s\n' "$t" "${SKIP[$t]}" >>"$skip_json"; done
modsec_changes="$TMP/modsec-changes.txt"
printf '%s\n' "${MODSEC_CHANGES[@]}" >"$modsec_changes"
CRS_VERSION="$(dpkg-query -W -f='${Version}' modsecurity-crs 2>/dev/null || echo unknown)"
mkdir -p "$(dirname "$OUT_JSON")"
python3 "$SCRIPT_DIR/waf_report.py" \
    --attach "nginx.conf=$TMP/nginx/nginx.conf" --attach "modsec-nginx.conf=$TMP/modsec/nginx.conf" \
    --attach "modsec-main.conf=$TMP/modsec/modsec/main.conf" --attach "rampart.toml=$TMP/rampart/rampart.toml" \
    --load "$LOAD_TSV" --corpus-summary "${CORPUS_JSON:-}" --skip "$skip_json" --out "$OUT_JSON" \
    --meta "invocation=$INVOCATION" \
    --meta "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
    --meta "git=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)')" \
    --meta "host=$NPROC x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | first), $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)" \
    --meta "cores=$NPROC" \
    --meta "loadavg_start=$LOADAVG_START" \
    --meta "wrk=${WRK_CMD:-not run}" \
    --meta "duration_s=$DURATION" --meta "warmup_s=$WARMUP" --meta "runs=$RUNS" \
    --meta "threads=$THREADS" --meta "connections=$CONNS" --meta "nginx_workers=$WORKERS" \
    --meta "order_body=$ORDER_BODY" \
    --meta "corpus_source=${CORPUS_SRC:-none}" \
    --meta "replay_workers=$REPLAY_WORKERS" \
    --meta "v_nginx=$(nginx -v 2>&1 | first)" \
    --meta "v_modsecurity=libmodsecurity3 $(dpkg-query -W -f='${Version}' libmodsecurity3 2>/dev/null || echo '?'), libnginx-mod-http-modsecurity $(dpkg-query -W -f='${Version}' libnginx-mod-http-modsecurity 2>/dev/null || echo '?')" \
    --meta "v_crs=modsecurity-crs $CRS_VERSION ($(grep -ho "ver:'OWASP_CRS/[0-9.]*'" "$CRS_DIR"/rules/REQUEST-901-INITIALIZATION.conf 2>/dev/null | first | sed "s/ver:'//; s/'//"))" \
    --meta "v_rampart=${V_RAMPART:-not run}" \
    --meta "rampart_waf_mode=$RAMPART_WAF" --meta "rampart_limits=$RAMPART_LIMITS" \
    --meta "v_wrk=$( (wrk -v 2>&1 || true) | first)" \
    --meta "v_openssl=$(openssl version)" \
    --meta "modsec_changes_file=$modsec_changes" \
    --meta "workdir=$TMP" \
    --meta "details=$([[ -n "$CORPUS_JSON" ]] && echo "${OUT_JSON%.json}-details.jsonl" || echo none)"
log "results: $OUT_JSON"
log "configs and logs: $TMP (nginx/modsec: \$TMP/{nginx,modsec}/{nginx.conf,logs/}, ModSecurity rules: \$TMP/modsec/modsec/, Rampart: \$TMP/rampart/)"

for t in "${ALL_TARGETS[@]}"; do
    if has "$ONLY" "$t" && [[ -n "${SKIP[$t]:-}" ]]; then exit 2; fi
done
exit 0
