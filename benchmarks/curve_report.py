"""The report of benchmarks/bench_cache_curve.py: per cache setting, bytes per token on disk, the target metrics of
`bl2 cache compare` against the full cache, and the test CE of the student trained from it; the gap to the full
cache's student; the Pareto frontier (no other setting is both smaller and closer to full); a log-x plot.

    python benchmarks/curve_report.py [OUT]   # bench_cache_curve.py's --out (default experiments/out/cache_curve)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(out: Path, names: list[str], suffix: str = "") -> list[dict]:
    rows = []
    sizes = json.loads((out / "sizes.json").read_text()) if (out / "sizes.json").exists() else {}
    for name in names:
        ev = out / "eval" / f"loss_student_{name}{suffix}.json"
        cmp = out / "compare" / f"{name}.json"
        row: dict = {"name": name, "bytes_per_token": sizes.get(name)}
        if cmp.exists():
            c = json.loads(cmp.read_text())
            m = c["rows"][0]
            row.update(bytes_per_token=c["bytes_per_token"], mass=m.get("mass_stored", m["mass"]),
                       grad_err=m["grad_err"], kl_flat_tail=m.get("kl_flat_tail"), kl_rev=m.get("kl_rev"),
                       encoding_kl=(c.get("encoding_kl") or {}).get(f"{m['T']:g}"))
        if ev.exists():
            row["test_ce"] = next(iter(json.loads(ev.read_text())["results"].values()))["ce"]
        rows.append(row)
    full = next((r for r in rows if r["name"] == "full" and "test_ce" in r), None)
    for r in rows:
        if full and "test_ce" in r:
            r["gap"] = r["test_ce"] - full["test_ce"]
            r["gap_pct"] = 100 * r["gap"] / full["test_ce"]
    return rows


def frontier(rows: list[dict]) -> list[str]:
    """Names of the settings no other setting beats on both bytes/token and gap (full excluded: it is the anchor)."""
    pts = [r for r in rows if r.get("gap") is not None and r.get("bytes_per_token") and r["name"] != "full"]
    return [r["name"] for r in pts if not any(
        o is not r and o["bytes_per_token"] <= r["bytes_per_token"] and o["gap"] <= r["gap"]
        and (o["bytes_per_token"] < r["bytes_per_token"] or o["gap"] < r["gap"]) for o in pts)]


def table(rows: list[dict], front: list[str]) -> list[str]:
    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    lines = ["| setting | B/token | mass stored | grad_err | kl_rev | encoding KL | test CE | gap to full | frontier |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r.get("bytes_per_token") or 0):
        gap = "–" if r.get("gap") is None else f"{r['gap']:+.4f} ({r['gap_pct']:+.2f} %)"
        cells = [r["name"], f(r.get("bytes_per_token"), ".1f"), f(r.get("mass"), ".3f"), f(r.get("grad_err"), ".4f"),
                 f(r.get("kl_rev"), ".3f"), f(r.get("encoding_kl"), ".1e"), f(r.get("test_ce"), ".4f"), gap,
                 "**yes**" if r["name"] in front else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(rows: list[dict], front: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=90)
    colors = {"topk": "tab:red", "sample": "tab:blue", "hybrid": "tab:green"}
    for r in rows:
        if r.get("gap") is None or not r.get("bytes_per_token") or r["name"] == "full":
            continue
        kind = next((k for k in colors if r["name"].startswith(k)), "topk")
        ax.scatter(r["bytes_per_token"], r["gap_pct"], color=colors[kind], marker="s" if "_u8" in r["name"] else "o",
                   edgecolor="black" if r["name"] in front else "none", s=40, zorder=3)
        ax.annotate(r["name"], (r["bytes_per_token"], r["gap_pct"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    pts = sorted((r["bytes_per_token"], r["gap_pct"]) for r in rows if r["name"] in front)
    if pts:
        ax.step(*zip(*pts), where="post", color="black", lw=1, label="frontier")
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="0.5 % of full")
    ax.axvline(60, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("cache bytes per token (log)")
    ax.set_ylabel("student test-CE gap to full (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def report(out: Path, settings: dict, suffix: str = "") -> list[dict]:
    rows = load(out, list(settings), suffix)
    front = frontier(rows)
    lines = table(rows, front)
    (out / "curve.md").write_text("\n".join(lines) + "\n")
    (out / "curve.json").write_text(json.dumps({"rows": rows, "frontier": front}, indent=1) + "\n")
    if any(r.get("gap") is not None for r in rows):
        plot(rows, front, out / "curve.png")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_cache_curve import SETTINGS

    report(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/out/cache_curve"), SETTINGS)
