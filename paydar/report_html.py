"""The drill's `report.html`: one self-contained page (inline CSS and SVG, no script, no network).

Hand-written SVG rather than a charting library: the page must open offline on an
air-gapped operator's laptop, and two simple chart kinds (a timeline, bars) don't justify
a bundled JavaScript library.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_html"]

WIDTH, HEIGHT, PAD = 900, 120, 30


def render_html(report: dict[str, Any]) -> str:
    """The page for one drill report (``DrillReport.as_dict()`` with ``timeline`` and fault windows)."""
    passed = bool(report.get("passed"))
    verdict = ("PASSED: every acknowledged write was readable through every gateway and every experiment held"
               if passed else f"FAILED: {report.get('verdict_reason') or 'see the experiments below'}")
    experiments = report.get("experiments", [])
    origin = float(report.get("timeline_origin") or 0.0)
    sections = [
        f"<h1>Paydar drill</h1><p class='verdict {'ok' if passed else 'bad'}'>{escape(verdict)}</p>",
        _figures(report),
        "<h2>Citizen availability per region</h2>"
        "<p>Each point: share of write-then-read requests served in that second through the region's gateway. "
        "Shaded: an experiment's fault window (attack to end of rollback).</p>",
        *(_timeline(region, points, experiments, origin) for region, points in report.get("timeline", {}).items()),
        "<h2>Experiments</h2>", _experiments(experiments),
        "<h2>Time until citizens were served again</h2>", _recovery_bars(experiments),
    ]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Paydar drill</title><style>"
            "body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
            ".verdict{font-size:1.2em;padding:.6em;border-radius:4px}.ok{background:#e3f6e3}.bad{background:#fde2e2}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
            ".held{color:#176317}.broke{color:#a11}svg{display:block;margin:.5em 0}"
            "</style></head><body>" + "".join(sections) + "</body></html>")


def _figures(report: dict[str, Any]) -> str:
    keys = ("state_dir", "writes_attempted", "writes_acknowledged", "lost", "corrupted", "failover_seconds",
            "auto_failover_seconds", "ransomware_detected_seconds", "restore_seconds")
    rows = "".join(f"<tr><th>{escape(k.replace('_', ' '))}</th><td>{escape(str(report.get(k, '')))}</td></tr>"
                   for k in keys)
    return f"<table>{rows}</table>"


def _timeline(region: str, points: list[list[float]], experiments: list[dict[str, Any]], origin: float) -> str:
    if not points:
        return f"<p>{escape(region)}: no samples</p>"
    end = max(max(t for t, _ in points), *(e["window"][1] - origin for e in experiments if e.get("window")), 1.0)

    def x(t: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * t / end

    def y(share: float) -> float:
        return PAD / 2 + (HEIGHT - PAD) * (1 - share)

    windows = "".join(
        f"<rect x='{x(e['window'][0] - origin):.1f}' y='{PAD / 2}' "
        f"width='{max(1.0, x(e['window'][1] - origin) - x(e['window'][0] - origin)):.1f}' height='{HEIGHT - PAD}' "
        f"fill='{'#f6d8a8' if e.get('held') else '#f3a3a3'}' opacity='0.6'><title>{escape(e['name'])}</title></rect>"
        for e in experiments if e.get("window"))
    line = " ".join(f"{x(t):.1f},{y(share):.1f}" for t, share in points)
    low = min(share for _, share in points)
    return (f"<h3>{escape(region)} (lowest {low:.0%})</h3>"
            f"<svg class='timeline' width='{WIDTH}' height='{HEIGHT}' role='img' aria-label='{escape(region)}'>"
            f"{windows}<polyline points='{line}' fill='none' stroke='#1f5fa8' stroke-width='1.5'/>"
            f"<text x='2' y='{y(1) + 4:.0f}' font-size='10'>100%</text>"
            f"<text x='2' y='{y(0):.0f}' font-size='10'>0%</text>"
            f"<text x='{WIDTH - PAD}' y='{HEIGHT - 2}' font-size='10'>{end:.0f}s</text></svg>")


def _experiments(experiments: list[dict[str, Any]]) -> str:
    rows = []
    for e in experiments:
        outcome = "held" if e.get("held") else "BROKE"
        why = "; ".join(e.get("failed_activities") or []) or ", ".join(e.get("unmet") or [])
        recovery = "" if e.get("recovery_seconds") is None else f"{e['recovery_seconds']:.2f}"
        during = "" if e.get("availability_during_fault") is None else f"{e['availability_during_fault']:.1%}"
        rows.append(f"<tr><td>{escape(e['name'])}</td><td>{escape(e.get('title', ''))}</td>"
                    f"<td class='{'held' if e.get('held') else 'broke'}'>{outcome}</td><td>{escape(why)}</td>"
                    f"<td>{during}</td><td>{recovery}</td><td>{e.get('seconds', 0):.1f}</td></tr>")
    return ("<table><tr><th>experiment</th><th>attack</th><th>outcome</th><th>what broke</th>"
            "<th>served elsewhere during the fault</th><th>served again after (s)</th><th>duration (s)</th></tr>"
            + "".join(rows) + "</table>")


def _recovery_bars(experiments: list[dict[str, Any]]) -> str:
    timed = [(e["name"], float(e["recovery_seconds"])) for e in experiments if e.get("recovery_seconds") is not None]
    if not timed:
        return "<p>No experiment measured a recovery time.</p>"
    longest = max(seconds for _, seconds in timed) or 1.0
    bars = "".join(
        f"<text x='0' y='{20 * i + 14}' font-size='12'>{escape(name)}</text>"
        f"<rect class='bar' x='220' y='{20 * i + 3}' width='{(WIDTH - 300) * seconds / longest:.1f}' height='14' "
        f"fill='#1f5fa8'/><text x='{225 + (WIDTH - 300) * seconds / longest:.1f}' y='{20 * i + 14}' "
        f"font-size='12'>{seconds:.2f}s</text>"
        for i, (name, seconds) in enumerate(timed))
    return f"<svg width='{WIDTH}' height='{20 * len(timed) + 6}' role='img' aria-label='recovery'>{bars}</svg>"
