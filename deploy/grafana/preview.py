"""Draws a preview PNG of a dashboard from Prometheus query results, with matplotlib.

Grafana cannot run in this project's test environment, so deploy/tests/test_cluster_prometheus.py
evaluates the dashboard's queries against a real Prometheus and hands the results here. Panels
are placed by their gridPos; time series become line charts (Linux nodes in blues, Windows nodes
in oranges), tables become tables. It is a preview of the data and layout, not a screenshot.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402  (after choosing the backend)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

ROW_HEIGHT_INCHES = 0.36


def format_value(value: float, unit: str) -> str:
    """Grafana-like short form of a value in one of the units the dashboards use."""
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit in ("bytes", "Bps"):
        suffix = "/s" if unit == "Bps" else ""
        for prefix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(value) < 1024 or prefix == "TiB":
                return f"{value:.3g} {prefix}{suffix}"
            value /= 1024
    if unit == "s":
        for size, name in ((86400, "day"), (3600, "hour"), (60, "min")):
            if abs(value) >= size:
                count = value / size
                return f"{count:.1f} {name}{'s' if count >= 2 else ''}"
        return f"{value:.2g} s"
    return f"{value:.3g}"


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or str(labels)


def draw(dashboard: dict, results: dict[int, list[dict]], out: Path, linux_nodes: set[str]) -> int:
    """Writes the PNG; results maps panel id -> series (range or instant). Returns panels drawn."""
    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    inches = height * ROW_HEIGHT_INCHES + 1.2
    fig = plt.figure(figsize=(18, inches), facecolor="#111217")
    top, bottom = 1 - 0.8 / inches, 0.4 / inches
    fig.text(0.01, 1 - 0.25 / inches,
             f"Preview of \"{dashboard['title']}\", drawn with matplotlib from the real query results of "
             "deploy/tests/test_cluster_prometheus.py (not a Grafana screenshot)",
             color="#d8d9da", fontsize=11, va="center")
    blues = plt.get_cmap("Blues")
    oranges = plt.get_cmap("Oranges")
    drawn = 0

    def box(grid: dict, pad_top: float = 0.55) -> list[float]:
        unit_h = (top - bottom) / height
        x0 = grid["x"] / 24 + 0.006
        width = grid["w"] / 24 - 0.012
        y0 = top - (grid["y"] + grid["h"]) * unit_h + 0.35 * unit_h
        return [x0 + 0.035 * (grid["w"] / 24 > 0), y0, width - 0.045, grid["h"] * unit_h - (pad_top + 0.35) * unit_h]

    for panel in panels:
        grid = panel["gridPos"]
        if panel["type"] == "row":
            fig.text(grid["x"] / 24 + 0.006, top - (grid["y"] + 0.5) * (top - bottom) / height, panel["title"],
                     color="#d8d9da", fontsize=12, fontweight="bold", va="center")
            continue
        drawn += 1
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        series = results.get(panel["id"], [])
        ax = fig.add_axes(box(grid))
        ax.set_facecolor("#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        if panel["type"] == "table":
            ax.axis("off")
            hidden = {"__name__", "job", "namespace", "pod", "metrics_path", "node"}
            rename = next((t["options"].get("renameByName", {}) for t in panel.get("transformations", [])
                           if t["id"] == "organize"), {})
            columns = sorted({k for s in series for k in s["metric"]} - hidden)
            rows = [[s["metric"].get(c, "") for c in columns] + [format_value(float(s["value"][1]), unit)]
                    for s in sorted(series, key=lambda s: s["metric"].get("instance", ""))]
            table = ax.table(cellText=rows, colLabels=[rename.get(c, c) for c in columns] + [rename.get("Value", "value")],
                             loc="upper center", cellLoc="left")
            table.auto_set_font_size(False)
            table.set_fontsize(9)
            for cell in table.get_celld().values():
                cell.set_facecolor("#181b1f")
                cell.set_edgecolor("#2c3235")
                cell.get_text().set_color("#d8d9da")
            continue
        templates = [t.get("legendFormat", "") for t in panel["targets"]]
        ordered = sorted(series, key=lambda s: (s["metric"].get("instance", "") not in linux_nodes, legend(templates[0], s["metric"])))
        linux_count = sum(1 for s in ordered if s["metric"].get("instance") in linux_nodes) or 1
        windows_count = (len(ordered) - linux_count) or 1
        li = wi = 0
        for s in ordered:
            is_linux = s["metric"].get("instance") in linux_nodes
            if is_linux:
                color, li = blues(0.5 + 0.4 * li / linux_count), li + 1
            else:
                color, wi = oranges(0.45 + 0.45 * wi / windows_count), wi + 1
            times = [datetime.fromtimestamp(float(t)) for t, _ in s["values"]]
            values = [float(v) for _, v in s["values"]]
            label = legend(templates[0], s["metric"]) + (" (Linux)" if is_linux else " (Windows)")
            ax.plot(times, values, color=color, linewidth=1.4, label=label)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, unit=unit: format_value(v, unit)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.grid(color="#2c3235", linewidth=0.5)
        defaults = panel["fieldConfig"]["defaults"]
        if "min" in defaults:
            ax.set_ylim(bottom=defaults["min"])
        if "max" in defaults:
            # a little headroom, so a line at the maximum (a busy CPU) stays visible
            ax.set_ylim(top=defaults["max"] * 1.03)
        ax.legend(fontsize=7, loc="upper left", ncol=2, facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#d8d9da")
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    plt.close(fig)
    return drawn
