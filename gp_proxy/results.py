"""What a discovery run leaves: its result, the files saved in its folder, and the choice
among several runs.

    out_dir/proxies/rank01.json ...  the hall of fame, simplified, each with train and held-out
                                     correlations on every task (`gp_proxy.store` format)
    out_dir/halloffame.csv           the same proxies as a table: rank, expression, size, depth, JCMs,
                                     held-out tau per task, LaTeX, whether simplification changed it
    out_dir/pareto.csv               the Pareto front: the best training JCM at each program size
    out_dir/logbook.csv              per step: evaluations so far, children kept, best/median JCM,
                                     share valid, distinct programs and distinct JCMs
    out_dir/progress.png             those curves
    out_dir/summary.md               the hall of fame as a table
    out_dir/results.json             what those files were saved from (`results_key`) and the proxies'
                                     paths: resuming a finished run with the same tasks saves nothing
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from deap import tools

from gp_proxy.atomic import atomic_path, write_text
from gp_proxy.config import DiscoveryConfig
from gp_proxy.errors import AutoproxError
from gp_proxy.fitness import Task
from gp_proxy.objective import Objective
from gp_proxy.program import Evaluator
from gp_proxy.simplification import simplify
from gp_proxy.store import SavedProxy, load_proxy, save_proxy
from gp_proxy.symbolic import to_latex


@dataclass
class DiscoveryResult:
    """The outcome of `discover`.

    halloffame:  the best programs found (DEAP `PrimitiveTree`s, as found, not simplified), best
                 first; `fitness.values` = (training JCM, size in nodes).
    logbook:     DEAP `Logbook`, one record per iteration (0: the initial population) with the
                 columns iteration, evals (programs evaluated so far), kept, best, median, valid,
                 distinct, jcms (see `gp_proxy.evolve.make_stats`).
    evaluations: programs evaluated in the whole run (resumed sessions included).
    seconds:     search time of the whole run, in seconds (wall clock, resumed sessions included).
    front:       the Pareto front of everything evaluated: no other program has both a higher
                 training JCM and fewer nodes; smallest first.
    saved:       paths of `proxies/rank01.json`, ... (simplified, with their correlations).
    """

    halloffame: list
    logbook: tools.Logbook
    evaluations: int
    seconds: float
    front: list = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)


def save_results(
    result: DiscoveryResult,
    tasks: Sequence[Task],
    config: DiscoveryConfig,
    out_dir: Path,
    probe: dict,
    provenance: dict,
    validation: Objective | None = None,
) -> list[Path]:
    """Save the proxies (simplified on every task's statistics), `pareto.csv`, `logbook.csv`,
    `summary.md` and `progress.png` in `out_dir`; return the proxies' paths, best first.

    The proxies are the hall of fame in its order, or, with a `validation` objective, the hall of
    fame and the Pareto front ranked by validation JCM (then training JCM, then size). Nothing is
    saved when `out_dir/results.json` says the files there were saved from the same programs,
    configuration, tasks and probe (a finished run resumed): their paths are returned."""
    key = results_key(result, tasks, config, probe, provenance)
    if (saved := _saved_before(out_dir, key)) is not None:
        return saved
    reporter = Objective(tasks, config.jcm)
    names = sorted(set.intersection(*(set(t.bundle.names) for t in tasks)))
    groups = sorted(set.intersection(*(set(t.bundle.groups) for t in tasks)))
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    chosen = _ranked(result, validation, config.hall_of_fame)
    rows, paths, table_rows = [], [], []
    evaluators = [Evaluator(b, memo_bytes=1 << 28) for b in {id(t.bundle): t.bundle for t in tasks}.values()]
    for rank, (ind, checked) in enumerate(chosen, start=1):
        simple = simplify(ind, evaluators)
        report = reporter.report(simple.tree)
        fitness = {"jcm_mode": config.jcm, **report.as_dict()}
        if checked is not None:
            fitness["jcm_validation"] = checked
        about = {**provenance, "seed": config.seed, "algorithm": config.algorithm, "date": date}
        about |= {"evaluations": result.evaluations, "rank": rank, "size": len(simple.tree)}
        proxy = SavedProxy(simple.expression, names, groups, probe, fitness, about, simple.as_dict())
        paths.append(save_proxy(out_dir / "proxies" / f"rank{rank:02d}.json", proxy))
        table_rows.append(_halloffame_row(proxy, simple.tree, str(ind), tasks))
        shown = f"`{simple.expression}`" + (f" (found as `{ind}`)" if simple.expression != str(ind) else "")
        taus = [report.test.get(t.name, {}).get("kendall", float("nan")) for t in tasks]
        rows.append(
            f"| {rank} | {shown} | {len(simple.tree)} | {report.jcm_train:.4f} | "
            + (f"{checked:.4f} | " if checked is not None else "")
            + f"{report.jcm_test:.4f} | "
            + " | ".join(f"{tau:.3f}" for tau in taus)
            + " |"
        )
    _write_csv(out_dir / "halloffame.csv", table_rows)
    front = _save_front(result.front, reporter, validation, out_dir / "pareto.csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=result.logbook.header)
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in result.logbook.header} for r in result.logbook)
    write_text(out_dir / "logbook.csv", buffer.getvalue())
    last, shown_validation = result.logbook[-1], validation is not None
    write_text(
        out_dir / "summary.md",
        "\n".join(
            [
                f"# Discovered proxies ({config.algorithm}, seed {config.seed})",
                "",
                f"{result.evaluations} programs evaluated in {result.seconds:.0f} s of search "
                f"({result.evaluations / max(result.seconds, 1e-9):.1f} per second; the whole run, resumed sessions "
                f"included) on {len(tasks)} tasks: "
                + ", ".join(f"{t.name} ({len(t.train)} train / {len(t.test)} held-out archs)" for t in tasks)
                + ".",
                f"JCM = {config.jcm} of Kendall tau over the tasks; held-out = architectures never seen by the search."
                + (
                    f" Validation = the {config.validation:.0%} of each task's training architectures (seed "
                    f"{config.validation_seed}) the search never saw; the proxies are ranked by it."
                    if shown_validation
                    else ""
                ),
                (
                    f"Final population: {last['distinct']} distinct programs, {last['jcms']} distinct training JCMs "
                    "(curves: `progress.png`, `logbook.csv`)."
                ),
                "",
                "| rank | expression | size | JCM train | "
                + ("JCM validation | " if shown_validation else "")
                + "JCM held-out | "
                + " | ".join(f"tau held-out {t.name}" for t in tasks)
                + " |",
                "|---|---|---|---|---|" + ("---|" if shown_validation else "") + "---|" * len(tasks),
                *rows,
                "",
                "## Pareto front: the best training JCM at each size (`pareto.csv`)",
                "",
                "| size | expression | JCM search | "
                + ("JCM validation | " if shown_validation else "")
                + "JCM held-out |",
                "|---|---|---|---|" + ("---|" if shown_validation else ""),
                *front,
                "",
            ]
        ),
    )
    plot_progress(result.logbook, out_dir / "progress.png", f"{config.algorithm}, seed {config.seed}")
    record = {"key": key, "proxies": [p.relative_to(out_dir).as_posix() for p in paths]}
    write_text(out_dir / "results.json", json.dumps(record, indent=1) + "\n")
    return paths


def _halloffame_row(proxy: SavedProxy, tree, found: str, tasks: Sequence[Task]) -> dict:
    """One row of `halloffame.csv` (NaN where a JCM is undefined or not measured)."""
    fitness = proxy.fitness
    row = {
        "rank": proxy.provenance["rank"],
        "expression": proxy.expression,
        "size": len(tree),
        "depth": tree.height,
        "jcm_train": _number(fitness.get("jcm_train")),
        "jcm_validation": _number(fitness.get("jcm_validation")),
        "jcm_test": _number(fitness.get("jcm_test")),
    }
    row |= {f"tau_test:{t.name}": _number(fitness.get("test", {}).get(t.name, {}).get("kendall")) for t in tasks}
    return row | {"latex": to_latex(tree), "simplified": proxy.expression != found, "found_as": found}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["rank"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


RESULTS_LAYOUT = 2  # bump when save_results writes other files: a finished run resumed is then saved again


def results_key(
    result: DiscoveryResult, tasks: Sequence[Task], config: DiscoveryConfig, probe: dict, provenance: dict
) -> str:
    """SHA-256 of what `save_results` writes from: the hall of fame and front as found, the
    configuration, each task's name, architectures, accuracies and split, the probe and provenance."""
    payload = {
        "layout": RESULTS_LAYOUT,
        "halloffame": [str(ind) for ind in result.halloffame],
        "front": [str(ind) for ind in result.front],
        "evaluations": result.evaluations,
        "config": config.as_dict(),
        "tasks": [
            [t.name, list(t.bundle.ids), [float(a) for a in t.accuracy], t.train.tolist(), t.test.tolist()]
            for t in tasks
        ],
        "probe": probe,
        "provenance": provenance,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _saved_before(out_dir: Path, key: str) -> list[Path] | None:
    """The proxies saved in `out_dir` from the same `results_key`, if all are still there."""
    try:
        record = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
        paths = [out_dir / name for name in record["proxies"]] if record["key"] == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if paths is None or not all(p.is_file() for p in paths):
        return None
    return paths


def _ranked(result: DiscoveryResult, validation: Objective | None, count: int) -> list[tuple[object, float | None]]:
    """(program, validation JCM or None), best first: the hall of fame as it is, or the hall of fame
    and the front ranked by validation JCM, then the search's JCM, then size; `count` of them."""
    if validation is None:
        return [(ind, None) for ind in result.halloffame[:count]]
    pool = list({str(ind): ind for ind in [*result.halloffame, *result.front]}.values())
    checked = [(ind, validation.report(ind).jcm_train) for ind in pool]
    checked.sort(key=lambda pair: (-_finite(pair[1]), -pair[0].fitness.values[0], len(pair[0])))
    return checked[:count]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _save_front(front: list, reporter: Objective, validation: Objective | None, path: Path) -> list[str]:
    """Write the Pareto front (smallest first) as CSV; return its Markdown rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["size", "expression", "jcm_search", "jcm_validation", "jcm_test"])
    rows = []
    for ind in sorted(front, key=len):
        held_out = reporter.report(ind).jcm_test
        checked = validation.report(ind).jcm_train if validation is not None else float("nan")
        writer.writerow([len(ind), str(ind), ind.fitness.values[0], checked, held_out])
        rows.append(
            f"| {len(ind)} | `{ind}` | {ind.fitness.values[0]:.3f} | "
            + (f"{checked:.3f} | " if validation is not None else "")
            + f"{held_out:.3f} |"
        )
    write_text(path, buffer.getvalue())
    return rows


def plot_progress(logbook: tools.Logbook, path: Path, title: str) -> None:
    """Best and median training JCM against evaluations, with the population's diversity
    (distinct programs, distinct JCMs) on a twin axis; drawn with Agg, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def column(key: str) -> list[float]:
        return [r[key] if math.isfinite(r[key]) else math.nan for r in logbook]

    evals = column("evals")
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(evals, column("best"), color="tab:blue", label="best JCM")
    ax.plot(evals, column("median"), color="tab:cyan", label="median JCM")
    ax.set(xlabel="programs evaluated", ylabel="training JCM", title=f"discover ({title})")
    twin = ax.twinx()
    twin.plot(evals, column("distinct"), "--", color="tab:green", label="distinct programs")
    twin.plot(evals, column("jcms"), ":", color="tab:red", label="distinct JCMs")
    twin.set(ylabel="in the population", ylim=(0, None))
    lines = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.9, bottom=0.12, top=0.92)  # fixed: tight_layout costs 0.3 s
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def best_of_runs(run_dirs: Sequence[str | Path]) -> tuple[Path, SavedProxy]:
    """The proxy a user is given from several runs of `discover` (their `out_dir`s): each run's
    best (`proxies/rank01.json`), then the one with the highest validation JCM when every run
    kept a validation share, else the highest training JCM; ties go to the smaller program
    (nodes), then the earlier run. Held-out numbers never enter the choice. Returns (that run's
    folder, its proxy)."""
    if not run_dirs:
        raise AutoproxError("no runs to choose from")
    runs = [(Path(d), load_proxy(Path(d) / "proxies" / "rank01.json")) for d in run_dirs]
    column = "jcm_validation" if all("jcm_validation" in p.fitness for _, p in runs) else "jcm_train"

    def key(item: tuple[int, tuple[Path, SavedProxy]]) -> tuple[float, int, int]:
        position, (_, proxy) = item
        value = proxy.fitness.get(column)  # None: saved as invalid (NaN)
        return (-math.inf if value is None else value), -len(proxy.tree()), -position

    return max(enumerate(runs), key=key)[1]


@dataclass(frozen=True)
class FrontRow:
    """One program of a run's Pareto front: its size (nodes), expression, training JCM and validation
    JCM (NaN without a validation share). Held-out JCMs stay in `pareto.csv`, out of the choice."""

    size: int
    expression: str
    jcm_train: float
    jcm_validation: float


def read_front(run_dir: str | Path) -> list[FrontRow]:
    """The Pareto front `discover` saved in `run_dir` (`pareto.csv`), smallest program first."""
    path = Path(run_dir) / "pareto.csv"
    if not path.is_file():
        raise AutoproxError(f"{run_dir} has no Pareto front (no pareto.csv): give the --out folder of `discover`")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [
                FrontRow(int(r["size"]), r["expression"], float(r["jcm_search"]), float(r["jcm_validation"]))
                for r in csv.DictReader(f)
            ]
    except (KeyError, ValueError, TypeError) as e:
        raise AutoproxError(f"{path} is not a Pareto front written by `discover` ({type(e).__name__}: {e})") from e
    return sorted(rows, key=lambda r: r.size)


def front_proxy(run_dir: str | Path, size: int) -> SavedProxy:
    """The front's program of `size` nodes as a saved proxy (statistics and probe spec of the run's
    `proxies/rank01.json`), for a user who picks the knee of the front instead of the best JCM."""
    front = read_front(run_dir)
    row = next((r for r in front if r.size == size), None)
    if row is None:
        raise AutoproxError(f"size must be one of the front's sizes {[r.size for r in front]}; got {size}")
    best = load_proxy(Path(run_dir) / "proxies" / "rank01.json")
    fitness = {"jcm_mode": best.fitness.get("jcm_mode", "mean"), "jcm_train": row.jcm_train}
    if math.isfinite(row.jcm_validation):
        fitness["jcm_validation"] = row.jcm_validation
    provenance = {k: v for k, v in best.provenance.items() if k != "rank"} | {"size": size, "front_of": str(run_dir)}
    return SavedProxy(row.expression, best.names, best.groups, best.probe, fitness, provenance)
