#!/usr/bin/env bash
# Rampart load benchmark: Rampart vs nginx vs HAProxy (all TLS 1.3) in front of
# the same trivial upstream (crates/bench-upstream), plus the upstream directly.
#
# Usage:
#   bench/run.sh                  # default: 15 s per measurement (~3 min of load)
#   BENCH_QUICK=1 bench/run.sh    # smoke run: 3 s per measurement
#
# Environment overrides (defaults in brackets):
#   BENCH_QUICK=1               quick mode (duration 3 s, warm-up 1 s)
#   BENCH_DURATION=15           seconds of measured load per (target, tool)
#   BENCH_WARMUP=2              seconds of unmeasured warm-up before each measurement
#   BENCH_CONNS=64              concurrent connections (wrk and h2load)
#   BENCH_THREADS=2             load-generator threads (wrk -t, h2load -t)
#   BENCH_H2_STREAMS=10         h2load -m: concurrent streams per HTTP/2 connection
#   BENCH_TARGETS=upstream,rampart,nginx,haproxy   which targets to run
#   BENCH_TOOLS=wrk,h2load      which load generators to run
#   BENCH_PATH=/v1/time         request path
#   BENCH_BASE_PORT=18080       upstream port; rampart/nginx/haproxy use +363/+364/+365
#                               (18443/18444/18445 by default)
#   BENCH_WORKERS=$(nproc)      nginx worker_processes / haproxy nbthread
#   BENCH_NGINX_KEEPALIVE=64    nginx upstream `keepalive` (idle conns cached per worker)
#   BENCH_RAMPART_UPSTREAM_PROTO=http1   rampart -> upstream protocol (http1 | h2)
#   BENCH_RAMPART_BIN=...       use this rampart binary instead of target/release/rampart
#   BENCH_NO_BUILD=1            do not run cargo build
#   BENCH_NO_INSTALL=1          do not apt-get install missing tools
#   BENCH_START_TIMEOUT=15      seconds to wait for each target to answer
#   BENCH_KEEP_TMP=1            keep the temp dir (configs, certs, logs, h2load logs)
#   BENCH_STRICT=1              also exit non-zero (3) if Rampart misses its targets
#   BENCH_OUT=bench/out/latest.md   where to write the markdown report
#
# Exit status: 0 ok; 2 Rampart was requested but could not be built/started
# (the other targets are still measured and reported); 3 targets missed with
# BENCH_STRICT=1; 1 harness error.
#
# The load generator and the proxies share the same CPU cores: on a small
# machine (2 cores) absolute numbers are bounded by that. Compare ratios.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
INVOCATION="$( (env | grep -E '^BENCH_' || true) | sort | tr '\n' ' ')bench/run.sh${*:+ $*}"

# ---------------------------------------------------------------- settings --
if [[ "${BENCH_QUICK:-0}" == "1" ]]; then
    DEF_DURATION=3
    DEF_WARMUP=1
else
    DEF_DURATION=15
    DEF_WARMUP=2
fi
DURATION="${BENCH_DURATION:-$DEF_DURATION}"
WARMUP="${BENCH_WARMUP:-$DEF_WARMUP}"
CONNS="${BENCH_CONNS:-64}"
THREADS="${BENCH_THREADS:-2}"
H2_STREAMS="${BENCH_H2_STREAMS:-10}"
NGINX_KEEPALIVE="${BENCH_NGINX_KEEPALIVE:-64}"
TARGETS="${BENCH_TARGETS:-upstream,rampart,nginx,haproxy}"
TOOLS="${BENCH_TOOLS:-wrk,h2load}"
REQ_PATH="${BENCH_PATH:-/v1/time}"
BASE_PORT="${BENCH_BASE_PORT:-18080}"
NPROC="$(nproc)"
WORKERS="${BENCH_WORKERS:-$NPROC}"
RAMPART_UP_PROTO="${BENCH_RAMPART_UPSTREAM_PROTO:-http1}"
START_TIMEOUT="${BENCH_START_TIMEOUT:-15}"
OUT_FILE="${BENCH_OUT:-$REPO_ROOT/bench/out/latest.md}"
RAMPART_BIN="${BENCH_RAMPART_BIN:-$REPO_ROOT/target/release/rampart}"
UPSTREAM_BIN="$REPO_ROOT/target/release/bench-upstream"

UP_PORT="$BASE_PORT"
declare -A PORT=(
    [upstream]="$BASE_PORT"
    [rampart]=$((BASE_PORT + 363))
    [nginx]=$((BASE_PORT + 364))
    [haproxy]=$((BASE_PORT + 365))
)
declare -A LABEL=(
    [upstream]="upstream (direct, plain HTTP)"
    [rampart]="Rampart"
    [nginx]="nginx"
    [haproxy]="HAProxy"
)
declare -A SKIP_REASON=()
declare -A TLS_INFO=()
declare -A H2LOAD_TLS=()

has() { [[ ",$1," == *",$2,"* ]]; }
# first line of stdin; reads all input (head would SIGPIPE the writer under pipefail)
first() { awk 'NR == 1'; }
log() { printf '[bench] %s\n' "$*" >&2; }
warn() { printf '[bench] WARNING: %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

for t in ${TARGETS//,/ }; do
    [[ -n "${PORT[$t]:-}" ]] || die "unknown target '$t' in BENCH_TARGETS (known: upstream,rampart,nginx,haproxy)"
done
for t in ${TOOLS//,/ }; do
    [[ "$t" == wrk || "$t" == h2load ]] || die "unknown tool '$t' in BENCH_TOOLS (known: wrk,h2load)"
done

# ------------------------------------------------------------ cleanup trap --
TMP="$(mktemp -d /tmp/rampart-bench.XXXXXX)"
PIDS=()
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$?
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${BENCH_KEEP_TMP:-0}" == "1" ]]; then
        log "kept temp dir $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --------------------------------------------------------- 1. dependencies --
install_deps() {
    local need=()
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
    command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    if ((${#need[@]} == 0)); then
        return 0
    fi
    [[ "${BENCH_NO_INSTALL:-0}" == "1" ]] && die "missing tools (${need[*]}) and BENCH_NO_INSTALL=1"
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${need[*]}; not root and no sudo"
        sudo=(sudo)
    fi
    log "installing: ${need[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
        nginx haproxy wrk nghttp2-client openssl curl >&2
}
install_deps
export PATH="$PATH:/usr/sbin:/sbin"

# Debian's nginx package starts a system nginx on :80 when installed; it does
# not conflict with our ports, so we leave it alone.

# ---------------------------------------------------------------- build ----
if [[ "${BENCH_NO_BUILD:-0}" != "1" ]]; then
    log "building bench-upstream (release)"
    (cd "$REPO_ROOT" && cargo build --release -p bench-upstream) >&2 \
        || die "cargo build -p bench-upstream failed"
    if has "$TARGETS" rampart && [[ -z "${BENCH_RAMPART_BIN:-}" ]]; then
        log "building rampart (release)"
        if ! (cd "$REPO_ROOT" && cargo build --release -p rampart) >&2; then
            SKIP_REASON[rampart]="cargo build --release -p rampart failed"
            warn "${SKIP_REASON[rampart]}; Rampart will be skipped"
        fi
    fi
fi
[[ -x "$UPSTREAM_BIN" ]] || die "$UPSTREAM_BIN not found (build it or unset BENCH_NO_BUILD)"

# ------------------------------------------------------------ 2. certs -----
gen_certs() {
    local d="$TMP/pki"
    mkdir -p "$d"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$d/ca.key" -sha256 -days 2 \
        -subj "/CN=Rampart bench throwaway CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$d/ca.pem" 2>/dev/null
    # genpkey writes PKCS#8
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/server.key" 2>/dev/null
    openssl req -new -key "$d/server.key" -subj "/CN=localhost" -out "$d/server.csr" 2>/dev/null
    cat >"$d/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$d/server.ext" \
        -out "$d/server.crt" 2>/dev/null
    # leaf + CA as the served chain
    cat "$d/server.crt" "$d/ca.pem" >"$d/server.pem"
    # HAProxy wants cert chain + key in one file
    cat "$d/server.pem" "$d/server.key" >"$d/haproxy.pem"
    chmod 600 "$d"/*.key "$d/haproxy.pem"
}
log "generating throwaway CA + server cert (EC P-256) in $TMP/pki"
gen_certs
CERT="$TMP/pki/server.pem"
KEY="$TMP/pki/server.key"

# 1-minute load average before any load is generated: anything else busy on
# the machine (e.g. a cargo build) skews the numbers.
LOADAVG_START="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$LOADAVG_START" 'BEGIN { exit !(l > 0.5) }'; then
    warn "load average is $LOADAVG_START before the benchmark: other processes compete for the CPU, results will be noisy"
fi

# ------------------------------------------------------- 3. start targets --
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

url_for() {
    if [[ "$1" == upstream ]]; then
        echo "http://127.0.0.1:${PORT[$1]}$REQ_PATH"
    else
        echo "https://127.0.0.1:${PORT[$1]}$REQ_PATH"
    fi
}

# wait_ready TARGET PID LOGFILE -> 0 when it answers 200, 1 otherwise
wait_ready() {
    local t="$1" pid="$2" logf="$3" url code
    url="$(url_for "$t")"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            local st=0
            wait "$pid" 2>/dev/null || st=$?
            SKIP_REASON[$t]="process exited during start-up with status $st"
            if [[ -s "$logf" ]]; then
                SKIP_REASON[$t]+=": $(tail -n 3 "$logf" | tr '\n' ' ' | cut -c1-300)"
            fi
            break
        fi
        if [[ "$t" == upstream ]]; then
            code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
        else
            code="$(curl -sk --tlsv1.3 -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
        fi
        if [[ "$code" == 200 ]]; then
            return 0
        fi
        sleep 0.2
    done
    [[ -n "${SKIP_REASON[$t]:-}" ]] || SKIP_REASON[$t]="did not answer 200 on $url within ${START_TIMEOUT}s (last status: ${code:-none})"
    warn "${LABEL[$t]}: ${SKIP_REASON[$t]}"
    if [[ -s "$logf" ]]; then
        warn "last lines of $logf:"
        tail -n 15 "$logf" | sed 's/^/    /' >&2
    fi
    return 1
}

# start_bg TARGET LOGFILE CMD... ; sets LAST_PID
start_bg() {
    local t="$1" logf="$2"
    shift 2
    if port_busy "${PORT[$t]}"; then
        SKIP_REASON[$t]="port ${PORT[$t]} already in use"
        warn "${LABEL[$t]}: ${SKIP_REASON[$t]}"
        return 1
    fi
    "$@" >"$logf" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_ready "$t" "$LAST_PID" "$logf"
}

write_rampart_config() {
    cat >"$TMP/rampart.toml" <<EOF
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

[upstreams.bench]
endpoints = ["127.0.0.1:$UP_PORT"]
protocol = "$RAMPART_UP_PROTO"
connect_timeout = "1s"
timeout = "5s"

[[routes]]
method = "GET"
path = "$REQ_PATH"
upstream = "bench"
action = "GetTime"
scope = "public"
EOF
}

nginx_version() { nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p'; }
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | first)" == "$2" ]]; }

write_nginx_config() {
    local d="$TMP/nginx" ver listen_line http2_line user_line=""
    mkdir -p "$d/logs" "$d/tmp/body" "$d/tmp/proxy" "$d/tmp/fastcgi" "$d/tmp/uwsgi" "$d/tmp/scgi"
    ver="$(nginx_version)"
    # `http2 on;` exists since nginx 1.25.1; older (Debian 12 ships 1.22.1)
    # needs `listen ... ssl http2;`.
    if version_ge "$ver" 1.25.1; then
        listen_line="listen 127.0.0.1:${PORT[nginx]} ssl;"
        http2_line="http2 on;"
    else
        listen_line="listen 127.0.0.1:${PORT[nginx]} ssl http2;"
        http2_line="# http2 enabled on the listen line (nginx $ver < 1.25.1)"
    fi
    # As root, workers would switch to 'nobody' and could not use the 0700
    # temp dir; keep them as the invoking user.
    if [[ $EUID -eq 0 ]]; then user_line="user root;"; fi
    cat >"$d/nginx.conf" <<EOF
$user_line
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

    # keep benchmark connections open for the whole run (default is 1000
    # requests per connection, which would add reconnects + handshakes)
    keepalive_requests 100000000;
    keepalive_timeout 60s;

    upstream bench_up {
        server 127.0.0.1:$UP_PORT;
        keepalive $NGINX_KEEPALIVE;
        keepalive_requests 100000000;
    }

    server {
        $listen_line
        $http2_line
        server_name localhost;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;

        location / {
            proxy_pass http://bench_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

write_haproxy_config() {
    # HAProxy refuses to start if maxconn needs more fds than the hard limit.
    local nofile
    nofile="$(ulimit -n)"
    HAPROXY_MAXCONN=$(( (nofile - 200) / 2 ))
    if ((HAPROXY_MAXCONN > 10000)); then HAPROXY_MAXCONN=10000; fi
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn $HAPROXY_MAXCONN
    # no 'log' lines: logging disabled

defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 60s
    timeout server 10s
    timeout http-request 5s
    timeout http-keep-alive 60s

frontend fe_bench
    bind 127.0.0.1:${PORT[haproxy]} ssl crt $TMP/pki/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3
    default_backend be_bench

backend be_bench
    http-reuse always
    server up1 127.0.0.1:$UP_PORT
EOF
}

tls_info() {
    local out proto cipher alpn
    out="$(openssl s_client -connect "127.0.0.1:${PORT[$1]}" -servername localhost \
        -alpn h2,http/1.1 </dev/null 2>/dev/null | tr -d '\000' || true)"
    proto="$(sed -n 's/^ *Protocol *: *//p' <<<"$out" | first)"
    [[ -n "$proto" ]] || proto="$(sed -n 's/^New, \([^,]*\), Cipher is .*/\1/p' <<<"$out" | first)"
    cipher="$(sed -n 's/^New, [^,]*, Cipher is //p' <<<"$out" | first)"
    alpn="$(sed -n 's/^ALPN protocol: //p' <<<"$out" | first)"
    local tls12="refused"
    if curl -sk --tlsv1.2 --tls-max 1.2 -o /dev/null --max-time 2 "$(url_for "$1")" 2>/dev/null; then
        tls12="ACCEPTED (expected refused)"
        warn "${LABEL[$1]} accepts TLS 1.2"
    fi
    TLS_INFO[$1]="${proto:-?}, ${cipher:-?}, ALPN ${alpn:-none}; TLS 1.2 ${tls12}"
}

ACTIVE=()
start_targets() {
    # The upstream is needed by every proxy, so it is always started.
    log "starting bench-upstream on 127.0.0.1:$UP_PORT"
    if ! start_bg upstream "$TMP/upstream.log" "$UPSTREAM_BIN" --listen "127.0.0.1:$UP_PORT"; then
        die "bench-upstream failed to start: ${SKIP_REASON[upstream]}"
    fi
    if has "$TARGETS" upstream; then ACTIVE+=(upstream); fi

    if has "$TARGETS" rampart; then
        if [[ -n "${SKIP_REASON[rampart]:-}" ]]; then
            :
        elif [[ ! -x "$RAMPART_BIN" ]]; then
            SKIP_REASON[rampart]="binary $RAMPART_BIN not found"
            warn "Rampart: ${SKIP_REASON[rampart]}"
        else
            write_rampart_config
            log "starting Rampart on 127.0.0.1:${PORT[rampart]}"
            if start_bg rampart "$TMP/rampart.log" "$RAMPART_BIN" serve --config "$TMP/rampart.toml"; then
                ACTIVE+=(rampart)
            fi
        fi
    fi

    if has "$TARGETS" nginx; then
        write_nginx_config
        log "starting nginx $(nginx_version) on 127.0.0.1:${PORT[nginx]}"
        if ! nginx -t -p "$TMP/nginx/" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/configtest.log" 2>&1; then
            SKIP_REASON[nginx]="nginx -t rejected the generated config"
            warn "nginx: ${SKIP_REASON[nginx]}:"
            sed 's/^/    /' "$TMP/nginx/configtest.log" >&2
        elif start_bg nginx "$TMP/nginx/logs/stderr.log" nginx -p "$TMP/nginx/" \
            -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;'; then
            ACTIVE+=(nginx)
        fi
    fi

    if has "$TARGETS" haproxy; then
        write_haproxy_config
        log "starting HAProxy on 127.0.0.1:${PORT[haproxy]}"
        if ! haproxy -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1; then
            SKIP_REASON[haproxy]="haproxy -c rejected the generated config"
            warn "HAProxy: ${SKIP_REASON[haproxy]}:"
            sed 's/^/    /' "$TMP/haproxy-check.log" >&2
        elif start_bg haproxy "$TMP/haproxy.log" haproxy -db -f "$TMP/haproxy.cfg"; then
            ACTIVE+=(haproxy)
        fi
    fi

    local t
    for t in "${ACTIVE[@]}"; do
        if [[ "$t" == upstream ]]; then continue; fi
        tls_info "$t"
        log "${LABEL[$t]} ready: ${TLS_INFO[$t]}"
    done
}
start_targets

# ------------------------------------------------------------- 4. load -----
RESULTS="$TMP/results.tsv" # target tool proto rps p50_ms p99_ms mean_ms max_ms errors note
: >"$RESULTS"
declare -A CMD_USED=()

# converts wrk/h2load durations ("812.00us", "1.23ms", "2.01s", "1.5m") to ms
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v == "" ) { print "NA"; exit }
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000;
        else if (u == "m") n *= 60000; else if (u == "h") n *= 3600000;
        printf "%.3f", n }'
}

# kernel-wide TCP listen-queue overflows (SYNs dropped => 1 s retransmit
# stalls); a non-zero delta during a run is flagged in the table.
listen_overflows() {
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) n[$i] = i; h = 1 } else print $n["ListenOverflows"] }' \
        /proc/net/netstat 2>/dev/null || echo 0
}
overflow_note() { # overflow_note BEFORE -> note text or empty
    local d=$(( $(listen_overflows) - $1 ))
    if ((d > 0)); then echo "$d listen-queue overflows"; fi
}

run_wrk() {
    local t="$1" url out rps p50 p99 avg max errs=0 non2xx sockerr
    url="$(url_for "$t")"
    local cmd=(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url")
    CMD_USED[wrk]="wrk -t$THREADS -c$CONNS -d${DURATION}s --latency URL   (after a ${WARMUP}s unmeasured warm-up run)"
    log "wrk    -> ${LABEL[$t]} ($url)"
    if ((WARMUP > 0)); then
        wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
    fi
    local lo0
    lo0="$(listen_overflows)"
    if ! out="$("${cmd[@]}" 2>&1)"; then
        warn "wrk failed against ${LABEL[$t]}: $out"
        printf '%s\twrk\tHTTP/1.1\tNA\tNA\tNA\tNA\tNA\tNA\twrk failed\n' "$t" >>"$RESULTS"
        return 0
    fi
    printf '%s\n' "$out" >"$TMP/wrk-$t.txt"
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    avg="$(to_ms "$(awk '$1 == "Latency" {print $2; exit}' <<<"$out")")"
    max="$(to_ms "$(awk '$1 == "Latency" {print $4; exit}' <<<"$out")")"
    non2xx="$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' <<<"$out")"
    sockerr="$(sed -n 's/.*Socket errors: //p' <<<"$out" | tr -cd '0-9 ' | awk '{s=0; for(i=1;i<=NF;i++) s+=$i; print s}')"
    errs=$(( ${non2xx:-0} + ${sockerr:-0} ))
    printf '%s\twrk\tHTTP/1.1\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${rps:-NA}" "$p50" "$p99" "$avg" "$max" "$errs" "$(overflow_note "$lo0")" >>"$RESULTS"
}

run_h2load() {
    local t="$1" url out rps p50 p99 mean max failed errored timeout non2xx errs reqlog n note=""
    url="$(url_for "$t")"
    reqlog="$TMP/h2load-$t.log"
    local cmd=(h2load -D "$DURATION" --warm-up-time="$WARMUP" -c "$CONNS" -m "$H2_STREAMS" -t "$THREADS" --log-file="$reqlog" "$url")
    CMD_USED[h2load]="h2load -D $DURATION --warm-up-time=$WARMUP -c $CONNS -m $H2_STREAMS -t $THREADS --log-file=FILE URL"
    log "h2load -> ${LABEL[$t]} ($url)"
    rm -f "$reqlog"
    local lo0
    lo0="$(listen_overflows)"
    if ! out="$("${cmd[@]}" 2>&1)"; then
        warn "h2load failed against ${LABEL[$t]}: $(tail -n 5 <<<"$out")"
        printf '%s\th2load\tHTTP/2\tNA\tNA\tNA\tNA\tNA\tNA\th2load failed\n' "$t" >>"$RESULTS"
        return 0
    fi
    printf '%s\n' "$out" >"$TMP/h2load-$t.txt"
    rps="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")"
    # "time for request:   min   max   mean   sd   +/- sd"
    max="$(to_ms "$(awk '/^time for request:/ {print $5}' <<<"$out")")"
    mean="$(to_ms "$(awk '/^time for request:/ {print $6}' <<<"$out")")"
    failed="$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' <<<"$out")"
    errored="$(sed -n 's/^requests: .* \([0-9]*\) errored.*/\1/p' <<<"$out")"
    timeout="$(sed -n 's/^requests: .* \([0-9]*\) timeout.*/\1/p' <<<"$out")"
    non2xx="$(awk '/^status codes:/ {gsub(",", ""); print $5 + $7 + $9}' <<<"$out")"
    errs=$(( ${failed:-0} + ${errored:-0} + ${timeout:-0} + ${non2xx:-0} ))
    note="$(overflow_note "$lo0")"
    if [[ "$t" != upstream ]]; then
        H2LOAD_TLS[$t]="$(sed -n 's/^TLS Protocol: //p' <<<"$out" | first), $(sed -n 's/^Cipher: //p' <<<"$out" | first), $(sed -n 's/^Server Temp Key: //p' <<<"$out" | first)"
    fi
    if [[ "$(sed -n 's/^Application protocol: //p' <<<"$out")" != "h2" && "$t" != upstream ]]; then
        note="${note:+$note; }negotiated $(sed -n 's/^Application protocol: //p' <<<"$out"), not h2!"
    fi
    # h2load prints only min/max/mean/sd; p50/p99 come from the per-request
    # log (col 1 = start time in us since epoch, col 3 = us until end of
    # response), nearest-rank. h2load logs every request that *completed* in
    # the main phase, including ones that started during warm-up (e.g. stuck
    # behind connection set-up); drop those: main phase ~ [last end - D, last end].
    p50=NA p99=NA
    if [[ -s "$reqlog" ]]; then
        read -r n p50 p99 < <(awk -F'\t' -v dur_us="$((DURATION * 1000000))" '
            { s[NR] = $1; d[NR] = $3; e = $1 + $3; if (e > last) last = e }
            END { for (i = 1; i <= NR; i++) if (s[i] >= last - dur_us) print d[i] }' "$reqlog" \
            | sort -n | awk '
            { v[NR] = $1 }
            END {
                if (NR == 0) { print 0, "NA", "NA"; exit }
                i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; if (i50 < 1) i50 = 1
                i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++; if (i99 < 1) i99 = 1
                printf "%d %.3f %.3f\n", NR, v[i50] / 1000, v[i99] / 1000
            }')
        log "         $n per-request samples in log"
    fi
    printf '%s\th2load\tHTTP/2\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${rps:-NA}" "$p50" "$p99" "$mean" "$max" "$errs" "$note" >>"$RESULTS"
}

if ((${#ACTIVE[@]} == 0)); then
    warn "no target started"
fi
for t in "${ACTIVE[@]}"; do
    if has "$TOOLS" wrk; then run_wrk "$t"; fi
    if has "$TOOLS" h2load; then run_h2load "$t"; fi
done

# ---------------------------------------------------------- 5. report ------
fmt_num() { if [[ "$1" == NA || -z "$1" ]]; then echo "n/a"; else awk -v v="$1" 'BEGIN { printf "%.0f", v }'; fi; }
fmt_ms() { if [[ "$1" == NA || -z "$1" ]]; then echo "n/a"; else awk -v v="$1" 'BEGIN { printf "%.2f", v }'; fi; }
get() { # get TARGET TOOL FIELD(4..10)
    awk -F'\t' -v t="$1" -v tool="$2" -v f="$3" '$1 == t && $2 == tool { print $f }' "$RESULTS"
}
ratio() { # ratio A B -> A/B with 2 decimals, or NA
    if [[ -z "$1" || -z "$2" || "$1" == NA || "$2" == NA ]]; then echo NA; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "NA"; else printf "%.2f", a / b }'
}
cmp_le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | first)"
[[ -n "$CPU_MODEL" ]] || CPU_MODEL="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | first)"
MEM="$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
V_NGINX="$(nginx -v 2>&1 | first)"
V_HAPROXY="$(haproxy -v 2>&1 | first)"
V_WRK="$( (wrk -v 2>&1 || true) | first)"
V_H2LOAD="$(h2load --version 2>&1 | first)"
V_OPENSSL="$(openssl version)"
V_RUSTC="$(rustc --version 2>/dev/null || echo unknown)"
V_GIT="$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)')"
NOW="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"

TABLE="$TMP/table.md"
{
    echo "| Target | Protocol (tool) | Req/s | p50 (ms) | p99 (ms) | mean (ms) | max (ms) | Errors | Notes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
    while IFS=$'\t' read -r t tool proto rps p50 p99 mean max errs note; do
        printf '| %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s |\n' \
            "${LABEL[$t]}" "$proto" "$tool" "$(fmt_num "$rps")" "$(fmt_ms "$p50")" "$(fmt_ms "$p99")" \
            "$(fmt_ms "$mean")" "$(fmt_ms "$max")" "${errs:-n/a}" "$note"
    done <"$RESULTS"
} >"$TABLE"

TARGETS_MD="$TMP/targets.md"
MISSED=0
{
    echo "| Protocol (tool) | Rampart/nginx req/s | target ≥ 0.90 | Rampart/nginx p99 | target ≤ 1.20 | Rampart/HAProxy req/s | Rampart/HAProxy p99 |"
    echo "|---|---:|:---:|---:|:---:|---:|---:|"
    for tool in wrk h2load; do
        has "$TOOLS" "$tool" || continue
        proto=HTTP/1.1; [[ "$tool" == h2load ]] && proto=HTTP/2
        rr="$(ratio "$(get rampart "$tool" 4)" "$(get nginx "$tool" 4)")"
        pr="$(ratio "$(get rampart "$tool" 6)" "$(get nginx "$tool" 6)")"
        hr="$(ratio "$(get rampart "$tool" 4)" "$(get haproxy "$tool" 4)")"
        hp="$(ratio "$(get rampart "$tool" 6)" "$(get haproxy "$tool" 6)")"
        if [[ "$rr" == NA ]]; then rok="n/a"; elif cmp_le 0.90 "$rr"; then rok="✅ met"; else rok="❌ missed"; MISSED=1; fi
        if [[ "$pr" == NA ]]; then pok="n/a"; elif cmp_le "$pr" 1.20; then pok="✅ met"; else pok="❌ missed"; MISSED=1; fi
        printf '| %s (%s) | %s | %s | %s | %s | %s | %s |\n' "$proto" "$tool" \
            "${rr/NA/n/a}" "$rok" "${pr/NA/n/a}" "$pok" "${hr/NA/n/a}" "${hp/NA/n/a}"
    done
} >"$TARGETS_MD"

mkdir -p "$(dirname "$OUT_FILE")"
{
    echo "# Rampart load benchmark — $NOW"
    echo
    echo "Command: \`$INVOCATION\` (repo at $V_GIT)"
    echo
    echo "- Host: $NPROC × $CPU_MODEL, $MEM, $(uname -sr); 1-min load average before the run: $LOADAVG_START"
    if awk -v l="$LOADAVG_START" 'BEGIN { exit !(l > 0.5) }'; then
        echo "  (**other processes were busy — numbers are noisy; rerun on an idle machine**)"
    fi
    echo "- **The load generator and all proxies share the same $NPROC cores**; absolute numbers"
    echo "  are bounded by that, compare the ratios. Targets were measured one after another."
    echo "- Every proxy terminates **TLS 1.3 only** (EC P-256 cert) and forwards over plain HTTP/1.1"
    echo "  keep-alive to the same \`bench-upstream\` (Rampart → upstream: \`$RAMPART_UP_PROTO\`)."
    echo "  \`upstream (direct)\` is **plain HTTP without TLS** (HTTP/2 = h2c prior knowledge): a ceiling, not a peer."
    echo "- nginx: worker_processes $WORKERS, upstream keepalive $NGINX_KEEPALIVE (idle cache per worker: with"
    echo "  HTTP/2 × $H2_STREAMS streams more requests are in flight than that, so nginx opens and closes extra"
    echo "  upstream connections — that is nginx's real behaviour; \`BENCH_NGINX_KEEPALIVE=1024\` avoids the churn), access_log off."
    echo "  HAProxy: nbthread $WORKERS, http-reuse always, no logging."
    echo "- Load: HTTP/1.1 = \`${CMD_USED[wrk]:-not run}\`;"
    echo "  HTTP/2 = \`${CMD_USED[h2load]:-not run}\`."
    echo "  Per target: ${WARMUP}s warm-up + ${DURATION}s measured, $CONNS connections, $THREADS threads."
    echo "- Latency: wrk percentiles from its \`--latency\` histogram; h2load p50/p99 computed"
    echo "  (nearest rank) from its \`--log-file\` per-request times, excluding requests that started"
    echo "  during warm-up; mean/max are h2load's own summary (which includes those)."
    echo "  Both are closed-loop generators (no coordinated-omission correction)."
    echo "- Versions: $V_NGINX; $V_HAPROXY; $V_WRK; $V_H2LOAD; $V_OPENSSL; $V_RUSTC"
    echo
    echo "## Results"
    echo
    cat "$TABLE"
    echo
    echo "## Rampart vs nginx (targets: req/s ≥ 0.9× nginx, p99 ≤ 1.2× nginx)"
    echo
    cat "$TARGETS_MD"
    echo
    echo "## TLS as negotiated (openssl s_client, ALPN h2,http/1.1)"
    echo
    for t in rampart nginx haproxy; do
        if [[ -n "${TLS_INFO[$t]:-}" ]]; then
            echo "- ${LABEL[$t]}: ${TLS_INFO[$t]}${H2LOAD_TLS[$t]:+; under h2load: ${H2LOAD_TLS[$t]}}"
        fi
    done
    if ((${#SKIP_REASON[@]} > 0)); then
        echo
        echo "## Skipped targets"
        echo
        for t in "${!SKIP_REASON[@]}"; do
            echo "- ${LABEL[$t]}: ${SKIP_REASON[$t]}"
        done
    fi
} >"$OUT_FILE"

echo
cat "$OUT_FILE"
echo
log "report written to $OUT_FILE"

if has "$TARGETS" rampart && [[ -n "${SKIP_REASON[rampart]:-}" ]]; then
    warn "Rampart was SKIPPED: ${SKIP_REASON[rampart]}"
    exit 2
fi
if [[ "${BENCH_STRICT:-0}" == "1" && "$MISSED" == 1 ]]; then
    warn "Rampart missed its targets (BENCH_STRICT=1)"
    exit 3
fi
exit 0
