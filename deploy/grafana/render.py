#!/usr/bin/env python3
"""The Grafana dashboard drawn from a real run, as one SVG.

    deploy/grafana/render.py --lifeline target/release/lifeline --svg docs/dashboard.svg
    deploy/grafana/render.py --check

Without --check it runs tests/sipp/run.sh (SIPp trunks and caller, the
gateway, a trunk fault: by default the primary hung, SIGSTOP, a quarter of
the way in and resumed at three quarters), with Prometheus (the `prometheus`
binary, Debian's package) started here on 127.0.0.1 with a temporary
configuration and storage, scraping the gateway's /metrics every second and
evaluating deploy/alerts.yml. When the run ends it asks Prometheus' HTTP API
(/api/v1/query_range, step 1 s) the dashboard's own panel expressions, read
from deploy/grafana/lifeline.json, and draws the panels where the dashboard
puts them: time series, the trunk state timeline, the stat. The fault's
start and end are dashed lines; the alerts that fired are listed below.
Prometheus is stopped at the end (and on any error or signal); run.sh ends
its own processes. Grafana's variables are given as Grafana would for one
gateway scraped every second: $instance matches every instance,
$__rate_interval is 4s (four scrape intervals), $__range the run's length.

--check only checks the dashboard's PromQL: every expression, with the
variables so given, as a recording rule through `promtool check rules`
(CI runs it; no gateway, no Prometheus server).

Standard library only: no plotting package to install.
"""

import argparse
import html
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DASHBOARD = os.path.join(HERE, "lifeline.json")
ALERTS = os.path.join(ROOT, "deploy", "alerts.yml")
RUN_SH = os.path.join(ROOT, "tests", "sipp", "run.sh")

SCRAPE_S = 1
RATE_INTERVAL = "%ds" % (4 * SCRAPE_S)

# Grafana's classic palette and named colours.
PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1",
           "#BA43A9", "#705DA0", "#508642", "#CCA300", "#447EBC", "#C15C17"]
NAMED = {"green": "#56A64B", "red": "#E02F44", "yellow": "#F2CC0C", "blue": "#3274D9",
         "purple": "#A352CC", "orange": "#FF780A"}

# How the marks and the caption name run.sh's faults: (start, end).
FAULT_WORDS = {
    "kill": ("primary killed", "primary restarted"),
    "ring-kill": ("primary killed", "primary restarted"),
    "hang": ("primary hung", "primary resumed"),
    "flap": ("primary flapping", "primary steady"),
    "503": ("primary answers 503", "primary answers 200"),
    "stall": ("primary stalls", "primary answers"),
}

# Layout: Grafana's 24-column grid; a height unit is 30 px there too.
COL_W, ROW_H, MARGIN, HEADER = 50, 30, 20, 64
FONT = "font-family='Helvetica, Arial, sans-serif'"


def die(msg):
    print("render.py: " + msg, file=sys.stderr)
    sys.exit(2)


def substitute(expr, range_s):
    """Grafana's variables, as Grafana gives them for one gateway."""
    expr = expr.replace("${instance}", ".*").replace("$instance", ".*")
    expr = expr.replace("${__rate_interval}", RATE_INTERVAL).replace("$__rate_interval", RATE_INTERVAL)
    return expr.replace("${__range}", "%ds" % range_s).replace("$__range", "%ds" % range_s)


def panels(dashboard):
    out = []
    for p in dashboard["panels"]:
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


# ---- --check ----

def check(promtool):
    dash = json.load(open(DASHBOARD))
    rules = []
    for p in panels(dash):
        for t in p.get("targets", []):
            expr = substitute(t["expr"], 3600)
            rules.append((p["id"], t["refId"], expr))
    if not rules:
        die("no expressions in " + DASHBOARD)
    with tempfile.TemporaryDirectory(prefix="lifeline-dashboard-check.") as tmp:
        path = os.path.join(tmp, "dashboard-rules.yml")
        with open(path, "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for pid, ref, expr in rules:
                f.write("      - record: dashboard:panel%d_%s\n" % (pid, ref))
                f.write("        expr: %s\n" % json.dumps(expr))
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        sys.stdout.write(r.stdout.replace(path, "deploy/grafana/lifeline.json (as rules)"))
        sys.stderr.write(r.stderr.replace(path, "deploy/grafana/lifeline.json (as rules)"))
        if r.returncode != 0:
            sys.exit(1)
    print("dashboard: %d panels, %d expressions: PromQL checked" % (len(panels(dash)), len(rules)))


# ---- the run ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, path, **params):
    url = "http://127.0.0.1:%d%s?%s" % (port, path, urllib.parse.urlencode(params))
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError("%s: %s" % (path, body))
    return body["data"]


def query_range(port, expr, start, end):
    return api(port, "/api/v1/query_range", query=expr, start=start, end=end, step=SCRAPE_S)["result"]


class Processes:
    """What this script starts, stopped by PID (TERM, then KILL)."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log):
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((name, p))
        return p

    def stop(self):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def run(args, procs):
    out = args.out or tempfile.mkdtemp(prefix="lifeline-dashboard.")
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    sipp_dir = os.path.join(out, "sipp")
    prom_port = free_port()
    targets = os.path.join(out, "targets.json")
    with open(targets, "w") as f:
        f.write("[]\n")
    prom_cfg = os.path.join(out, "prometheus.yml")
    with open(prom_cfg, "w") as f:
        f.write("global:\n  scrape_interval: %ds\n  scrape_timeout: %ds\n  evaluation_interval: %ds\n"
                % (SCRAPE_S, SCRAPE_S, SCRAPE_S))
        f.write("rule_files:\n  - %s\n" % json.dumps(ALERTS))
        f.write("scrape_configs:\n  - job_name: lifeline\n    file_sd_configs:\n      - files: [%s]\n"
                % json.dumps(targets))
    prom_log = open(os.path.join(out, "prometheus.log"), "w")
    prom = procs.start("prometheus", [
        args.prometheus, "--config.file=" + prom_cfg,
        "--storage.tsdb.path=" + os.path.join(out, "prometheus-data"),
        "--web.listen-address=127.0.0.1:%d" % prom_port,
        "--storage.tsdb.retention.time=1d",
    ], prom_log)
    for _ in range(300):
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % prom_port, timeout=1).read()
            break
        except OSError:
            if prom.poll() is not None:
                die("prometheus exited; see " + prom_log.name)
            time.sleep(0.1)
    else:
        die("prometheus not ready after 30 s; see " + prom_log.name)

    argv = ["bash", RUN_SH, "--lifeline", args.lifeline, "--out", sipp_dir, "--no-capture",
            "--fault", args.fault, "--rate", str(args.rate), "--duration", str(args.duration)]
    run_log = open(os.path.join(out, "run.out"), "w")
    began = time.time()
    sipp = procs.start("run.sh", argv, run_log)
    # The gateway's admin address, from the configuration run.sh writes.
    cfg = os.path.join(sipp_dir, "lifeline.yaml")
    admin = None
    for _ in range(600):
        if os.path.exists(cfg):
            m = re.search(r"^admin:.*?(127\.0\.0\.1:\d+)", open(cfg).read(), re.M)
            if m:
                admin = m.group(1)
                break
        if sipp.poll() is not None:
            die("run.sh exited early; see " + run_log.name)
        time.sleep(0.1)
    if not admin:
        die("no admin address in " + cfg)
    tmp = targets + ".tmp"
    with open(tmp, "w") as f:
        json.dump([{"targets": [admin], "labels": {"instance": "gw-a"}}], f)
    os.replace(tmp, targets)
    print("render.py: Prometheus on 127.0.0.1:%d scraping %s; run.sh running (%s)" % (prom_port, admin, out))
    rc = sipp.wait()
    run_log.close()
    result = ""
    for line in open(run_log.name):
        if line.startswith("result:"):
            result = line.strip()
    if rc != 0 or not result:
        die("run.sh failed (exit %d); see %s" % (rc, run_log.name))
    print(result)
    time.sleep(2 * SCRAPE_S)  # the last scrape and rule evaluation

    # The range the gateway was scraped over.
    up = query_range(prom_port, 'up{job="lifeline"} == 1', began - 5, time.time())
    times = [float(t) for s in up for t, _ in s["values"]]
    if not times:
        die("Prometheus never scraped the gateway; see " + prom_log.name)
    start, end = min(times), max(times)
    timeline = {"kind": args.fault}
    tl = os.path.join(sipp_dir, "timeline")
    if os.path.exists(tl):
        for line in open(tl):
            w = line.split()
            if len(w) == 2 and w[0] in ("fault", "recover"):
                timeline.setdefault(w[0], int(w[1]) / 1000.0)
    dash = json.load(open(DASHBOARD))
    data = {}
    for p in panels(dash):
        for t in p.get("targets", []):
            expr = substitute(t["expr"], int(round(end - start)))
            if t.get("instant") or p["type"] == "stat":
                res = api(prom_port, "/api/v1/query", query=expr, time=end)["result"]
                series = [(s["metric"], [(end, s["value"][1])]) for s in res]
            else:
                series = [(s["metric"], s["values"]) for s in query_range(prom_port, expr, start, end)]
            data[(p["id"], t["refId"])] = series
    fired = []
    for s in query_range(prom_port, 'ALERTS{alertstate="firing"}', start, end + 5):
        m = s["metric"]
        first = float(s["values"][0][0])
        extra = ", ".join("%s=%s" % (k, v) for k, v in sorted(m.items())
                          if k not in ("__name__", "alertname", "alertstate", "severity", "instance"))
        fired.append((first, "%s (%s%s) from %.0f s" % (m["alertname"], m.get("severity", ""),
                                                        ", " + extra if extra else "", first - start)))
    fired.sort()
    svg = draw(dash, data, start, end, timeline, result, [f for _, f in fired], args)
    with open(args.svg, "w") as f:
        f.write(svg)
    print("render.py: wrote %s (%d panels, %.0f s); logs in %s" % (args.svg, len(panels(dash)), end - start, out))


# ---- drawing ----

def nice(span, ticks=4):
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def fmt(v, unit):
    if unit == "percentunit":
        return "%.0f%%" % (v * 100)
    if unit == "s":
        if v == 0:
            return "0"
        return "%.0f ms" % (v * 1000) if abs(v) < 1 else "%.3g s" % v
    suffix = "/s" if unit == "reqps" else ""
    a = abs(v)
    if a >= 1e6:
        s = "%.3gM" % (v / 1e6)
    elif a >= 1e3:
        s = "%.3gk" % (v / 1e3)
    else:
        s = "%.3g" % v
    return s + suffix


def legend_text(fmt_str, metric):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt_str or "").strip() \
        or json.dumps(metric)


def override_props(panel, name):
    props = {}
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o.get("matcher", {}).get("id") == "byName" and o["matcher"].get("options") == name:
            for prop in o.get("properties", []):
                props[prop["id"]] = prop["value"]
    return props


def colour(c):
    return NAMED.get(c, c)


def esc(s):
    return html.escape(str(s), quote=True)


def series_of(panel, data):
    """[(name, points[(t, v)], colour, right_axis)] of a panel."""
    out = []
    for t in panel.get("targets", []):
        for metric, values in data.get((panel["id"], t["refId"]), []):
            pts = []
            for ts, v in values:
                v = float(v)
                pts.append((float(ts), v if math.isfinite(v) else None))
            out.append([legend_text(t.get("legendFormat"), metric), pts])
    result = []
    for i, (name, pts) in enumerate(out):
        props = override_props(panel, name)
        c = props.get("color", {}).get("fixedColor")
        result.append((name, pts, colour(c) if c else PALETTE[i % len(PALETTE)],
                       props.get("custom.axisPlacement") == "right"))
    return result


def legend_rows(names, width):
    rows, row, x = [], [], 0
    for n in names:
        w = 22 + 6.2 * len(n)
        if row and x + w > width:
            rows.append(row)
            row, x = [], 0
        row.append((n, x))
        x += w + 12
    if row:
        rows.append(row)
    return rows


def draw_marks(parts, x0, x1, y0, y1, tx, timeline, labels):
    words = FAULT_WORDS.get(timeline.get("kind"), ("fault", "recovered"))
    for key, text in (("fault", words[0]), ("recover", words[1])):
        if key in timeline:
            x = tx(timeline[key])
            if x0 <= x <= x1:
                parts.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#555' "
                             "stroke-dasharray='4 3' stroke-width='1'/>" % (x, y0, x, y1))
                if labels:
                    parts.append("<text x='%.1f' y='%.1f' font-size='10' fill='#555'>%s</text>"
                                 % (x + 3, y0 + 10, text))


def time_axis(parts, x0, x1, y, start, end):
    step = nice(end - start, 6)
    t = 0.0
    while t <= end - start + 1e-9:
        x = x0 + (x1 - x0) * t / max(end - start, 1e-9)
        parts.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#999'/>" % (x, y, x, y + 4))
        parts.append("<text x='%.1f' y='%.1f' font-size='10' fill='#555' text-anchor='middle'>%g s</text>"
                     % (x, y + 14, t))
        t += step


def draw_timeseries(panel, data, box, start, end, timeline):
    x, y, w, h = box
    parts = []
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    series = series_of(panel, data)
    # The legend: when some series moved, those, and how many stayed at 0
    # (a picture has no hover to tell them apart); else every series.
    moved = [s[0] for s in series if any(v for _, v in s[1])]
    names = moved + (["%d more at 0" % (len(series) - len(moved))] if len(moved) < len(series) else []) \
        if moved else [s[0] for s in series]
    rows = legend_rows(names, w - 20)
    legend_h = 16 * len(rows)
    right = any(s[3] for s in series)
    px0, px1 = x + 52, x + w - (48 if right else 12)
    py0, py1 = y + 30, y + h - 24 - legend_h

    def scale(sel):
        vals = [v for s in series if s[3] == sel for _, v in s[1] if v is not None]
        lo = min([0.0] + vals)
        hi = max([0.0] + vals)
        if sel is False and "max" in defaults:
            hi = max(hi, defaults["max"])
        if hi <= lo:
            hi = lo + 1
        step = nice(hi - lo)
        hi = math.ceil(hi / step - 1e-9) * step
        return lo, hi, step

    def tx(t):
        return px0 + (px1 - px0) * (t - start) / max(end - start, 1e-9)

    scales = {False: scale(False)}
    if right:
        scales[True] = scale(True)
    for sel, (lo, hi, step) in scales.items():
        v = lo
        while v <= hi + 1e-9:
            yy = py1 - (py1 - py0) * (v - lo) / (hi - lo)
            if not sel:
                parts.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e4e4e4'/>" % (px0, yy, px1, yy))
                parts.append("<text x='%.1f' y='%.1f' font-size='10' fill='#555' text-anchor='end'>%s</text>"
                             % (px0 - 4, yy + 3, esc(fmt(v, unit))))
            else:
                parts.append("<text x='%.1f' y='%.1f' font-size='10' fill='#555'>%s</text>"
                             % (px1 + 4, yy + 3, esc(fmt(v, "short"))))
            v += step
    # Thresholds drawn as a line (core busy's 0.7).
    if defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode") == "line":
        lo, hi, _ = scales[False]
        for st in defaults.get("thresholds", {}).get("steps", []):
            if st.get("value") is not None and lo <= st["value"] <= hi:
                yy = py1 - (py1 - py0) * (st["value"] - lo) / (hi - lo)
                parts.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='6 3'/>"
                             % (px0, yy, px1, yy, colour(st["color"])))
    parts.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#999'/>" % (px0, py1, px1, py1))
    time_axis(parts, px0, px1, py1, start, end)
    draw_marks(parts, px0, px1, py0, py1, tx, timeline, False)
    step_after = defaults.get("custom", {}).get("lineInterpolation") == "stepAfter"
    for name, pts, c, on_right in series:
        lo, hi, _ = scales[on_right]
        segs, cur, prev = [], [], None
        for t, v in pts:
            if v is None or (prev is not None and t - prev > 2.5 * SCRAPE_S):
                if cur:
                    segs.append(cur)
                cur = []
            if v is not None:
                xx, yy = tx(t), py1 - (py1 - py0) * (v - lo) / (hi - lo)
                if step_after and cur:
                    cur.append((xx, cur[-1][1]))
                cur.append((xx, yy))
            prev = t
        if cur:
            segs.append(cur)
        for seg in segs:
            if len(seg) == 1:
                parts.append("<circle cx='%.1f' cy='%.1f' r='1.5' fill='%s'/>" % (seg[0][0], seg[0][1], c))
            else:
                parts.append("<polyline fill='none' stroke='%s' stroke-width='1.5' points='%s'/>"
                             % (c, " ".join("%.1f,%.1f" % p for p in seg)))
    colours = {s[0]: s[2] for s in series}
    for i, row in enumerate(rows):
        ly = y + h - 8 - 16 * (len(rows) - 1 - i)
        for name, lx in row:
            if name in colours:
                parts.append("<rect x='%.1f' y='%.1f' width='14' height='3' fill='%s'/>"
                             % (x + 10 + lx, ly - 4, colours[name]))
            parts.append("<text x='%.1f' y='%.1f' font-size='11' fill='#333'>%s</text>"
                         % (x + 28 + lx, ly, esc(name)))
    if not series:
        parts.append("<text x='%.1f' y='%.1f' font-size='12' fill='#888' text-anchor='middle'>No data</text>"
                     % ((px0 + px1) / 2, (py0 + py1) / 2))
    return parts


def mapping_of(panel, v):
    for m in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        if m.get("type") == "value":
            hit = m["options"].get("%g" % v)
            if hit:
                return hit.get("text", "%g" % v), colour(hit.get("color", "#888"))
    return "%g" % v, "#888"


def draw_state_timeline(panel, data, box, start, end, timeline):
    x, y, w, h = box
    parts = []
    series = series_of(panel, data)
    label_w = 12 + max([6.5 * len(s[0]) for s in series] + [40])
    px0, px1 = x + label_w, x + w - 12
    py0, py1 = y + 30, y + h - 44

    def tx(t):
        return px0 + (px1 - px0) * (t - start) / max(end - start, 1e-9)

    n = max(len(series), 1)
    row_h = (py1 - py0) / n
    for i, (name, pts, _, _) in enumerate(series):
        ry = py0 + i * row_h + row_h * 0.1
        rh = row_h * 0.8
        parts.append("<text x='%.1f' y='%.1f' font-size='11' fill='#333' text-anchor='end'>%s</text>"
                     % (px0 - 6, ry + rh / 2 + 4, esc(name)))
        runs = []
        for j, (t, v) in enumerate(pts):
            t_next = pts[j + 1][0] if j + 1 < len(pts) else t + SCRAPE_S
            if t_next - t > 2.5 * SCRAPE_S:
                t_next = t + SCRAPE_S
            if v is None:
                continue
            if runs and runs[-1][2] == v and abs(runs[-1][1] - t) < 1e-6:
                runs[-1][1] = t_next
            else:
                runs.append([t, t_next, v])
        for t0, t1, v in runs:
            text, c = mapping_of(panel, v)
            x0, x1 = tx(t0), min(tx(t1), px1)
            parts.append("<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' fill-opacity='0.8'/>"
                         % (x0, ry, max(x1 - x0, 0.5), rh, c))
            if x1 - x0 > 6.5 * len(text) + 8:
                parts.append("<text x='%.1f' y='%.1f' font-size='11' fill='#fff'>%s</text>"
                             % (x0 + 4, ry + rh / 2 + 4, esc(text)))
    time_axis(parts, px0, px1, py1 + 2, start, end)
    draw_marks(parts, px0, px1, py0 - 2, py1, tx, timeline, True)
    # The state legend.
    lx = x + 10
    seen = []
    for m in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        for key, opt in sorted(m.get("options", {}).items(), key=lambda kv: kv[1].get("index", 0)):
            seen.append((opt.get("text", key), colour(opt.get("color", "#888"))))
    for text, c in seen:
        parts.append("<rect x='%.1f' y='%.1f' width='10' height='10' fill='%s'/>" % (lx, y + h - 18, c))
        parts.append("<text x='%.1f' y='%.1f' font-size='11' fill='#333'>%s</text>" % (lx + 14, y + h - 9, esc(text)))
        lx += 24 + 6.5 * len(text)
    if not series:
        parts.append("<text x='%.1f' y='%.1f' font-size='12' fill='#888'>No data</text>" % (px0, (py0 + py1) / 2))
    return parts


def draw_stat(panel, data, box):
    x, y, w, h = box
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    vals = [float(v) for (pid, _), ss in data.items() if pid == panel["id"] for _, pts in ss for _, v in pts]
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return ["<text x='%.1f' y='%.1f' font-size='14' fill='#888' text-anchor='middle'>No data</text>"
                % (x + w / 2, y + h / 2)]
    v = vals[-1]
    c = "#888"
    for st in defaults.get("thresholds", {}).get("steps", []):
        if st.get("value") is None or v >= st["value"]:
            c = colour(st["color"])
    decimals = defaults.get("decimals")
    text = ("%.*f" % (decimals, v)) if decimals is not None else fmt(v, defaults.get("unit", "short"))
    return ["<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' rx='2'/>" % (x + 8, y + 28, w - 16, h - 36, c),
            "<text x='%.1f' y='%.1f' font-size='56' fill='#fff' text-anchor='middle' font-weight='bold'>%s</text>"
            % (x + w / 2, y + 28 + (h - 36) / 2 + 20, esc(text))]


def draw(dash, data, start, end, timeline, result, fired, args):
    ps = panels(dash)
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in ps)
    width = 2 * MARGIN + 24 * COL_W
    foot = 30 + 16 * (len(fired) + 2)
    height = HEADER + bottom * ROW_H + foot
    out = ["<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d' %s>"
           % (width, height, width, height, FONT),
           "<rect width='100%' height='100%' fill='#f4f5f5'/>"]
    fault = ""
    if "fault" in timeline:
        words = FAULT_WORDS.get(args.fault, ("fault", "recovered"))
        fault = "; %s at %.0f s" % (words[0], timeline["fault"] - start)
        if "recover" in timeline:
            fault += ", %s at %.0f s" % (words[1], timeline["recover"] - start)
    out.append("<text x='%d' y='28' font-size='18' font-weight='bold' fill='#222'>%s</text>"
               % (MARGIN, esc("%s (deploy/grafana/lifeline.json), from a real run" % dash.get("title", "dashboard"))))
    out.append("<text x='%d' y='48' font-size='12' fill='#444'>%s</text>" % (MARGIN, esc(
        "SIPp: %d emergency calls/s for %d s through the gateway%s (dashed lines). "
        "Prometheus scraping every %d s; $__rate_interval = %s. %s"
        % (args.rate, args.duration, fault, SCRAPE_S, RATE_INTERVAL,
           time.strftime("%Y-%m-%d", time.gmtime(start))))))
    for p in ps:
        g = p["gridPos"]
        box = (MARGIN + g["x"] * COL_W + 4, HEADER + g["y"] * ROW_H + 4, g["w"] * COL_W - 8, g["h"] * ROW_H - 8)
        x, y, w, h = box
        out.append("<g>")
        out.append("<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#fff' stroke='#d8d9da' rx='3'/>" % box)
        out.append("<text x='%.1f' y='%.1f' font-size='13' font-weight='bold' fill='#222'>%s</text>"
                   % (x + 10, y + 18, esc(p.get("title", ""))))
        if p["type"] == "timeseries":
            out.extend(draw_timeseries(p, data, box, start, end, timeline))
        elif p["type"] == "state-timeline":
            out.extend(draw_state_timeline(p, data, box, start, end, timeline))
        elif p["type"] == "stat":
            out.extend(draw_stat(p, data, box))
        out.append("</g>")
    y = HEADER + bottom * ROW_H + 20
    summary = " ".join(w for w in result.split() if re.match(
        r"^(attempted|completed|failed|failed_reasons|switch_ms|failback_ms|setup_p99_ms)=", w))
    out.append("<text x='%d' y='%d' font-size='12' fill='#333'>%s</text>"
               % (MARGIN, y, esc("tests/sipp/run.sh: " + summary)))
    y += 18
    out.append("<text x='%d' y='%d' font-size='12' fill='#333'>%s</text>" % (MARGIN, y, esc(
        "Alerts that fired (deploy/alerts.yml, evaluated every %d s):%s" % (SCRAPE_S, "" if fired else " none"))))
    for f in fired:
        y += 16
        out.append("<text x='%d' y='%d' font-size='12' fill='#333'>%s</text>" % (MARGIN + 16, y, esc(f)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the dashboard's PromQL with promtool")
    ap.add_argument("--lifeline", help="the gateway binary (default: cargo build --release, as run.sh does)")
    ap.add_argument("--svg", default=os.path.join(ROOT, "docs", "dashboard.svg"), help="where the picture goes")
    ap.add_argument("--out", help="logs, Prometheus' data and run.sh's directory (default: a new one in /tmp)")
    ap.add_argument("--fault", default="hang", help="run.sh --fault: kill, hang ... (default hang)")
    ap.add_argument("--rate", type=int, default=50, help="calls per second (default 50)")
    ap.add_argument("--duration", type=int, default=60, help="seconds of calls (default 60)")
    ap.add_argument("--prometheus", default="prometheus", help="the Prometheus server binary")
    ap.add_argument("--promtool", default="promtool", help="promtool, for --check")
    args = ap.parse_args()
    if args.check:
        if not shutil.which(args.promtool):
            die("promtool not found (Debian: apt-get install prometheus)")
        check(args.promtool)
        return
    if not shutil.which(args.prometheus):
        die("prometheus not found (Debian: apt-get install --no-install-recommends prometheus)")
    if not args.lifeline:
        subprocess.run(["cargo", "build", "--release", "-p", "lifeline", "--quiet"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        args.lifeline = os.path.join(target, "release", "lifeline")
    args.lifeline = os.path.abspath(args.lifeline)
    procs = Processes()

    def on_signal(signum, _frame):
        procs.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(args, procs)
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
