"""The scaling results as Markdown tables and a figure: numbers with their
labels (modelled or measured) and where they came from; what they mean is in
bench/README.md."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import machine
import numpy as np
from scaling_model import DEVICES, GPU_HOWTO

MODES = {"episodes": "whole episodes", "steps": "batches of steps"}


def _h(hours: float, *more: float) -> str:
    """``hours`` (and ``more`` in the same unit, as a range) in hours or minutes."""
    scale, unit = (1, "h") if hours >= 1 else (60, "min")
    text = f"{hours * scale:.1f} {unit}"
    if more:
        text += " (" + "-".join(f"{h * scale:.1f}" for h in more) + ")"
    return text


def _pct(share: float) -> str:
    return f"{share:.1%}"


def _batch(row: dict[str, Any]) -> str:
    """What a modelled row's batch is, in words."""
    if row["mode"] == "steps":
        return f"{row['batch']} slots of >= {row['quota']:,} steps"
    return f"batch {row['batch']}"


def _find(record: dict[str, Any], mode: str, cores: int, actors: str, device: str) -> Any:
    """The modelled row of ``mode`` for that setup and update device, or None."""
    rows = record["model_steps" if mode == "steps" else "model"]
    return next(
        (r for r in rows if (r["cores"], r["actors"], r["update_on"]) == (cores, actors, device)),
        None,
    )


def _setups(record: dict[str, Any]) -> list[tuple[int, str]]:
    """(cores, actors) of every modelled setup, in the tables' order."""
    return list(dict.fromkeys((r["cores"], r["actors"]) for r in record["model"]))


def check_line(row: dict[str, Any], mode: str, times: str) -> str:
    """A check row as a sentence: measured against (a) and (b)."""
    return (
        f"check, {MODES[mode]}, N={row['cores']}: measured {row['measured_steps_per_s']:,.0f} "
        f"training steps/s; modelled {row['modelled_own_times']['steps_per_s']:,.0f} from the "
        f"run's own {times} times ({row['error_own_times']:+.1%}), "
        f"{row['modelled_model_speed']['steps_per_s']:,.0f} at the model's actor speed "
        f"({row['error_model_speed']:+.1%}"
    )


def verdicts(record: dict[str, Any]) -> list[str]:
    """The results in lines of numbers, printed at the end of a run."""
    level = record["inputs"]["level"]
    out = []
    for row in record["check"]:
        out.append(
            check_line(row, "episodes", "episode")
            + (
                f"; {row['error_model_speed_vs_idle']:+.1%} against "
                f"{row['idle_measured_steps_per_s']:,.0f} measured on the idle machine)"
                if "idle_measured_steps_per_s" in row
                else ")"
            )
        )
    for row in record["check_steps"]:
        out.append(
            check_line(row, "steps", "share")
            + f"); actors idle {_pct(row['measured_idle_in_rollouts'])} of the rollouts measured, "
            f"{_pct(row['modelled_own_times']['idle_in_rollouts'])} modelled (a)"
        )
    for cores, actors in _setups(record):
        parts = []
        for mode in MODES:
            row = _find(record, mode, cores, actors, "cpu")
            parts.append(
                f"{MODES[mode]} ({_batch(row)}): actors idle {_pct(row['idle_in_rollouts'])} "
                f"of the rollouts, {row['steps_per_s']:,.0f} steps/s, running reward {level:g} "
                f"after {_h(row['hours_to_level'])}"
            )
        out.append(f"modelled, {cores} cores ({actors}), CPU update: " + "; ".join(parts))
    gpu = next((r for r in record["model"] if r["update_on"] == "gpu"), None)
    if gpu is not None and gpu["status"] != "ok":
        out.append(f"GPU update, both modes: {gpu['status']}")
    return out


def _model_table(record: dict[str, Any], mode: str) -> list[str]:
    """The Markdown table of one mode's modelled rows."""
    level = record["inputs"]["level"]
    steps = mode == "steps"
    lines = [
        "| N cores | actors | batch | update on | steps/s (modelled) | actors idle in rollouts "
        "(modelled) | of it, waiting for the last (modelled) | actors idle overall (modelled) | "
        "update share (modelled) | "
        + ("a share past its quota, mean (p95) (modelled) | " if steps else "")
        + f"time to running reward {level:g} (modelled) |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if steps else "") + "---:|",
    ]
    for row in record["model_steps" if steps else "model"]:
        head = f"| {row['cores']} | {row['actors']} | {_batch(row)} | {DEVICES[row['update_on']]} |"
        if row["status"] != "ok":
            lines.append(head + " pending |" * (7 if steps else 6))
            continue
        past = (
            f" {row['share_past_quota_mean']:,.0f} ({row['share_past_quota_p95']:,.0f}) steps |"
            if steps
            else ""
        )
        lo, hi = row["hours_to_level_p5_p95"]
        lines.append(
            f"{head} {row['steps_per_s']:,.0f} | {_pct(row['idle_in_rollouts'])} | "
            f"{_pct(row['waiting_in_rollouts'])} | {_pct(row['idle_overall'])} | "
            f"{_pct(row['update_share'])} |{past} "
            f"{_h(row['hours_to_level'], lo, hi)} |"
        )
    return lines


def _update_table(rows: list[dict[str, Any]], pieces: str) -> list[str]:
    """Timed CPU updates as a Markdown table; ``pieces`` names a batch's parts."""
    lines = [
        f"| B {pieces} | steps | update (ms) | per 10k steps (ms) |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['episodes']} | {r['steps']:,} | {r['seconds'] * 1e3:,.0f} | "
            f"{r['seconds'] / r['steps'] * 1e7:,.0f} |"
        )
    return lines


def _steps_inputs(record: dict[str, Any]) -> list[str]:
    """The batch-of-steps model's own inputs, as Markdown bullets."""
    inputs, settings = record["inputs"], record["settings"]
    steps, stream, level = inputs["batch_steps"], inputs["costs"]["stream"], inputs["level"]
    how = {
        "measured": "measured: that run's own",
        "assumed": "**an assumption**: as many as the whole-episode run of the games above "
        "needed, until a batch-of-steps run reaches the level (`--steps-log`)",
        "given": "given (`--steps-to-level`)",
    }[steps["steps_from"]]
    lines = [
        f"- S = {settings['batch_steps']:,} steps a batch, on C slots for N cores: the smallest "
        f"multiple of N not below {settings['min_batch']} (every actor plays as many shares); "
        "each share at least ceil(S / C) steps, then to the end of the point under way "
        "(`slot_share.share_ends`).",
        f"- Games: `{steps['games']}`, its first {steps['episodes_to_level']:,} episodes (to "
        f"running reward {level:g}), drawn within --window episodes of the run's progress. Steps "
        f"to running reward {level:g}: {steps['steps_to_level'] / 1e6:.1f}M, {how}.",
    ]
    if "steps_log" in steps:
        run = steps["steps_log"]
        reached = steps["steps_from"] == "measured"
        lines.append(
            f"- The batch-of-steps learning run `{run['log']}`: {run['episodes']:,} episodes, "
            f"{run['total_steps'] / 1e6:.1f}M steps logged, running reward "
            f"{run['running_reward']:+.2f} at its end (best {run['best_running_reward']:+.2f})"
            + ("." if reached else f": not yet at {level:g} when this ran.")
        )
    shapes = ", ".join(f"{name} {mean:.0f}" for name, mean in steps["point_shapes"].items())
    lines += [
        f"- Points: `{steps['points']}` (`bench_points.py`: real games, measured), mean point "
        f"by agent: {shapes} steps. Each modelled game has 42 - |reward| points summing to its "
        "logged steps, shaped as the agent's whose mean point is nearest the game's.",
        f"- A slot's stream into its actor and back out, per share, measured here (best of 30): "
        f"between games {stream['load_s'] * 1e3:.2f} ms to load and {stream['save_s'] * 1e3:.2f} "
        f"ms to save; a paused game {stream['load_paused_s'] * 1e3:.2f} ms to load (an ALE "
        f"reset and the sticky action's frames) and {stream['save_paused_s'] * 1e3:.2f} ms to "
        "save. Whole episodes pay the first pair per episode.",
        "- Update on the CPU, measured here as above, on C pieces of L steps (a share is about "
        "the quota to half as much again), fitted by steps per slot count:",
        "",
        *_update_table(steps["cpu_update"], "pieces"),
    ]
    ray = inputs["ray"]
    if ray:
        ray_costs_ms = [s * 1e3 for s in ray["call_s_by_round"]]
        link = ray["link_bytes_per_s"]
        lines += [
            "",
            f"- Ray clusters (both modes), from `{ray['file']}` ({ray['measured']}; "
            f"{ray['load_note']}): per share, Ray's own cost {statistics.median(ray_costs_ms):.1f} "
            "ms (the trainer's time per episode with one Ray actor less that with one local "
            "actor; rounds: " + ", ".join(f"{ms:.1f}" for ms in ray_costs_ms) + " ms), plus "
            f"{ray['bytes_per_step']:.0f} bytes a step over a {link * 8 / 1e9:g} Gbit/s link; per "
            f"batch, {ray['weights_bytes'] / 1e6:.1f} MB of weights to each node, one after "
            f"another ({ray['weights_bytes'] / link * 1e3:.0f} ms each).",
        ]
    return lines


def markdown(record: dict[str, Any]) -> str:
    inputs, costs = record["inputs"], record["inputs"]["costs"]
    m, settings, level = record["machine"], record["settings"], record["inputs"]["level"]
    lines = [
        machine.markdown_header(
            m, "Scaling: where a run's time goes, by core count, CPU and GPU, by batch mode"
        ),
        f"Load average at the end: {m.get('load_average_at_end')}."
        + (f" While it ran: {settings['note']}" if settings["note"] else ""),
        "",
        "## Inputs",
        "",
        f"- Episodes: `{inputs['log']}`, the {settings['log_setting']} run: running "
        f"reward {level:g} at episode {inputs['episodes_to_level']:,} after "
        f"{inputs['steps_to_level'] / 1e6:.1f}M steps (batch {settings['log_batch']}). "
        "Mean episode length by stage: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in inputs["mean_steps_by_stage"].items())
        + " steps.",
        f"- Rollout speed of one actor on an idle core: {1 / costs['step_s']:,.0f} steps/s "
        f"({inputs['speed_source']}). For comparison the log's own per-episode speeds had a "
        f"median of {inputs['log_median_steps_per_s']:,.0f} steps/s (that run shared its cores "
        f"for a while), and one actor here, while the costs below were timed, "
        f"{inputs['actor_steps_per_s_here']:,.0f} steps/s (best of 5 games). The costs below "
        "are this machine's, set against that idle actor's speed.",
        f"- Weights to one worker process: {costs['weights_s'] * 1e3:.1f} ms a batch, measured "
        f"here; a share's way back to the trainer: {costs['return_s_per_step'] * 1e9:.0f} ns "
        "a step, measured here.",
        "- Update on the CPU, measured here (float32, best of "
        f"{settings['repeats']} after a warm-up; synthetic batches of B episodes x L steps):",
        "",
        *_update_table(inputs["cpu_update"], "episodes"),
        "",
        "- Update on a GPU: "
        + ("; ".join(inputs["gpu_sources"]) if inputs["gpu_sources"] else GPU_HOWTO)
        + ".",
        "",
        f"### Batches of steps (`--batch-steps {settings['batch_steps']}`)",
        "",
        *_steps_inputs(record),
        "",
        "## Modelled, side by side: whole episodes and batches of steps (CPU update)",
        "",
        "All figures in this section's tables are **modelled** from the inputs above, not "
        f"measured: means over {settings['resamples']} resamplings of the games; the time to "
        "the running reward level with its 5-95% range over them in the tables below.",
        "",
        "| N cores | actors | whole episodes: batch | idle in rollouts (modelled) | steps/s "
        f"(modelled) | time to {level:g} (modelled) | batches of steps: slots | idle in rollouts "
        f"(modelled) | steps/s (modelled) | time to {level:g} (modelled) |",
        "|---:|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for cores, actors in _setups(record):
        cells = [f"| {cores} | {actors} |"]
        for mode in MODES:
            row = _find(record, mode, cores, actors, "cpu")
            cells.append(
                f" {_batch(row)} | {_pct(row['idle_in_rollouts'])} | {row['steps_per_s']:,.0f} "
                f"| {_h(row['hours_to_level'])} |"
            )
        lines.append("".join(cells))
    lines += [
        "",
        "## Modelled: whole episodes (today's default), a batch of max(10, N) episodes",
        "",
        *_model_table(record, "episodes"),
        "",
        f"## Modelled: batches of steps, S = {settings['batch_steps']:,} in C slots",
        "",
        *_model_table(record, "steps"),
        "",
        "GPU rows: "
        + ("from " + "; ".join(inputs["gpu_sources"]) if inputs["gpu_sources"] else GPU_HOWTO)
        + ".",
        "",
        'Update on "none (0 s)": an update that takes no time. "Actors idle in rollouts": the '
        'share the trainer reports at the end of a run; "overall" also counts the update and '
        "the weights' sending.",
        "",
        "## Check against training measured here: whole episodes",
        "",
    ]
    if record["check"]:
        lines += [
            "Training runs here (the trainer, float32 CPU update, a fresh agent, batch "
            f"{record['check'][0]['batch']}, seed 0), timed on the trainer's clock after the "
            "first batch. The model is given the same runs' episodes: (a) with each episode's "
            "logged time; (b) at the model's actor speed, also set against training measured on "
            "the idle machine (`results/throughput.json`).",
            "",
            "| N | batches timed | steps/episode | actor steps/s logged | measured steps/s | "
            "(a) modelled | error | (b) modelled | error | measured, idle machine | (b) error "
            "against it |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in record["check"]:
            idle = (
                f"{row['idle_measured_steps_per_s']:,.0f} | "
                f"{row['error_model_speed_vs_idle']:+.1%} |"
                if "idle_measured_steps_per_s" in row
                else " | |"
            )
            lines.append(
                f"| {row['cores']} | {row['batches_timed']} | {row['steps_per_episode']:,.0f} | "
                f"{row['actor_steps_per_s_logged']:,.0f} | {_check_cells(row)} {idle}"
            )
    else:
        lines.append("Not run (`--no-check`).")
    lines += ["", "## Check against training measured here: batches of steps", ""]
    if record["check_steps"]:
        first = record["check_steps"][0]
        lines += [
            f"Training runs here with `--batch-steps {settings['batch_steps']}` (the trainer, "
            f"float32 CPU update, a fresh agent, {first['batch']} slots, seed 0, until "
            f"{settings['check_steps_episodes']} episodes had ended), every share recorded from "
            "the trainer's own pool, timed after the first batch. The model is given the same "
            "shares: (a) with each share's own actor time; (b) at the model's actor speed.",
            "",
            "| N | slots | batches timed | steps/batch | actor steps/s (shares) | measured "
            "steps/s | (a) modelled | error | (b) modelled | error | actors idle measured | "
            "(a) modelled |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in record["check_steps"]:
            lines.append(
                f"| {row['cores']} | {row['batch']} | {row['batches_timed']} | "
                f"{row['steps_per_batch']:,.0f} | {row['actor_steps_per_s_logged']:,.0f} | "
                f"{_check_cells(row)} {_pct(row['measured_idle_in_rollouts'])} | "
                f"{_pct(row['modelled_own_times']['idle_in_rollouts'])} |"
            )
    else:
        lines.append("Not run (`--no-check`).")
    lines += ["", "The model's assumptions: bench/README.md, section Scaling.", ""]
    return "\n".join(lines)


def _check_cells(row: dict[str, Any]) -> str:
    """A check row's measured and modelled steps/s, with the model's errors."""
    return (
        f"{row['measured_steps_per_s']:,.0f} | "
        f"{row['modelled_own_times']['steps_per_s']:,.0f} | {row['error_own_times']:+.1%} | "
        f"{row['modelled_model_speed']['steps_per_s']:,.0f} | {row['error_model_speed']:+.1%} |"
    )


def figure(record: dict[str, Any], path: Path) -> None:
    """Both modes against cores: steps/s, time to the level, the actors' idle share,
    where the actors' time goes, and the wait for the point under way."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(16, 9.5), dpi=100)
    FigureCanvasAgg(fig)
    (speed, hours, idle), (today, steps_mode, past) = fig.subplots(2, 3)
    level = record["inputs"]["level"]
    cores = sorted({r["cores"] for r in record["model"] if r["actors"] == "processes"})
    for mode, line in (("episodes", "-"), ("steps", "--")):
        rows = record["model_steps" if mode == "steps" else "model"]
        for device, colour, marker in (("cpu", "C0", "o"), ("gpu", "C1", "s"), ("none", "C2", "^")):
            update = "taking no time" if device == "none" else f"on the {DEVICES[device]}"
            label = f"{MODES[mode]}, update {update} (modelled)"
            ok = [
                r
                for r in rows
                if r["update_on"] == device and r["status"] == "ok" and r["actors"] == "processes"
            ]
            if not ok:
                if mode == "episodes":
                    speed.plot([], [], colour + marker, label="update on the GPU: pending")
                continue
            x = [r["cores"] for r in ok]
            style = dict(color=colour, marker=marker, linestyle=line, markersize=5)
            speed.plot(x, [r["steps_per_s"] for r in ok], label=label, **style)
            hours.plot(x, [60 * r["hours_to_level"] for r in ok], label=label, **style)
            if device == "cpu":
                idle.plot(x, [r["idle_in_rollouts"] for r in ok], label=label, **style)
        ray = [r for r in rows if r["update_on"] == "cpu" and r["actors"] != "processes"]
        ray_style = dict(color="C3", marker="*" if mode == "steps" else "P", linestyle="none",
                         markersize=10)  # fmt: skip
        label = f"{MODES[mode]}, Ray clusters, CPU update (modelled)"
        speed.plot([r["cores"] for r in ray], [r["steps_per_s"] for r in ray], label=label,
                   **ray_style)  # fmt: skip
        hours.plot([r["cores"] for r in ray], [60 * r["hours_to_level"] for r in ray],
                   label=label, **ray_style)  # fmt: skip
        idle.plot([r["cores"] for r in ray], [r["idle_in_rollouts"] for r in ray], label=label,
                  **ray_style)  # fmt: skip
    step_s = record["inputs"]["costs"]["step_s"]
    speed.plot(cores, [n / step_s for n in cores], "k:", label="N actors, never waiting")
    for checks, marker, label in (
        (record["check"], "kx", "whole episodes"),
        (record["check_steps"], "k1", "batches of steps"),
    ):
        if checks:
            speed.plot([r["cores"] for r in checks], [r["measured_steps_per_s"] for r in checks],
                       marker, markersize=11,
                       label=f"training measured here, {label}, shared cores")  # fmt: skip
    idle_checks = [r for r in record["check"] if "idle_measured_steps_per_s" in r]
    speed.plot([r["cores"] for r in idle_checks],
               [r["idle_measured_steps_per_s"] for r in idle_checks], "k+", markersize=11,
               label="training measured on the idle machine, whole episodes")  # fmt: skip
    for ax, corner in ((speed, "upper left"), (hours, "upper right"), (idle, "upper left")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(cores, [str(n) for n in cores])
        ax.set_xlabel("cores (actors)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc=corner)
    for ax in (speed, hours):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    speed.set_ylabel("training steps/s")
    speed.set_title("Training speed (modelled)")
    hours.set_yticks([1, 2, 3, 5, 10, 20, 30, 60, 120, 240, 480])
    hours.set_ylabel(f"minutes to running reward {level:g}")
    hours.set_title(f"Time to running reward {level:g} (modelled)")
    idle.set_ylabel("share of the actors' rollout time")
    idle.set_title("Actors idle in rollouts, CPU update (modelled)")
    for ax, mode in ((today, "episodes"), (steps_mode, "steps")):
        _shares_bars(ax, record, mode)
    rows = [r for r in record["model_steps"] if r["update_on"] == "cpu"]
    x = np.arange(len(rows))
    past.bar(x - 0.2, [r["share_past_quota_mean"] for r in rows], 0.4,
             label="a share past its quota, mean")  # fmt: skip
    past.bar(x + 0.2, [r["longest_share_past_mean"] for r in rows], 0.4,
             label="a batch's longest share past its mean share")  # fmt: skip
    past.set_xticks(x, [f"{_where(r)}\n{r['batch']}x{r['quota']}" for r in rows], fontsize=7)
    past.set_xlabel("cores; slots x quota (steps)")
    past.set_ylabel("steps")
    past.set_title("Batches of steps: the wait for a point (modelled)")
    past.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _where(row: dict[str, Any]) -> str:
    """A modelled row's cores, for a figure's axis: "16", or "Ray 16"."""
    return str(row["cores"]) if row["actors"] == "processes" else f"Ray {row['cores']}"


def _shares_bars(ax: Any, record: dict[str, Any], mode: str) -> None:
    """Where one mode's actor time goes by setup, CPU update, as stacked bars."""
    rows = [
        r
        for r in record["model_steps" if mode == "steps" else "model"]
        if r["update_on"] == "cpu" and r["status"] == "ok"
    ]
    x = np.arange(len(rows))
    busy = np.array([1 - r["idle_overall"] for r in rows])
    update = np.array([r["update_share"] for r in rows])
    weights = np.array([r["weights_share"] for r in rows])
    bottom = np.zeros(len(rows))
    last = "share" if mode == "steps" else "episode"
    for part, label in (
        (busy, "actors playing"),
        (1 - busy - update - weights, f"waiting for a batch's last {last}; streams, way back"),
        (weights, "weights to the workers"),
        (update, "update (CPU)"),
    ):
        ax.bar(x, part, bottom=bottom, label=label)
        bottom += part
    ax.set_xticks(x, [_where(r) for r in rows], fontsize=8)
    ax.set_xlabel("cores (actors)")
    ax.set_ylabel("share of the actors' wall time")
    ax.set_title(f"The actors' time, {MODES[mode]}, CPU update (modelled)")
    ax.legend(fontsize=8, loc="lower left")
