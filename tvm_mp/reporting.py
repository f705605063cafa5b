"""Human-readable reports of a compiled artifact directory: Markdown with the per-layer table and plots.

An artifact directory (``CompiledModel.export``) holds ``model.so``, ``plan.json`` and ``report.json``; other
parts of tvm-mp may add ``pareto.json`` (search), ``energy_breakdown.json`` (accelerator / energy models) and
``predicted_vs_measured.json`` (cost models). :func:`render` writes ``report.md`` and one PNG per plot it has data
for, so a person who did not run the command can read what was built and why.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._files import atomic_path, write_atomic
from .errors import Error


def _load(path: Path):
    try:
        return json.loads(path.read_bytes())
    except OSError as err:
        raise Error(f"cannot read {path.name} in {path.parent}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise Error(f"{path.name} in {path.parent} is not valid JSON ({err}): write it again (re-export the "
                    "model)") from None


def _points(path: Path, keys: tuple[str, ...], positive: bool = False) -> dict:
    """The JSON of ``path`` (written by another part of tvm-mp) when it holds ``{"points": [...]}`` with a number
    for each of ``keys`` in every point; else one line saying which file is not what tvm-mp writes."""
    data = _load(path)
    points = data.get("points") if isinstance(data, dict) else None
    ok = isinstance(points, list) and all(
        isinstance(p, dict) and all(isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool)
                                    and p[k] == p[k] and (p[k] > 0 or not positive) for k in keys)
        for p in points)
    if not ok:
        raise Error(f"{path} is not what tvm-mp writes there (an object with a list of points, each with "
                    f"{', '.join(keys)}{' > 0' if positive else ''}): delete it or write it again")
    return data


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (reports are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:  # a kill mid-write keeps the previous plot whole
        fig.savefig(tmp, dpi=110)
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
    from .model import Report

    try:
        Report.from_dict(report)  # refuses missing fields and wrong types with one line
    except Error as err:
        raise Error(f"{out / 'report.json'}: {err}") from None
    plan = _load(out / "plan.json") if (out / "plan.json").is_file() else {"layers": {}}
    # every input is read and checked before anything is drawn or written
    measured = (_points(out / "predicted_vs_measured.json", ("predicted_ms", "measured_ms"), positive=True)
                if (out / "predicted_vs_measured.json").is_file() else None)
    pareto = _points(out / "pareto.json", ("energy_uj", "accuracy")) if (out / "pareto.json").is_file() else None
    rows = report["layers"]
    lines = [f"# tvm-mp report: {out.name}", ""]
    n_unq = len(report.get("unquantizable") or [])
    total_w = sum(r["weight_bytes"] for r in rows)
    total_f = sum(r["fp32_weight_bytes"] for r in rows)
    lines += [
        f"- layers: {len(rows)} ({len(report.get('fp32_layers', []))} left in fp32 by the plan); "
        f"{n_unq} conv / matmul op{'' if n_unq == 1 else 's'} tvm-mp cannot quantize",
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
    unquantizable = report.get("unquantizable") or []
    if unquantizable:
        lines += ["", f"## Not quantized ({len(unquantizable)} conv / matmul op{'s' if len(unquantizable) > 1 else ''}"
                  " tvm-mp cannot quantize)", "", "They run unquantized, as TVM builds them.", "",
                  "| op | kind | input | weight | output | why |", "|---|---|---|---|---|---|"]
        for u in unquantizable:
            shapes = " | ".join(str(tuple(u.get(k) or ())) for k in ("input_shape", "weight_shape", "output_shape"))
            lines.append(f"| {u.get('name', '?')} | {u.get('op', '?')} | {shapes} | "
                         f"{str(u.get('reason', '')).replace('|', '/')} |")
    if rows:
        lines += ["", f"![weight storage per layer]({_plot_weights(rows, out).name})", ""]
    else:
        lines.append("")
    if any(r.get("energy_uj") is not None for r in rows):
        lines += ["## Energy by layer", "", f"![energy by layer]({_plot_layer_energy(rows, out).name})", ""]
    if measured is not None and measured["points"]:
        png = _plot_predicted_vs_measured(measured, out)
        lines += ["## Cost model: predicted vs measured", "", f"![predicted vs measured]({png.name})", ""]
    if pareto is not None:
        lines += ["## Energy-accuracy trade-off", "", f"![Pareto front]({_plot_pareto(pareto, out).name})", ""]
    why = report.get("explanation")
    if why:
        lines += ["## Why each layer got its bits", "",
                  f"{why.get('source', '')}{', ' + why['budget'] if why.get('budget') else ''}. Sensitivity: "
                  f"{why.get('sensitivity_basis', '')}; rank 1 = most sensitive."]
        scores = [f"{label} {why[key]:.4g}" for key, label in (("fp32_score", "fp32"),
                                                                ("plan_score", "this plan (NumPy reference)"))
                  if why.get(key) is not None]
        if scores:
            lines.append(f"Scores ({why.get('score_name') or 'score'}): " + ", ".join(scores)
                         + (f"; the built model: {report['accuracy']:.4g}" if report.get("accuracy") is not None
                            else "") + ".")
        lines += ["", "| layer | precision | sensitivity | rank | why |", "|---|---|---:|---:|---|"]
        n = len(why.get("layers", []))
        for r in why.get("layers", []):
            lines.append(f"| {r['name']} | {r['precision']} | {r['sensitivity']:.2e} | {r['rank']}/{n} | "
                         f"{str(r['reason']).replace('|', '/')} |")
        lines.append("")
    lines += ["## Plan", "", "```json", json.dumps(plan, indent=2), "```", ""]
    path = out / "report.md"
    write_atomic(path, "\n".join(lines))
    return path
