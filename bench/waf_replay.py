#!/usr/bin/env python3
"""Replay a WAF corpus against HTTPS gateways and count what each refused.

Used by bench/waf.sh; Python 3.11 standard library only.

The corpus is JSON lines, one request each (the format printed by
`cargo run -p rampart-shield --example corpus`):

    {"kind": "attack" | "benign", "category": "sqli", "method": "POST",
     "path": "/v1/orders", "query": "a=b" | null,
     "headers": {"name": "value", ...}, "body": "<string>" | null,
     optional: "raw_headers": [[name, value], ...] (used instead of
     "headers" when present: order and repeated names kept),
     "transport_safe": bool, "action", "placement", "note"}

Every request is written to the socket by hand (not through http.client), so
header values with CR, LF or NUL, conflicting Content-Length and
Transfer-Encoding, obs-folds and the like reach the gateway exactly as the
corpus gives them. Only two headers are ever added: `Host: localhost` when the
corpus gives no Host, and `Content-Length` when the request has a body and
gives neither Content-Length nor Transfer-Encoding. Ordinary requests share
keep-alive connections (one per worker thread); requests with anything unusual
in their framing or headers get a connection of their own, closed after the
first response, so that left-over bytes can never be read as the next request.

Outcome of one request (the upstream behind every gateway answers 200 to
everything, so any other status comes from the gateway):

    passed        2xx: the gateway forwarded it
    refused       400, 403, 413, 414 or 431 from the gateway (= "detected" for
                  an attack, "false positive" for a benign request)
    unauth        401 (should not happen: the compared routes are public)
    rate_limited  429
    status_NNN    any other status (404, 405, 5xx, ...)
    no_response   the gateway closed or reset the connection without answering
    timeout       no complete answer within --timeout seconds
    error         could not connect / TLS handshake failed

Usage:
    waf_replay.py --corpus FILE --ca CA.pem --target NAME=HOST:PORT [--target ...]
                  [--workers 8] [--timeout 5] [--out summary.json] [--details details.jsonl]

Prints one table per target on stderr and writes the summary JSON to --out
(stdout when omitted).
"""

from __future__ import annotations

import argparse
import collections
import json
import queue
import select
import socket
import ssl
import sys
import threading
import time

REFUSED = {400, 403, 413, 414, 431}
CHUNK = 16 * 1024
SNIPPET = 300


class NoResponse(Exception):
    """The connection ended before a complete status line and headers."""


def is_odd_text(s: str) -> bool:
    return any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in s)


def encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def header_lines(req: dict) -> list[tuple[str, str]]:
    """The request's header lines in order: `raw_headers` ([name, value]
    pairs, repeated names kept) when the corpus gives it, else `headers`."""
    raw = req.get("raw_headers")
    if isinstance(raw, list):
        return [(str(n), str(v)) for n, v in raw]
    return list((req.get("headers") or {}).items())


def build_request(req: dict) -> tuple[bytes, bytes, bool]:
    """Returns (head, body, odd)."""
    method = req.get("method") or "GET"
    target = req.get("path") or "/"
    q = req.get("query")
    if q is not None:
        target += "?" + q
    headers = header_lines(req)
    body = req.get("body")
    bbody = encode(body) if body is not None else b""
    lower = {k.lower() for k, _ in headers}
    odd = (
        req.get("transport_safe") is False
        or is_odd_text(method)
        or is_odd_text(target)
        or " " in target
        or any(ord(c) > 0x7E for c in target)
        or "transfer-encoding" in lower
        or "content-length" in lower
        or sum(1 for k, _ in headers if k.lower() == "host") > 1
        or any(is_odd_text(k) or is_odd_text(v) or ":" in k or " " in k or not k for k, v in headers)
    )
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in lower:
        lines.append("Host: localhost")
    for k, v in headers:
        lines.append(f"{k}: {v}")
    if body is not None and "content-length" not in lower and "transfer-encoding" not in lower:
        lines.append(f"Content-Length: {len(bbody)}")
    head = encode("\r\n".join(lines) + "\r\n\r\n")
    return head, bbody, odd


class Conn:
    """One TLS connection with a small read buffer."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, sni: str, timeout: float):
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        self.buf = b""
        self.got = False  # any byte received for the current request
        self.deadline = 0.0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            return False
        except ssl.SSLError as e:
            if "EOF" in str(e) or "RESET" in str(e).upper():
                return False
            raise
        if not data:
            return False
        self.buf += data
        self.got = True
        return True

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            if len(self.buf) > 65536:
                raise NoResponse("header line too long")
            if not self._fill():
                raise NoResponse("closed")
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise NoResponse("closed in body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def answered_early(self) -> bool:
        """Whether the server has sent application data (or closed) while we
        are still sending the body. A readable socket alone does not say so:
        TLS 1.3 servers send session tickets after the handshake."""
        if self.buf:
            return True
        if not self.sock.pending():
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return False
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except (OSError, ssl.SSLError):
            return True
        finally:
            self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
        if data:
            self.buf += data
            self.got = True
        return True

    def send_request(self, head: bytes, body: bytes) -> bool:
        """Sends; returns False if sending stopped early (server answered or
        reset mid-body), in which case the connection must not be reused."""
        self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
        data = head + body
        if len(data) <= CHUNK:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
                return False
            return True
        try:
            self.sock.sendall(head)
            for i in range(0, len(body), CHUNK):
                if self.answered_early():
                    return False
                self.sock.sendall(body[i : i + CHUNK])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            return False
        return True

    def read_response(self, method: str) -> tuple[int, dict, bytes, bool]:
        while True:
            line = self.readline()
            while line in (b"\r\n", b"\n"):
                line = self.readline()
            parts = line.decode("latin-1").split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise NoResponse(f"bad status line {line[:80]!r}")
            version, status = parts[0], int(parts[1])
            headers: dict[str, str] = {}
            while True:
                h = self.readline()
                if h in (b"\r\n", b"\n"):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if 100 <= status < 200 and status != 101:
                continue
            keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.readline() not in (b"\r\n", b"\n"):
                            pass
                        break
                    chunks.append(self.read_exact(size))
                    self.readline()
                body = b"".join(chunks)
            elif "content-length" in headers:
                body = self.read_exact(int(headers["content-length"]))
            else:
                body = self.read_to_close()
                keep = False
            return status, headers, body, keep


def reason(status: int | None, body: str) -> str:
    """Short label of why the gateway answered as it did: a problem+json's
    `code` (and `rule` when given), an HTML page's title, or the status."""
    if status is None:
        return ""
    try:
        j = json.loads(body)
        if isinstance(j, dict) and "code" in j:
            return str(j["code"]) + (f" {j['rule']}" if "rule" in j else "")
    except ValueError:
        pass
    i = body.find("<title>")
    if i >= 0:
        return body[i + 7 : body.find("</title>", i)][:60]
    return str(status)


def classify(status: int | None, err: str | None) -> str:
    if status is None:
        return err or "error"
    if 200 <= status < 300:
        return "passed"
    if status in REFUSED:
        return "refused"
    if status == 401:
        return "unauth"
    if status == 429:
        return "rate_limited"
    return f"status_{status}"


def replay_target(name: str, host: str, port: int, corpus: list[dict], built: list, args, ctx) -> list[dict]:
    results: list[dict | None] = [None] * len(corpus)
    work: queue.Queue = queue.Queue()
    for i in range(len(corpus)):
        work.put(i)

    def worker() -> None:
        conn: Conn | None = None
        while True:
            try:
                i = work.get_nowait()
            except queue.Empty:
                break
            req = corpus[i]
            head, body, odd = built[i]
            method = (req.get("method") or "GET").upper()
            status = None
            err = None
            snippet = ""
            rsn = ""
            t0 = time.monotonic()
            for attempt in range(2):
                if odd and conn is not None:
                    conn.close()
                    conn = None
                fresh = conn is None
                try:
                    if conn is None:
                        conn = Conn(host, port, ctx, args.sni, args.timeout)
                except (OSError, ssl.SSLError) as e:
                    err = "error"
                    snippet = f"connect: {e}"
                    break
                conn.deadline = time.monotonic() + args.timeout
                conn.got = False
                complete = conn.send_request(head, body)
                try:
                    status, hdrs, rbody, keep = conn.read_response(method)
                    if status < 200 or status >= 300:
                        text = rbody[:8192].decode("utf-8", "replace")
                        rsn = reason(status, text)
                        snippet = text[:SNIPPET]
                    if odd or not complete or not keep:
                        conn.close()
                        conn = None
                    break
                except NoResponse as e:
                    conn_got = conn.got
                    conn.close()
                    conn = None
                    # A reused keep-alive connection may have been closed by
                    # the server before we wrote (e.g. after refusing the
                    # previous request): nothing came back, so retry once on
                    # a fresh connection.
                    if not fresh and attempt == 0 and not conn_got:
                        continue
                    err = "no_response"
                    snippet = str(e)
                    break
                except (socket.timeout, TimeoutError):
                    conn.close()
                    conn = None
                    err = "timeout"
                    break
                except (OSError, ssl.SSLError, ValueError) as e:
                    conn_got = conn.got
                    conn.close()
                    conn = None
                    if not fresh and attempt == 0 and not conn_got:
                        continue
                    err = "no_response"
                    snippet = f"{type(e).__name__}: {e}"
                    break
            results[i] = {
                "i": i,
                "kind": req.get("kind"),
                "category": req.get("category"),
                "method": method,
                "action": req.get("action"),
                "placement": req.get("placement"),
                "path": (req.get("path") or "")[:200],
                "status": status,
                "outcome": classify(status, err),
                "odd": odd,
                "ms": round((time.monotonic() - t0) * 1000, 2),
                "reason": rsn,
                "detail": snippet,
            }
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results  # type: ignore[return-value]


def rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def summarize(results: list[dict]) -> dict:
    out: dict = {}
    for kind in ("attack", "benign"):
        rows = [r for r in results if r["kind"] == kind]
        cats: dict = {}
        places: dict = {}
        for r in rows:
            cats.setdefault(r["category"], collections.Counter())[r["outcome"]] += 1
            places.setdefault(r.get("placement") or "-", collections.Counter())[r["outcome"]] += 1
        refused = sum(1 for r in rows if r["outcome"] == "refused")
        key = "detected" if kind == "attack" else "false_positives"
        not_fwd = sum(1 for r in rows if r["outcome"] != "passed")
        out[kind] = {
            "total": len(rows),
            key: refused,
            "rate": rate(refused, len(rows)),
            # Looser: anything but a 2xx (other 4xx/5xx, closed, timed out).
            "not_forwarded": not_fwd,
            "not_forwarded_rate": rate(not_fwd, len(rows)),
            "outcomes": dict(collections.Counter(r["outcome"] for r in rows)),
            "statuses": dict(collections.Counter(str(r["status"]) for r in rows)),
            "refusal_reasons": dict(collections.Counter(r["reason"] for r in rows if r["outcome"] == "refused").most_common(25)),
            "by_category": {
                cat: {"total": sum(c.values()), key: c["refused"], "rate": rate(c["refused"], sum(c.values())), "outcomes": dict(c)}
                for cat, c in sorted(cats.items())
            },
            "by_placement": {
                pl: {"total": sum(c.values()), key: c["refused"], "rate": rate(c["refused"], sum(c.values())), "outcomes": dict(c)}
                for pl, c in sorted(places.items())
            },
        }
    out["unauthenticated"] = sum(1 for r in results if r["outcome"] == "unauth")
    out["rate_limited"] = sum(1 for r in results if r["outcome"] == "rate_limited")
    out["no_answer"] = sum(1 for r in results if r["outcome"] in ("no_response", "timeout", "error"))
    return out


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def print_table(name: str, s: dict, f) -> None:
    print(f"\n== {name}", file=f)
    for kind, key, label in (("attack", "detected", "detected"), ("benign", "false_positives", "refused (FP)")):
        k = s[kind]
        print(f"  {kind}: {k['total']} requests, {label} {k[key]} = {pct(k['rate'])}; outcomes {k['outcomes']}", file=f)
        for cat, c in k["by_category"].items():
            other = {o: n for o, n in c["outcomes"].items() if o != "refused"}
            print(f"    {cat:<22} {c[key]:>5}/{c['total']:<5} {pct(c['rate']):>7}   {other}", file=f)
    print(f"  401: {s['unauthenticated']}   429: {s['rate_limited']}   no answer: {s['no_answer']}", file=f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="JSON-lines corpus file ('-' = stdin)")
    ap.add_argument("--target", action="append", required=True, metavar="NAME=HOST:PORT")
    ap.add_argument("--ca", required=True, help="CA certificate (PEM) that signed the gateways' certificates")
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--out", help="summary JSON (default: stdout)")
    ap.add_argument("--details", help="per-request results, JSON lines (target, i, kind, category, status, outcome, ...)")
    args = ap.parse_args()

    src = sys.stdin if args.corpus == "-" else open(args.corpus, encoding="utf-8")
    corpus = []
    for n, line in enumerate(src, 1):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            print(f"corpus line {n}: {e}", file=sys.stderr)
            return 1
        if r.get("kind") not in ("attack", "benign"):
            print(f"corpus line {n}: kind must be attack or benign", file=sys.stderr)
            return 1
        corpus.append(r)
    if not corpus:
        print("empty corpus", file=sys.stderr)
        return 1
    built = [build_request(r) for r in corpus]

    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["http/1.1"])

    cats = collections.Counter((r["kind"], r.get("category")) for r in corpus)
    summary: dict = {
        "corpus": {
            "file": args.corpus,
            "requests": len(corpus),
            "attack": sum(1 for r in corpus if r["kind"] == "attack"),
            "benign": sum(1 for r in corpus if r["kind"] == "benign"),
            "odd_framing": sum(1 for b in built if b[2]),
            "categories": {f"{k}/{c}": n for (k, c), n in sorted(cats.items())},
        },
        "refused_statuses": sorted(REFUSED),
        "targets": {},
    }
    det = open(args.details, "w", encoding="utf-8") if args.details else None
    for spec in args.target:
        name, _, hp = spec.partition("=")
        host, _, port = hp.rpartition(":")
        t0 = time.monotonic()
        res = replay_target(name, host, int(port), corpus, built, args, ctx)
        s = summarize(res)
        s["elapsed_s"] = round(time.monotonic() - t0, 2)
        summary["targets"][name] = s
        print_table(f"{name} ({len(corpus)} requests in {s['elapsed_s']} s)", s, sys.stderr)
        if det:
            for r in res:
                det.write(json.dumps({"target": name, **r}) + "\n")
    if det:
        det.close()
    text = json.dumps(summary, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
