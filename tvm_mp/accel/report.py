"""Per-layer accelerator report: cycles, energy and its breakdown, as a table, JSON and a stacked-bar PNG; and per
edge between accelerator layers whether it stayed on chip (and what that saved) or why not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .._files import atomic_path
from ..errors import Error
from .energy import COMPONENTS, EnergyBreakdown

#: Colours of the breakdown components in the plot (colour-blind friendly "tab10" order).
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class AccelLayerRow:
    """One layer: where it ran (``source``: "simulator", "analytical" or "cpu") and its figures (None on the
    CPU, which this report does not model)."""

    name: str
    op: str
    precision: str
    mapping: str
    macs: int
    cycles: int | None
    latency_us: float | None
    energy: EnergyBreakdown | None
    source: str

    @property
    def energy_uj(self) -> float | None:
        return None if self.energy is None else self.energy.total_uj

    def to_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "precision": self.precision, "mapping": self.mapping,
                "macs": self.macs, "cycles": self.cycles, "latency_us": self.latency_us, "source": self.source,
                "energy": None if self.energy is None else self.energy.to_dict()}


def edge_line(e) -> str:
    """One line for an edge dict (:meth:`tvm_mp.accel.target.AccelRuntime.edge_savings`)."""
    head = f"{e['producer']} -> {e['consumer']}: "
    if not e["onchip"]:
        return head + f"via DRAM ({e['reason']})"
    return head + (f"on chip, saves {e['dram_bytes_saved']:.0f} DRAM bytes, {e['energy_uj_saved']:.4f} uJ, "
                   f"{e['cycles_saved']} cycles")


@dataclass(frozen=True)
class AccelReport:
    """Rows per layer and totals over the layers with figures; ``edges``: per edge between accelerator layers a
    dict (producer, consumer, onchip, reason; for an on-chip edge dram_bytes_saved, energy_uj_saved,
    dram_energy_uj_saved, cycles_saved)."""

    model: str
    hardware: str
    rows: tuple[AccelLayerRow, ...]
    edges: tuple = ()

    def _measured(self) -> list[AccelLayerRow]:
        return [r for r in self.rows if r.energy is not None]

    @property
    def cycles(self) -> int:
        return sum(r.cycles for r in self._measured())

    @property
    def latency_us(self) -> float:
        return sum(r.latency_us for r in self._measured())

    @property
    def energy(self) -> EnergyBreakdown:
        total = EnergyBreakdown({})
        for r in self._measured():
            total = total + r.energy
        return total

    @property
    def energy_uj(self) -> float:
        return self.energy.total_uj

    def to_dict(self) -> dict:
        return {"model": self.model, "hardware": self.hardware, "cycles": self.cycles, "latency_us": self.latency_us,
                "energy": self.energy.to_dict(), "layers": [r.to_dict() for r in self.rows],
                "edges": [dict(e) for e in self.edges]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        comps = [c for c in COMPONENTS if any(r.energy and r.energy.components_uj[c] for r in self.rows)]
        head = (f"{'layer':<11} {'op':<16} {'bits':<5} {'cycles':>9} {'energy uJ':>10} "
                + " ".join(f"{c:>9}" for c in comps) + "  mapping")
        lines = [f"{self.model} on {self.hardware}", head, "-" * len(head)]
        for r in self.rows:
            if r.energy is None:
                lines.append(f"{r.name:<11} {r.op:<16} {r.precision:<5} {'-':>9} {'-':>10} "
                             + " ".join(f"{'-':>9}" for _ in comps) + f"  ({r.source})")
                continue
            lines.append(f"{r.name:<11} {r.op:<16} {r.precision:<5} {r.cycles:>9} {r.energy_uj:>10.4f} "
                         + " ".join(f"{r.energy.components_uj[c]:>9.4f}" for c in comps) + f"  {r.mapping}")
        total = self.energy
        lines.append("-" * len(head))
        lines.append(f"{'total':<11} {'':<16} {'':<5} {self.cycles:>9} {total.total_uj:>10.4f} "
                     + " ".join(f"{total.components_uj[c]:>9.4f}" for c in comps))
        if self.edges:
            lines.append(f"edges ({sum(e['onchip'] for e in self.edges)} of {len(self.edges)} on chip):")
            lines.extend("  " + edge_line(e) for e in self.edges)
        return "\n".join(lines)

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Write a stacked-bar PNG of energy per layer by component (matplotlib's Agg canvas, no display)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = self._measured()
        if not rows:
            raise Error("the report has no layer with energy figures to plot")
        fig = Figure(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        x = list(range(len(rows)))
        bottom = [0.0] * len(rows)
        for colour, comp in zip(_COLOURS, COMPONENTS):
            values = [r.energy.components_uj[comp] for r in rows]
            if not any(values):
                continue
            ax.bar(x, values, bottom=bottom, color=colour, label=comp, width=0.8)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(x)
        ax.set_xticklabels([f"{r.name}\n{r.precision}" for r in rows], rotation=90, fontsize=7)
        ax.set_ylabel("energy (µJ)")
        ax.set_title(title or f"{self.model} on {self.hardware}: {self.energy_uj:.2f} µJ, {self.cycles} cycles")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            fig.savefig(str(tmp), dpi=120)
        return out


def report_from_estimates(model: str, hardware: str, layers, estimates) -> AccelReport:
    """An analytical report: ``layers`` (LayerInfo) with their :class:`~tvm_mp.accel.mapping.LayerEstimate`
    (a mapping name -> estimate, or a list in layer order)."""
    if not isinstance(estimates, dict):
        estimates = {layer.name: e for layer, e in zip(layers, estimates)}
    rows = []
    for layer in layers:
        est = estimates.get(layer.name)
        if est is None:
            rows.append(AccelLayerRow(layer.name, layer.op, "-", "cpu", layer.macs, None, None, None, "cpu"))
        else:
            rows.append(AccelLayerRow(layer.name, layer.op, est.precision, str(est.mapping), layer.macs, est.cycles,
                                      est.latency_us, est.energy, "analytical"))
    return AccelReport(model, hardware, tuple(rows))
