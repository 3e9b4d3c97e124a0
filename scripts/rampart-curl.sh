#!/usr/bin/env bash
# Sign a request with an RFC 9421 hmac-sha256 key using only openssl + curl.
# Usage: scripts/rampart-curl.sh KEY_ID SECRET_B64 METHOD URL [JSON_BODY]   (CA=path/to/ca.pem)
set -euo pipefail
key_id=$1 secret=$2 method=$3 url=$4 body=${5:-}
rest=${url#https://}; authority=${rest%%/*}; target=/${rest#*/}; [[ $rest == */* ]] || target=/
path=${target%%\?*}; query="?"; [[ $target == *\?* ]] && query="?${target#*\?}"
created=$(date +%s); nonce=$(openssl rand -hex 16); comps='"@method" "@authority" "@path" "@query"'; extra=()
base=$(printf '"@method": %s\n"@authority": %s\n"@path": %s\n"@query": %s' "$method" "$authority" "$path" "$query")
if [[ -n $body ]]; then
  digest="sha-256=:$(printf %s "$body" | openssl dgst -sha256 -binary | base64 -w0):"; comps+=' "content-digest"'
  base+=$'\n'"\"content-digest\": $digest"; extra=(-H "Content-Digest: $digest" -H 'Content-Type: application/json' --data-raw "$body")
fi
params="($comps);created=$created;nonce=\"$nonce\";keyid=\"$key_id\";alg=\"hmac-sha256\""; base+=$'\n'"\"@signature-params\": $params"
hexkey=$(printf %s "$secret" | base64 -d | od -An -v -tx1 | tr -d ' \n')
sig=$(printf %s "$base" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)
curl -sS --cacert "${CA:-rampart-data/ca.pem}" -X "$method" "$url" -H "Signature-Input: sig1=$params" -H "Signature: sig1=:$sig:" "${extra[@]}"
