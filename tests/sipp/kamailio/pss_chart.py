#!/usr/bin/env python3
"""PSS over time, lifeline against Kamailio: one SVG chart per call rate.

    tests/sipp/kamailio/pss_chart.py DIR [--out-dir OUT] [--target RATE=MB ...]

DIR is a compare.sh output directory: its run directories named
NNN-memory_<proxy>_rate=<R>_round=<K> each hold the pss.tsv that
tests/sipp/run.sh samples ("seconds since the first call<TAB>KiB", every
0.5 s). Writes OUT/pss-<R>.svg (OUT defaults to DIR) and prints, per run,
the peak and the steady-state PSS (the median of the samples in the run's
last 20 s), as a Markdown table. Standard library only: no plotting package
to install. The targets (dashed lines) default to 500=60 and 3000=150 MB.
"""

import argparse
import os
import re
import statistics
import sys

RUN_DIR = re.compile(r"^\d+-memory_(?P<proxy>[a-z]+)_rate=(?P<rate>\d+)_round=(?P<round>\d+)$")
COLOURS = {"lifeline": "#1f6fb4", "kamailio": "#e07b10"}
W, H = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 40, 50


def read_tsv(path):
    points = []
    with open(path) as f:
        next(f, None)  # header
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue
            t, kib = float(parts[0]), int(parts[1])
            if kib > 0 and t >= -1:
                points.append((t, kib / 1024))
    return points


def steady(points):
    if not points:
        return 0.0
    end = points[-1][0]
    tail = [mb for t, mb in points if t >= end - 20]
    return statistics.median(tail)


def nice_step(span, ticks=6):
    raw = span / ticks
    for m in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if m >= raw:
            return m
    return 1000 * (int(raw / 1000) + 1)


def svg_chart(rate, runs, target):
    t_max = max(max(t for t, _ in p) for _, _, p in runs)
    y_max = max(max(mb for _, mb in p) for _, _, p in runs)
    if target:
        y_max = max(y_max, target)
    y_max *= 1.1
    xs, ys = nice_step(t_max), nice_step(y_max)
    t_max = xs * (int(t_max / xs) + 1)
    y_max = ys * (int(y_max / ys) + 1)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(t):
        return LEFT + max(0.0, t) / t_max * pw

    def y(mb):
        return TOP + ph - mb / y_max * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">'
        f"PSS at {rate} calls/s (SIPp, 1 s calls)</text>",
    ]
    for i in range(int(y_max / ys) + 1):
        v = i * ys
        out.append(
            f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + pw}" y2="{y(v):.1f}" '
            f'stroke="#ddd"/><text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
        )
    for i in range(int(t_max / xs) + 1):
        v = i * xs
        out.append(
            f'<line x1="{x(v):.1f}" y1="{TOP + ph}" x2="{x(v):.1f}" y2="{TOP + ph + 4}" '
            f'stroke="#333"/><text x="{x(v):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{v:g}</text>'
        )
    out.append(
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" stroke="#333"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#333"/>'
        f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">seconds since the first call</text>'
        f'<text x="18" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + ph / 2})">PSS (MiB)</text>'
    )
    if target:
        out.append(
            f'<line x1="{LEFT}" y1="{y(target):.1f}" x2="{LEFT + pw}" y2="{y(target):.1f}" '
            f'stroke="#c00" stroke-dasharray="6 4"/>'
            f'<text x="{LEFT + pw - 4}" y="{y(target) - 5:.1f}" text-anchor="end" fill="#c00">'
            f"target {target:g} MiB</text>"
        )
    legend_y = TOP + 10
    for proxy, rnd, points in runs:
        colour = COLOURS.get(proxy, "#555")
        dash = ' stroke-dasharray="4 3"' if rnd != "1" else ""
        path = " ".join(f"{x(t):.1f},{y(mb):.1f}" for t, mb in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"{dash}/>'
        )
        out.append(
            f'<line x1="{LEFT + pw + 12}" y1="{legend_y}" x2="{LEFT + pw + 36}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{LEFT + pw + 42}" y="{legend_y + 4}">{proxy} #{rnd}</text>'
        )
        legend_y += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--out-dir")
    ap.add_argument("--target", action="append", default=[], help="RATE=MB")
    args = ap.parse_args()
    targets = {"500": 60.0, "3000": 150.0}
    for t in args.target:
        rate, mb = t.split("=", 1)
        targets[rate] = float(mb)
    by_rate = {}
    for name in sorted(os.listdir(args.dir)):
        m = RUN_DIR.match(name)
        tsv = os.path.join(args.dir, name, "pss.tsv")
        if not m or not os.path.exists(tsv):
            continue
        points = read_tsv(tsv)
        if points:
            by_rate.setdefault(m["rate"], []).append((m["proxy"], m["round"], points))
    if not by_rate:
        sys.exit(f"pss_chart.py: no memory runs with pss.tsv under {args.dir}")
    out_dir = args.out_dir or args.dir
    os.makedirs(out_dir, exist_ok=True)
    print("| calls/s | proxy | round | peak PSS (MiB) | steady-state PSS (MiB, median of the last 20 s) |")
    print("|---:|---|---:|---:|---:|")
    for rate in sorted(by_rate, key=int):
        runs = sorted(by_rate[rate], key=lambda r: (r[0] != "lifeline", r[0], r[1]))
        for proxy, rnd, points in runs:
            peak = max(mb for _, mb in points)
            print(f"| {rate} | {proxy} | {rnd} | {peak:.0f} | {steady(points):.0f} |")
        path = os.path.join(out_dir, f"pss-{rate}.svg")
        with open(path, "w") as f:
            f.write(svg_chart(rate, runs, targets.get(rate)))
        print(f"chart: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
