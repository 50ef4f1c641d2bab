"""The PNG chart of the plain-HTTP run (bench/results.png): throughput, added latency, CPU per
scrape and memory of the proxy, HAProxy and nginx, side by side. Needs matplotlib (.venv)."""

from __future__ import annotations

import sys
from pathlib import Path

from report import label
from targets import MAIN_TARGETS


def chart(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no chart", file=sys.stderr)
        return False
    s = results["summary"]
    names = [t for t in MAIN_TARGETS if t != "direct"]
    colours = {"proxy": "#2a7ab0", "haproxy": "#7a7a7a", "nginx": "#3c9a3c"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    cases = [(p, c) for p in s for c in s[p]]

    def bars(ax, metric, title, scale=1.0, cases=cases):
        width = 0.8 / len(names)
        for i, t in enumerate(names):
            vals = [s[p][c].get(t, {}).get(metric, float("nan")) * scale for p, c in cases]
            ax.bar([x + i * width for x in range(len(cases))], vals, width, label=label(t), color=colours[t])
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(cases))])
        ax.set_xticklabels([f"{p}\n{c} conn" for p, c in cases], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)

    bars(axes[0][0], "ratio", "throughput / direct (higher is better)")
    bars(axes[0][1], "added_p50_us", "added p50 latency, us, log scale (lower is better)")
    bars(axes[0][2], "added_p99_us", "added p99 latency, us, log scale (lower is better)")
    for ax in (axes[0][1], axes[0][2]):
        ax.set_yscale("symlog", linthresh=100)
    bars(axes[1][0], "cpu_s_per_1000", "CPU s per 1,000 scrapes (lower is better)")
    bars(axes[1][1], "peak_rss_kib", "peak RSS under load, MiB (lower is better)", scale=1 / 1024)
    ax = axes[1][2]
    idle, stream = results["idle_rss_kib"], results["stream"]
    width = 0.8 / len(names)
    groups = ["idle RSS", "512 MiB stream\nRSS growth"]
    for i, t in enumerate(names):
        vals = [idle.get(t, {}).get("start", float("nan")) / 1024,
                stream.get(t, {}).get("growth_kib", float("nan")) / 1024]  # fmt: skip
        ax.bar([x + i * width for x in range(2)], vals, width, label=label(t), color=colours[t])
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(2)])
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_title("memory, MiB (lower is better)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9)
    m = results["machine"]
    fig.suptitle(f"windows-exporter-proxy vs HAProxy vs nginx (original config) - {m['cpu']}, {m['cores']} cores, "
                 f"median of {results['rounds']} rounds", fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
