"""The drill's `report.html`: one self-contained page (inline CSS and SVG, no script, no network).

Hand-written SVG and HTML rather than a charting library: the page must open offline on an
air-gapped operator's laptop, and three simple chart kinds (a timeline, bars, a heat-map
table) don't justify a bundled JavaScript library.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["recovery", "render_html", "why_broken"]

WIDTH, HEIGHT, PAD = 900, 120, 30


def render_html(report: dict[str, Any]) -> str:
    """The page for one drill report (``DrillReport.as_dict()`` with ``timeline`` and fault windows)."""
    passed = bool(report.get("passed"))
    verdict = ("PASSED: every acknowledged write was readable through every gateway and every experiment held"
               if passed else f"FAILED: {report.get('verdict_reason') or 'see the experiments below'}")
    experiments = report.get("experiments", [])
    origin = float(report.get("timeline_origin") or 0.0)
    sections = [
        f"<h1>Paydar drill ({escape(str(report.get('mode', 'catalog')))})</h1>"
        f"<p class='verdict {'ok' if passed else 'bad'}'>{escape(verdict)}</p>",
        _meta(report.get("meta") or {}),
        _weakenings(report.get("weakenings") or [], experiments),
        _figures(report), _services(report.get("services") or []), _load(report.get("load") or {}),
        "<h2>Citizen availability per region</h2>"
        "<p>Each point: share of write-then-read requests served in that second through the region's gateway. "
        "Shaded: an experiment's fault window (attack to end of rollback).</p>",
        *(_timeline(region, points, experiments, origin) for region, points in report.get("timeline", {}).items()),
        _heat_map(experiments) if report.get("mode") == "matrix" else "",
        "<h2>Experiments</h2>", _experiments(experiments),
        "<h2>Time until citizens were served again</h2>", _recovery_bars(experiments),
    ]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Paydar drill</title><style>"
            "body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
            ".verdict{font-size:1.2em;padding:.6em;border-radius:4px}.ok{background:#e3f6e3}.bad{background:#fde2e2}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
            ".held{color:#176317}.broke{color:#a11}svg{display:block;margin:.5em 0}"
            ".heat td{text-align:center;font-size:.85em;min-width:4.5em}.na{background:#eee}"
            ".weak{background:#fff4d6;padding:.6em;border-radius:4px}"
            "</style></head><body>" + "".join(sections) + "</body></html>")


def why_broken(e: dict[str, Any]) -> str:
    """One line: the safeguard's abort, else the activities that failed, else the steady-state probes not met."""
    if e.get("aborted"):
        return f"ABORTED by the safeguard: {e['aborted']}"
    if e["failed_activities"]:
        return "; ".join(e["failed_activities"])
    when = "before" if not e["steady_state_before"] else "after"
    unmet = f": {', '.join(e['unmet'])}" if e["unmet"] else ""
    return f"steady state not met {when} the attack{unmet} ({e['status']})"


def _meta(meta: dict[str, Any]) -> str:
    """When, with which Paydar, on which topology and with which settings the drill ran."""
    if not meta:
        return ""
    settings = ", ".join(f"{k}={v}" for k, v in sorted((meta.get("settings") or {}).items()))
    rows = [("started", meta.get("started")), ("Paydar", f"{meta.get('paydar_version')} at commit "
                                                          f"{meta.get('paydar_commit')}"),
            ("topology", f"{meta.get('topology', '')} (SHA-256 {meta.get('topology_sha256', 'unknown')})"),
            ("settings", settings)]
    return "<table class='meta'>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                                             for k, v in rows) + "</table>"


def _services(services: list[dict[str, Any]]) -> str:
    """Each service against its own RTO and RPO, grouped by tier (tier 1 first)."""
    if not services:
        return ""
    rows, tier = [], None
    for v in services:
        if v["tier"] != tier:
            tier = v["tier"]
            name = f" ({v['tier_name']})" if v.get("tier_name") else ""
            rows.append(f"<tr><th colspan='9'>tier {tier}{escape(name)}</th></tr>")
        why = "; ".join(v.get("causes") or v.get("accepted") or []) or (
            f"unmeasured in {len(v['unmeasured'])} cell(s): no citizen request of it then" if v.get("unmeasured")
            else "")
        rows.append(f"<tr><td>{escape(v['service'])}</td><td>{escape(v['name'])}</td><td>{escape(v['ecosystem'])}"
                    f"</td><td>{escape(v['agency'])}</td><td>{recovery(v['worst_writes'])}</td>"
                    f"<td>{recovery(v['worst_reads'])}</td><td>{v['rto']:g}s / {v['rpo']:g}s</td>"
                    f"<td class='{'broke' if v['outcome'] == 'missed' else 'held'}'>{escape(v['outcome'])}</td>"
                    f"<td>{escape(v['worst_writes_cell'] or v['worst_reads_cell'])}{': ' if why else ''}"
                    f"{escape(why)}</td></tr>")
    return ("<h2>Services against their own targets</h2><p>Worst time, over every cell, from the attack until the "
            "service's writes were acknowledged again and its reads served again, through the unaffected "
            "regions.</p><table><tr><th>service</th><th>name</th><th>ecosystem</th><th>agency</th>"
            "<th>writes back after</th><th>reads back after</th><th>RTO / RPO</th><th>verdict</th>"
            "<th>worst case and why</th></tr>" + "".join(rows) + "</table>")


def recovery(seconds: float | None) -> str:
    """A recovery time for a reader; None is a service that did not recover within the cell."""
    return "never (within the cell)" if seconds is None else f"{seconds:.1f}s"


def _weakenings(weakenings: list[dict[str, str]], experiments: list[dict[str, Any]]) -> str:
    if not weakenings:
        return ""
    broke = {e["name"] for e in experiments if not e.get("held")}
    items = "".join(
        f"<li><b>{escape(w['name'])}</b>: {escape(w['risk'])}. Expected to break <i>{escape(w['caught_by'])}</i>: "
        f"{'it broke, as it must' if w['caught_by'] in broke else 'it did NOT break'}.</li>" for w in weakenings)
    return (f"<div class='weak'><b>This topology deliberately gives up safety rules</b> (<code>unsafe:</code>); "
            f"the drill must catch each:<ul>{items}</ul></div>")


def _load(load: dict[str, Any]) -> str:
    regions = sorted((k, v) for k, v in load.items() if isinstance(v, dict))
    if not regions:
        return ""
    rows = "".join(f"<tr><td>{escape(name)}</td><td>{v['requests']}</td><td>{v['failures']}</td>"
                   f"<td>{v['p50_ms']}</td><td>{v['p99_ms']}</td></tr>" for name, v in regions)
    return (f"<h2>Citizen load (Locust, {load.get('users', '?')} users)</h2><table><tr><th>requests</th>"
            f"<th>count</th><th>failed</th><th>p50 ms</th><th>p99 ms</th></tr>{rows}</table>")


def _heat_map(experiments: list[dict[str, Any]]) -> str:
    """Rows: component instances; columns: faults; colour: availability elsewhere during the fault."""
    cells = {tuple(e["name"].split(":", 1)): e for e in experiments if ":" in e["name"]}
    components = sorted({c for c, _ in cells}, key=lambda c: (c.split(".")[0], c))
    faults = list(dict.fromkeys(f for _, f in cells))
    head = "".join(f"<th>{escape(f)}</th>" for f in faults)
    rows = []
    for component in components:
        tds = []
        for fault in faults:
            e = cells.get((component, fault))
            if e is None:
                tds.append("<td class='na'></td>")
                continue
            share = e.get("availability_during_fault")
            colour = "#e05252" if not e.get("held") else _shade(1.0 if share is None else share)
            label = "BROKE" if not e.get("held") else ("" if share is None else f"{share:.0%}")
            recovery = "" if e.get("recovery_seconds") is None else f"<br>{e['recovery_seconds']:.1f}s"
            tip = why_broken(e) if not e.get("held") else f"held; blast radius {e.get('blast_radius')}"
            tds.append(f"<td style='background:{colour}' title='{escape(tip)}'>{label}{recovery}</td>")
        rows.append(f"<tr><th>{escape(component)}</th>{''.join(tds)}</tr>")
    return ("<h2>N-1 matrix</h2><p>Each cell: one component instance under one fault. Shade: share of citizen "
            "requests served through the unaffected regions during the fault (green 100%, yellow lower); red: an "
            "invariant broke. Below it: seconds until citizens were served again. Hover for the blast radius.</p>"
            f"<table class='heat'><tr><th>component</th>{head}</tr>{''.join(rows)}</table>")


def _shade(share: float) -> str:
    """Green at 100%, through yellow to orange at 50% and below."""
    t = max(0.0, min(1.0, (1.0 - share) * 2))
    red, green = int(120 + 135 * t), int(200 - 60 * t)
    return f"rgb({red},{green},110)"


def _figures(report: dict[str, Any]) -> str:
    keys = ("state_dir", "up_seconds", "experiments_seconds", "writes_attempted", "writes_acknowledged",
            "reads_checked", "lost", "corrupted")
    rows = "".join(f"<tr><th>{escape(k.replace('_', ' '))}</th><td>{escape(str(report.get(k, '')))}</td></tr>"
                   for k in keys)
    return f"<table>{rows}</table>"


def _timeline(region: str, points: list[list[float]], experiments: list[dict[str, Any]], origin: float) -> str:
    if not points:
        return f"<p>{escape(region)}: no samples</p>"
    end = float(max(*(t for t, _ in points), *(e["window"][1] - origin for e in experiments if e.get("window")), 1.0))

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
        outcome = "held" if e.get("held") else "ABORTED" if e.get("aborted") else "BROKE"
        why = "" if e.get("held") else why_broken(e)
        during = "" if e.get("availability_during_fault") is None else f"{e['availability_during_fault']:.1%}"
        radius = e.get("blast_radius") or {}
        blast = "none" if radius and not radius.get("regions") else \
            f"{', '.join(radius.get('regions', []))} / {', '.join(radius.get('services', []))}" if radius else ""
        rows.append(f"<tr><td>{escape(e['name'])}</td><td>{escape(e.get('title', ''))}</td>"
                    f"<td class='{'held' if e.get('held') else 'broke'}'>{outcome}</td><td>{escape(why)}</td>"
                    f"<td>{during}</td><td>{escape(blast)}</td><td>{_seconds(e.get('detection_seconds'))}</td>"
                    f"<td>{_seconds(e.get('recovery_seconds'))}</td><td>{_count(e.get('lost'))}</td>"
                    f"<td>{_count(e.get('corrupted'))}</td><td>{e.get('seconds', 0):.1f}</td></tr>")
    return ("<table><tr><th>experiment</th><th>attack</th><th>outcome</th><th>what broke</th>"
            "<th>served elsewhere during the fault</th><th>blast radius (regions / services with a failed "
            "request)</th><th>detected after (s)</th><th>served again after (s)</th><th>acknowledged writes lost</th>"
            "<th>corrupted reads</th><th>duration (s)</th></tr>" + "".join(rows) + "</table>")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


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
