"""The benchmark's table, JSON file and chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def write_report(
    folder: Path,
    machine: dict[str, Any],
    figures: list[dict[str, Any]],
    facts: dict[str, Any],
    failures: list[str],
) -> None:
    print()
    print(table(figures))
    payload = {"machine": machine, "figures": figures, "facts": facts, "failures": failures}
    (folder / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    chart(figures, folder / "latest.png")
    print(f"\nwrote {folder / 'latest.json'} and {folder / 'latest.png'}")


def table(figures: list[dict[str, Any]]) -> str:
    lines = [
        "| phase | engine | store | what | seconds | peak RSS MB | note |",
        "| --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    for f in figures:
        lines.append(
            f"| {f['phase']} | {f['engine']} | {f['store']} | {f['what']} | {f['seconds']:.3f}"
            f" | {f['peak_rss_mb']:.0f} | {f['note']} |"
        )
    return "\n".join(lines)


def chart(figures: list[dict[str, Any]], path: Path) -> None:
    queries = [f for f in figures if f["phase"] == "query"]
    groups = list(dict.fromkeys(f"{f['what']}\n{f['store']}" for f in queries))
    engines = list(dict.fromkeys(f["engine"] for f in queries))
    fig, (time_ax, rss_ax) = plt.subplots(2, 1, figsize=(13, 9))
    width = 0.8 / len(engines)
    for offset, engine in enumerate(engines):
        by_group = {f"{f['what']}\n{f['store']}": f for f in queries if f["engine"] == engine}
        xs = [i + offset * width for i, g in enumerate(groups) if g in by_group]
        time_ax.bar(
            xs, [by_group[g]["seconds"] for g in groups if g in by_group], width, label=engine
        )
        rss_ax.bar(
            xs, [by_group[g]["peak_rss_mb"] for g in groups if g in by_group], width, label=engine
        )
    for ax, label in ((time_ax, "seconds (log)"), (rss_ax, "peak RSS MB (log)")):
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], groups, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    time_ax.set_title(
        "country-stats: busstats against bare Polars, DuckDB and pandas (lower is better)"
    )
    time_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
