"""How sweeps print what a user reads: parameter values rounded, a trial's parameters as a table, and what
differs between a study's recorded settings and a worker's, named by the command-line option."""

from __future__ import annotations


def settings_diff(old: dict, new: dict) -> list[str]:
    """What differs between a study's recorded settings and this worker's, by the option a user types:
    `--lr 0.001 (the study: 0.0003)`, `the space (--space): lr`, `--data`."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "fixed" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"--{k.replace('_', '-')} {fmt_value(b.get(k))} (the study: {fmt_value(a.get(k))})"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif key == "space" and isinstance(a, dict) and isinstance(b, dict):
            names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            out.append(f"the space (--space) differs in {', '.join(names)}")
        elif key in ("sampler", "pruner") and isinstance(a, dict) and isinstance(b, dict):
            options = {"seed": "--sampler-seed", "n_startup_trials": "--startup-trials",
                       "min_resource": "--min-resource-steps", "reduction_factor": "--eta"}
            out += [f"{options.get(k, k)} {fmt_value(b.get(k))} (the study: {fmt_value(a.get(k))})"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            option = {"kind": "the sweep kind"}.get(key, f"--{key}")
            out.append(f"{option} {fmt_value(b)} (the study: {fmt_value(a)})")
    return out


def params_table(params: dict, title: str):
    """A trial's parameters as a two-column table, values rounded (fmt_value)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for name, value in params.items():
        table.add_row(name, fmt_value(value))
    return table


def fmt_value(v) -> str:
    """A parameter value as the sweep tables print it (floats to 3 significant digits)."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)
