"""Where the bench finds things: the checkout, the real windows_exporter sample it serves, the
proxy build it measures, and bench/out, where every run writes its raw results."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
SAMPLE = BENCH / "fixtures" / "windows_exporter-0.13-cs-service.prom"
PROXY_BIN = ROOT / "target" / "release" / "windows-exporter-proxy"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
