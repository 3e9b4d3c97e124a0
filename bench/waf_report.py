#!/usr/bin/env python3
"""Summary of a bench/waf.sh run: prints a markdown report and writes the
machine-readable results JSON. Python 3.11 standard library only.

Inputs (written by bench/waf.sh):
  --load FILE            TSV: target run rps p50_ms p99_ms non2xx socket_errors requests cpu_s [other_processes_cpu_s]
  --corpus-summary FILE  the JSON written by bench/waf_replay.py (optional)
  --skip FILE            TSV: target reason (gateways that did not run)
  --meta KEY=VALUE       run metadata (repeatable)
  --attach NAME=FILE     embed a generated config in the results (repeatable)
  --out FILE             results JSON; the markdown report goes next to it (.md)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

ORDER = ["nginx", "modsec", "rampart"]
LABEL = {
    "nginx": "nginx (TLS proxy, no WAF)",
    "modsec": "nginx + ModSecurity + CRS",
    "rampart": "Rampart (validation + detection + limits)",
}


def num(s: str):
    try:
        return float(s)
    except ValueError:
        return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def f0(x):
    return "n/a" if x is None else f"{x:,.0f}"


def f2(x):
    return "n/a" if x is None else f"{x:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", required=True)
    ap.add_argument("--corpus-summary", default="")
    ap.add_argument("--skip", default="")
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--attach", action="append", default=[], metavar="NAME=FILE",
                    help="a config file to embed in the results (repeatable)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    configs = {}
    for kv in a.attach:
        name, _, path = kv.partition("=")
        try:
            with open(path, encoding="utf-8") as f:
                configs[name] = f.read()
        except OSError:
            pass

    meta = {}
    for kv in a.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    modsec_changes = []
    if meta.get("modsec_changes_file"):
        with open(meta.pop("modsec_changes_file"), encoding="utf-8") as f:
            modsec_changes = [l.rstrip("\n") for l in f if l.strip()]

    runs: dict[str, list[dict]] = {}
    with open(a.load, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 9:
                continue
            t, run, rps, p50, p99, non2xx, sockerr, reqs, cpu = p[:9]
            others = num(p[9]) if len(p) > 9 else None
            runs.setdefault(t, []).append(
                {
                    "run": int(run),
                    "rps": num(rps),
                    "p50_ms": num(p50),
                    "p99_ms": num(p99),
                    "non_2xx": int(non2xx) if non2xx.isdigit() else None,
                    "socket_errors": int(sockerr) if sockerr.isdigit() else None,
                    "requests": int(reqs) if reqs.isdigit() else None,
                    "gateway_cpu_s": num(cpu),
                    "other_processes_cpu_s": others,
                }
            )
    load = {}
    for t, rs in runs.items():
        cpu_us = [
            r["gateway_cpu_s"] * 1e6 / r["requests"] if r["gateway_cpu_s"] is not None and r["requests"] else None
            for r in rs
        ]
        load[t] = {
            "runs": rs,
            "median_rps": median([r["rps"] for r in rs]),
            "median_p50_ms": median([r["p50_ms"] for r in rs]),
            "median_p99_ms": median([r["p99_ms"] for r in rs]),
            "median_gateway_cpu_us_per_request": round(median(cpu_us), 1) if median(cpu_us) is not None else None,
            "non_2xx_total": sum(r["non_2xx"] or 0 for r in rs),
            "socket_errors_total": sum(r["socket_errors"] or 0 for r in rs),
        }

    corpus = None
    if a.corpus_summary:
        with open(a.corpus_summary, encoding="utf-8") as f:
            corpus = json.load(f)
    skipped = {}
    if a.skip:
        with open(a.skip, encoding="utf-8") as f:
            for line in f:
                t, _, why = line.rstrip("\n").partition("\t")
                if t:
                    skipped[t] = why

    L = lambda t, k: load.get(t, {}).get(k)  # noqa: E731
    C = corpus["targets"] if corpus else {}
    det = lambda t: C.get(t, {}).get("attack", {}).get("rate")  # noqa: E731
    fp = lambda t: C.get(t, {}).get("benign", {}).get("rate")  # noqa: E731
    targets = {
        "rampart_rps_vs_modsec": {"value": ratio(L("rampart", "median_rps"), L("modsec", "median_rps")), "target": ">= 10"},
        "rampart_rps_vs_nginx": {"value": ratio(L("rampart", "median_rps"), L("nginx", "median_rps")), "target": ">= 0.8"},
        "modsec_rps_vs_nginx": {"value": ratio(L("modsec", "median_rps"), L("nginx", "median_rps")), "target": None},
        "rampart_p99_vs_nginx": {"value": ratio(L("rampart", "median_p99_ms"), L("nginx", "median_p99_ms")), "target": None},
        "detection_rampart_vs_modsec": {"value": [det("rampart"), det("modsec")], "target": "rampart > modsec"},
        "false_positives_rampart_vs_modsec": {"value": [fp("rampart"), fp("modsec")], "target": "rampart < modsec"},
    }

    def met(name):
        v = targets[name]["value"]
        if name == "rampart_rps_vs_modsec":
            return None if v is None else v >= 10
        if name == "rampart_rps_vs_nginx":
            return None if v is None else v >= 0.8
        if name == "detection_rampart_vs_modsec":
            return None if None in v else v[0] > v[1]
        if name == "false_positives_rampart_vs_modsec":
            return None if None in v else v[0] < v[1]
        return None

    for name in targets:
        targets[name]["met"] = met(name)

    result = {
        "benchmark": "bench/waf.sh (issue 7)",
        "meta": meta,
        "modsecurity_changes_from_debian_defaults": modsec_changes,
        "skipped": skipped,
        "load": load,
        "corpus": corpus,
        "targets": targets,
        "configs": configs,
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    # ---------------------------------------------------------------- markdown
    o = []
    o.append(f"# WAF benchmark — {meta.get('date', '')}")
    o.append("")
    o.append(f"Command: `{meta.get('invocation', '')}` (repo at {meta.get('git', '?')})")
    o.append("")
    o.append(f"- Host: {meta.get('host', '?')}; 1-min load average before the run: {meta.get('loadavg_start', '?')}")
    o.append(f"- **wrk and the gateways share the same {meta.get('cores', '?')} cores**: absolute numbers are bounded by that; compare ratios.")
    o.append(f"- Load: `{meta.get('wrk', '')}`, {meta.get('warmup_s')} s warm-up before each run, "
             f"{meta.get('runs')} interleaved runs per gateway, medians reported. Body: `{meta.get('order_body', '')}`")
    o.append(f"- Versions: {meta.get('v_nginx')}; {meta.get('v_modsecurity')}; {meta.get('v_crs')}; {meta.get('v_rampart')}; {meta.get('v_wrk')}; {meta.get('v_openssl')}")
    if meta.get("rampart_waf_mode", "block") != "block" or meta.get("rampart_limits", "1") != "1":
        o.append(f"- **Diagnostic run**: Rampart with [waf] mode = \"{meta.get('rampart_waf_mode')}\", "
                 f"limits {'on' if meta.get('rampart_limits') == '1' else 'off'} — not the issue's configuration.")
    if corpus:
        cc = corpus["corpus"]
        o.append(f"- Corpus: {cc['requests']} requests ({cc['attack']} attack, {cc['benign']} benign; "
                 f"{cc['odd_framing']} with unusual framing sent on their own connection) from `{meta.get('corpus_source')}`, "
                 f"replayed one by one over TLS ({meta.get('replay_workers')} keep-alive connections). "
                 "Detected / false positive = refused by the gateway with 400, 403, 413, 414 or 431; "
                 "\"not forwarded\" = any answer but 2xx, or none (other 4xx/5xx, closed, timed out).")
    o.append("")
    o.append("| Gateway | req/s | p50 (ms) | p99 (ms) | gateway CPU (µs/req) | non-2xx under load | attacks detected | attacks not forwarded | benign refused (FP) | 401 | 429 | no answer |")
    o.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in ORDER:
        if t not in load and t not in C:
            continue
        c = C.get(t)
        o.append(
            f"| {LABEL[t]} | {f0(L(t, 'median_rps'))} | {f2(L(t, 'median_p50_ms'))} | {f2(L(t, 'median_p99_ms'))} | "
            f"{f0(L(t, 'median_gateway_cpu_us_per_request'))} | {L(t, 'non_2xx_total') if t in load else 'n/a'} | "
            + (f"{c['attack']['detected']}/{c['attack']['total']} = {pct(c['attack']['rate'])} | "
               f"{pct(c['attack'].get('not_forwarded_rate'))} | "
               f"{c['benign']['false_positives']}/{c['benign']['total']} = {pct(c['benign']['rate'])} | "
               f"{c['unauthenticated']} | {c['rate_limited']} | {c['no_answer']} |" if c else "n/a | n/a | n/a | n/a | n/a | n/a |")
        )
    if load:
        o.append("")
        o.append("Every run (req/s / p99 ms / CPU seconds used by other processes on the machine during the run — "
                 "kernel network time included, so never 0; much more than on a quiet run means someone else's work competed for the cores): " + "; ".join(
            f"{t}: " + ", ".join(
                f"{f0(r['rps'])} / {f2(r['p99_ms'])} / {f2(r.get('other_processes_cpu_s'))}"
                for r in load[t]["runs"])
            for t in ORDER if t in load))
    o.append("")
    o.append("Targets (issue 7):")
    o.append("")
    show = {True: "met", False: "MISSED", None: "n/a"}
    tr = targets
    o.append(f"- Rampart req/s ≥ 10× nginx+ModSecurity: {tr['rampart_rps_vs_modsec']['value']}× — {show[tr['rampart_rps_vs_modsec']['met']]}")
    o.append(f"- Rampart req/s ≥ 0.8× plain nginx TLS: {tr['rampart_rps_vs_nginx']['value']}× — {show[tr['rampart_rps_vs_nginx']['met']]}")
    o.append(f"- (nginx+ModSecurity req/s vs plain nginx: {tr['modsec_rps_vs_nginx']['value']}×; Rampart p99 vs nginx: {tr['rampart_p99_vs_nginx']['value']}×)")
    o.append(f"- Detection Rampart > ModSecurity: {pct(det('rampart'))} vs {pct(det('modsec'))} — {show[tr['detection_rampart_vs_modsec']['met']]}")
    o.append(f"- False positives Rampart < ModSecurity: {pct(fp('rampart'))} vs {pct(fp('modsec'))} — {show[tr['false_positives_rampart_vs_modsec']['met']]}")

    if corpus:
        names = [t for t in ORDER if t in C]
        for kind, key, title in (("attack", "detected", "Detection by category (attacks refused)"),
                                 ("benign", "false_positives", "False positives by category (benign requests refused)")):
            cats = sorted({cat for t in names for cat in C[t][kind]["by_category"]})
            if not cats:
                continue
            o.append("")
            o.append(f"### {title}")
            o.append("")
            o.append("| category | n | " + " | ".join(LABEL[t] for t in names) + " |")
            o.append("|---|---:|" + "---:|" * len(names))
            for cat in cats:
                n = next((C[t][kind]["by_category"][cat]["total"] for t in names if cat in C[t][kind]["by_category"]), 0)
                cells = []
                for t in names:
                    c = C[t][kind]["by_category"].get(cat)
                    cells.append("n/a" if not c else f"{c[key]} ({pct(c['rate'])})")
                o.append(f"| {cat} | {n} | " + " | ".join(cells) + " |")
            o.append("")
            o.append("Other outcomes (" + kind + "): " + "; ".join(
                f"{t}: {dict((k, v) for k, v in C[t][kind]['outcomes'].items() if k != 'refused')}" for t in names))
        o.append("")
        o.append("Most frequent refusal reasons (problem `code` / error page title):")
        o.append("")
        for t in names:
            for kind in ("attack", "benign"):
                rr = C[t][kind].get("refusal_reasons") or {}
                if rr:
                    top = ", ".join(f"{k or '?'} ×{v}" for k, v in list(rr.items())[:8])
                    o.append(f"- {t} ({kind}): {top}")
    if modsec_changes:
        o.append("")
        o.append("ModSecurity/CRS changes from the Debian packages' files: " + "; ".join(modsec_changes) + ".")
    if skipped:
        o.append("")
        o.append("Skipped:")
        for t, why in skipped.items():
            o.append(f"- {t}: {why}")
    o.append("")
    o.append(f"Per-request replay results: `{meta.get('details', 'none')}`; configs and logs: `{meta.get('workdir', '?')}`.")
    text = "\n".join(o) + "\n"
    md = a.out[:-5] + ".md" if a.out.endswith(".json") else a.out + ".md"
    with open(md, "w", encoding="utf-8") as f:
        f.write(text)
    print()
    print(text)
    print(f"[waf] report: {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
