"""What a discovery run leaves: its result, the files saved in its folder, and the choice
among several runs.

    out_dir/proxies/rank01.json ...  the hall of fame, simplified, each with train and held-out
                                     correlations on every task (`gp_proxy.store` format)
    out_dir/logbook.csv              per step: evaluations so far, children kept, best/median JCM,
                                     share valid, distinct programs and distinct JCMs
    out_dir/progress.png             those curves
    out_dir/summary.md               the hall of fame as a table
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from deap import tools

from gp_proxy.atomic import atomic_path, write_text
from gp_proxy.config import DiscoveryConfig
from gp_proxy.errors import AutoproxError
from gp_proxy.evolve import Objective
from gp_proxy.program import Evaluator
from gp_proxy.simplification import simplify
from gp_proxy.store import SavedProxy, load_proxy, save_proxy


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
    saved:       paths of `proxies/rank01.json`, ... (simplified, with their correlations).
    """

    halloffame: list
    logbook: tools.Logbook
    evaluations: int
    seconds: float
    saved: list[Path] = field(default_factory=list)


def save_results(
    result: DiscoveryResult, objective: Objective, config: DiscoveryConfig, out_dir: Path, probe: dict, provenance: dict
) -> list[Path]:
    """Save the hall of fame (simplified on every task's statistics), `logbook.csv`, `summary.md`
    and `progress.png` in `out_dir`; return the proxies' paths, best first."""
    names = sorted(set.intersection(*(set(t.bundle.names) for t in objective.tasks)))
    groups = sorted(set.intersection(*(set(t.bundle.groups) for t in objective.tasks)))
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows, paths = [], []
    bundles = {id(t.bundle): t.bundle for t in objective.tasks}
    evaluators = [Evaluator(b, memo_bytes=1 << 28) for b in bundles.values()]
    for rank, ind in enumerate(result.halloffame, start=1):
        simple = simplify(ind, evaluators)
        report = objective.report(simple.tree)
        proxy = SavedProxy(
            simple.expression,
            names,
            groups,
            probe,
            {"jcm_mode": config.jcm, **report.as_dict()},
            {
                **provenance,
                "seed": config.seed,
                "algorithm": config.algorithm,
                "date": date,
                "evaluations": result.evaluations,
                "rank": rank,
                "size": len(simple.tree),
            },
            simple.as_dict(),
        )
        paths.append(save_proxy(out_dir / "proxies" / f"rank{rank:02d}.json", proxy))
        shown = f"`{simple.expression}`" + (f" (found as `{ind}`)" if simple.expression != str(ind) else "")
        taus = [report.test.get(t.name, {}).get("kendall", float("nan")) for t in objective.tasks]
        rows.append(
            f"| {rank} | {shown} | {len(simple.tree)} | {report.jcm_train:.4f} | {report.jcm_test:.4f} | "
            + " | ".join(f"{tau:.3f}" for tau in taus)
            + " |"
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=result.logbook.header)
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in result.logbook.header} for r in result.logbook)
    write_text(out_dir / "logbook.csv", buffer.getvalue())
    tasks, last = objective.tasks, result.logbook[-1]
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
                f"JCM = {config.jcm} of Kendall tau over the tasks; held-out = architectures never seen by the search.",
                (
                    f"Final population: {last['distinct']} distinct programs, {last['jcms']} distinct training JCMs "
                    "(curves: `progress.png`, `logbook.csv`)."
                ),
                "",
                "| rank | expression | size | JCM train | JCM held-out | "
                + " | ".join(f"tau held-out {t.name}" for t in tasks)
                + " |",
                "|---|---|---|---|---|" + "---|" * len(tasks),
                *rows,
                "",
            ]
        ),
    )
    plot_progress(result.logbook, out_dir / "progress.png", f"{config.algorithm}, seed {config.seed}")
    return paths


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
    best (`proxies/rank01.json`), then the one with the highest training JCM; ties go to the
    smaller program (nodes), then the earlier run. Held-out numbers never enter the choice.
    Returns (that run's folder, its proxy)."""
    if not run_dirs:
        raise AutoproxError("no runs to choose from")
    runs = [(Path(d), load_proxy(Path(d) / "proxies" / "rank01.json")) for d in run_dirs]

    def key(item: tuple[int, tuple[Path, SavedProxy]]) -> tuple[float, int, int]:
        position, (_, proxy) = item
        train = proxy.fitness.get("jcm_train")  # None: saved as invalid (NaN)
        return (-math.inf if train is None else train), -len(proxy.tree()), -position

    return max(enumerate(runs), key=key)[1]
