"""The scaling results as Markdown tables and a figure, each number labelled
modelled or measured; what they mean is in bench/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import machine
from scaling_model import DEVICES

MODES = {"episodes": "whole episodes", "steps": "batches of steps"}


def _h(hours: float, *more: float) -> str:
    """``hours`` (and ``more``, as a range) in hours or minutes."""
    scale, unit = (1, "h") if hours >= 1 else (60, "min")
    text = f"{hours * scale:.1f} {unit}"
    return text + (" (" + "-".join(f"{h * scale:.1f}" for h in more) + ")" if more else "")


def _batch(row: dict[str, Any]) -> str:
    if row["mode"] == "steps":
        return f"{row['batch']} slots of >= {row['quota']:,} steps"
    return f"batch {row['batch']}"


def _rows(record: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    return record["model_steps" if mode == "steps" else "model"]


def _mode_table(record: dict[str, Any], mode: str) -> list[str]:
    """One mode's modelled rows, CPU, GPU and none for every setup."""
    steps = mode == "steps"
    lines = [
        "| N cores | actors | batch | update on | steps/s | actors idle in rollouts | of it, "
        "waiting for the last | update share | "
        + ("a share past its quota, mean (p95) | " if steps else "")
        + f"time to running reward {record['inputs']['level']:g} (5-95%) |",
        "|---:|---|---|---|---:|---:|---:|---:|" + ("---:|" if steps else "") + "---:|",
    ]
    for r in _rows(record, mode):
        head = f"| {r['cores']} | {r['actors']} | {_batch(r)} | {DEVICES[r['update_on']]} |"
        if r["status"] != "ok":
            lines.append(head + " pending |" * (6 if steps else 5))
            continue
        past = (
            f" {r['share_past_quota_mean']:,.0f} ({r['share_past_quota_p95']:,.0f}) |"
            if steps
            else ""
        )
        lines.append(
            f"{head} {r['steps_per_s']:,.0f} | {r['idle_in_rollouts']:.1%} | "
            f"{r['waiting_in_rollouts']:.1%} | {r['update_share']:.1%} |{past} "
            f"{_h(r['hours_to_level'], *r['hours_to_level_p5_p95'])} |"
        )
    return lines


def markdown(record: dict[str, Any]) -> str:
    inputs, settings, level = record["inputs"], record["settings"], record["inputs"]["level"]
    costs = inputs["costs"]
    lines = [
        machine.markdown_header(record["machine"], "Scaling: where a run's time goes"),
        f"Load average at the end: {record['machine'].get('load_average_at_end')}.",
        "",
        f"Inputs (all in the JSON): whole episodes `{inputs['log']}` "
        f"({inputs['steps_to_level'] / 1e6:.1f}M steps to {level:g}); batches of steps "
        f"`{inputs['steps_games']}`'s games, {inputs['steps_to_level_steps'] / 1e6:.1f}M steps "
        f"({inputs['steps_from']}); one actor {1 / costs['step_s']:,.0f} steps/s "
        f"({inputs['speed_source']}); CPU update and other costs measured here; GPU update "
        + ("; ".join(inputs["gpu_sources"]) or "none committed")
        + ".",
        "",
        "## Modelled, side by side (CPU update)",
        "",
        f"Means over {settings['resamples']} resamplings of the games; all **modelled**.",
        "",
        "| N cores | actors | whole episodes: batch | idle in rollouts | steps/s | time to "
        f"{level:g} | batches of steps: slots | idle in rollouts | steps/s | time to {level:g} |",
        "|---:|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for cores, actors in dict.fromkeys((r["cores"], r["actors"]) for r in record["model"]):
        cells = f"| {cores} | {actors} |"
        for mode in MODES:
            r = next(
                r
                for r in _rows(record, mode)
                if (r["cores"], r["actors"], r["update_on"]) == (cores, actors, "cpu")
            )
            cells += (
                f" {_batch(r)} | {r['idle_in_rollouts']:.1%} | {r['steps_per_s']:,.0f} | "
                f"{_h(r['hours_to_level'])} |"
            )
        lines.append(cells)
    for mode in MODES:
        lines += ["", f"## Modelled: {MODES[mode]}", "", *_mode_table(record, mode)]
    lines += [
        "",
        '"none (0 s)": an update that takes no time. "Idle in rollouts" is the share the '
        "trainer reports at the end of a run.",
        "",
        "## Check against training measured here",
        "",
    ]
    if record["check"]:
        lines += [
            "The trainer (CPU, a fresh agent, seed 0), timed after its first batch, against the "
            "model of the same shares: (a) with each share's own actor time, (b) at the model's "
            "actor speed.",
            "",
            "| mode | N | batch | batches timed | steps/batch | measured steps/s | (a) modelled "
            "| error | (b) modelled | error | actors idle, measured | (a) modelled |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in record["check"]:
            a, b = r["modelled_own_times"], r["modelled_model_speed"]
            lines.append(
                f"| {MODES[r['mode']]} | {r['cores']} | {r['batch']} | {r['batches_timed']} | "
                f"{r['steps_per_batch']:,.0f} | {r['measured_steps_per_s']:,.0f} | "
                f"{a['steps_per_s']:,.0f} | {r['error_own_times']:+.1%} | {b['steps_per_s']:,.0f} "
                f"| {r['error_model_speed']:+.1%} | {r['measured_idle_in_rollouts']:.1%} | "
                f"{a['idle_in_rollouts']:.1%} |"
            )
    else:
        lines.append("Not run (`--no-check`).")
    return "\n".join([*lines, ""])


def figure(record: dict[str, Any], path: Path) -> None:
    """Steps/s and time to the level against cores, both modes and every device."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    speed, hours = fig.subplots(1, 2)
    for mode, line in (("episodes", "-"), ("steps", "--")):
        for device, colour in (("cpu", "C0"), ("gpu", "C1"), ("none", "C2")):
            ok = [
                r
                for r in _rows(record, mode)
                if (r["update_on"], r["status"], r["actors"]) == (device, "ok", "processes")
            ]
            label = f"{MODES[mode]}, update: {DEVICES[device]}"
            x = [r["cores"] for r in ok]
            speed.plot(
                x, [r["steps_per_s"] for r in ok], line, color=colour, marker="o", label=label
            )
            hours.plot(x, [60 * r["hours_to_level"] for r in ok], line, color=colour, marker="o")
    checks = record["check"]
    speed.plot([r["cores"] for r in checks], [r["measured_steps_per_s"] for r in checks], "kx",
               markersize=10, label="training measured here")  # fmt: skip
    cores = sorted({r["cores"] for r in record["model"] if r["actors"] == "processes"})
    for ax, title in ((speed, "training steps/s"), (hours, "minutes to the level")):
        ax.set_xscale("log", base=2)
        ax.set(yscale="log", xlabel="cores (actors)", title=f"{title} (modelled)")
        ax.set_xticks(cores, [str(n) for n in cores])
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    speed.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
