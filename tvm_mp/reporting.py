"""Human-readable reports of a compiled artifact directory: Markdown with the per-layer table and plots.

An artifact directory (``CompiledModel.export``) holds ``model.so``, ``plan.json`` and ``report.json``; other
parts of tvm-mp may add ``pareto.json`` (search), ``energy_breakdown.json`` (accelerator / energy models) and
``predicted_vs_measured.json`` (cost models). :func:`render` writes ``report.md`` and one PNG per plot it has data
for, so a person who did not run the command can read what was built and why.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import Error


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise Error(f"cannot read {path.name} in {path.parent}: {err}") from None


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (reports are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_weights(rows: list[dict], out: Path) -> Path:
    plt = _pyplot()
    names = [r["name"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(rows) + 2), 3.2))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["fp32_weight_bytes"] / 1024 for r in rows], width=0.4, label="fp32")
    ax.bar([x + 0.2 for x in xs], [r["weight_bytes"] / 1024 for r in rows], width=0.4, label="compiled")
    ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("weight storage (kB)")
    ax.legend()
    return _save(plt, fig, out / "weights.png")


def _plot_pareto(data: dict, out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for group, marker in (("mixed", "o"), ("uniform", "s")):
        pts = [p for p in data.get("points", []) if p.get("kind", "mixed") == group]
        if pts:
            ax.scatter([p["energy_uj"] for p in pts], [p["accuracy"] for p in pts], marker=marker, label=group)
    ax.set_xlabel("energy per inference (uJ, modelled)")
    ax.set_ylabel("accuracy")
    ax.legend()
    return _save(plt, fig, out / "pareto.png")


def _plot_layer_energy(rows: list[dict], out: Path) -> Path:
    plt = _pyplot()
    named = [r for r in rows if r.get("energy_uj") is not None]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(named) + 2), 3.2))
    ax.bar(range(len(named)), [r["energy_uj"] for r in named], color="tab:orange")
    ax.set_xticks(range(len(named)), [f"{r['name']}\n{r['precision']}" for r in named], fontsize=7)
    ax.set_ylabel("energy per inference (uJ, modelled)")
    return _save(plt, fig, out / "energy_by_layer.png")


def _plot_predicted_vs_measured(data: dict, out: Path) -> Path:
    plt = _pyplot()
    pts = data.get("points", [])
    pred = [p["predicted_ms"] for p in pts]
    meas = [p["measured_ms"] for p in pts]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(meas, pred, s=10)
    lim = [min(pred + meas), max(pred + meas)]
    ax.plot(lim, lim, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    return _save(plt, fig, out / "predicted_vs_measured.png")


def _schedule_text(row: dict) -> str:
    """A layer's kernel knobs and their source, e.g. ``direct ob4 pu2 16 lanes (tuned (user database))``."""
    knobs = row.get("schedule")
    if not knobs:
        return "-"
    text = (f"{knobs.get('algorithm')} ob{knobs.get('oc_block')} pu{knobs.get('p_unroll')} "
            f"{knobs.get('lanes')} lanes{' dot' if knobs.get('use_dot') else ''}"
            f"{' parallel' if knobs.get('parallel') else ''}")
    return f"{text} ({row.get('schedule_source') or 'default'})"


def render(directory: str | Path) -> Path:
    """Write ``report.md`` (and plots) for an artifact directory; return the Markdown path."""
    out = Path(directory)
    if not (out / "report.json").is_file():
        raise Error(f"{out} is not a tvm-mp artifact directory (no report.json): run `tvm-mp compile ... -o {out}`")
    report = _load(out / "report.json")
    plan = _load(out / "plan.json") if (out / "plan.json").is_file() else {"layers": {}}
    rows = report["layers"]
    lines = [f"# tvm-mp report: {out.name}", ""]
    total_w = sum(r["weight_bytes"] for r in rows)
    total_f = sum(r["fp32_weight_bytes"] for r in rows)
    lines += [
        f"- layers: {len(rows)} ({len(report.get('fp32_layers', []))} left in fp32)",
        f"- weight storage: {total_w / 1024:.2f} kB vs {total_f / 1024:.2f} kB in fp32 "
        f"({100 * total_w / max(total_f, 1):.1f} %)",
    ]
    for key, label, unit in (("accuracy", "accuracy", ""), ("latency_ms", "latency", " ms"),
                             ("energy_uj", "energy", " uJ")):
        value = report.get(key)
        lines.append(f"- {label}: {'not measured' if value is None else f'{value:.4g}{unit}'}")
    if report.get("cost_model"):
        lines.append(f"- costs from {report['cost_model']} (latency {report.get('latency_basis') or 'n/a'}, energy "
                     f"{report.get('energy_basis') or 'n/a'})")
    lines += ["", "| layer | op | precision | kernel | MACs | weight B | fp32 B | schedule |",
              "|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['op']} | {r['precision']} | {r['kernel']} | {r['macs']} | "
                     f"{r['weight_bytes']} | {r['fp32_weight_bytes']} | {_schedule_text(r)} |")
    lines += ["", f"![weight storage per layer]({_plot_weights(rows, out).name})", ""]
    if any(r.get("energy_uj") is not None for r in rows):
        lines += ["## Energy by layer", "", f"![energy by layer]({_plot_layer_energy(rows, out).name})", ""]
    if (out / "predicted_vs_measured.json").is_file():
        png = _plot_predicted_vs_measured(_load(out / "predicted_vs_measured.json"), out)
        lines += ["## Cost model: predicted vs measured", "", f"![predicted vs measured]({png.name})", ""]
    if (out / "pareto.json").is_file():
        lines += ["## Energy-accuracy trade-off", "",
                  f"![Pareto front]({_plot_pareto(_load(out / 'pareto.json'), out).name})", ""]
    lines += ["## Plan", "", "```json", json.dumps(plan, indent=2), "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
