"""Generic genetic-programming engine over named statistic tensors (knows nothing of ViTs).

The public API, for experiment scripts::

    from gp_proxy import DiscoveryConfig, best_of_runs, discover, load_proxy

    result = discover(tasks, DiscoveryConfig(iterations=300, seed=0), "runs/seed0")
    run_dir, proxy = best_of_runs(["runs/seed0", "runs/seed1"])

Names are imported on first use (PEP 562), so `import gp_proxy` stays cheap: torch, scipy,
DEAP and sympy load with the first name that needs them, networkx with `to_graph`; never
vit_space. The modules: `primitives`, `program` (the language), `fitness`, `objective` (the
fitness of a program), `objective_file` and `dask_map` (scoring on a Dask cluster), `evolve` (the
algorithms), `config`, `discovery`, `checkpoint`, `results` (a run), `library`, `store`,
`simplification`, `symbolic`, `export`, `markdown`, `atomic`, `device`, `memory`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gp_proxy.errors import AutoproxError

__version__ = "0.1.0"

# name -> the submodule that defines it
_EXPORTS = {
    "Task": "fitness",
    "Report": "fitness",
    "jcm": "fitness",
    "kendall": "fitness",
    "correlations": "fitness",
    "report": "fitness",
    "bootstrap_difference": "fitness",
    "split_for_validation": "fitness",
    "DiscoveryConfig": "config",
    "discover": "discovery",
    "resolve_device": "device",
    "freed_memory_kept": "memory",
    "DiscoveryResult": "results",
    "best_of_runs": "results",
    "FrontRow": "results",
    "read_front": "results",
    "front_proxy": "results",
    "Objective": "objective",
    "Evaluator": "program",
    "parse": "program",
    "build_pset": "primitives",
    "known_proxy": "library",
    "SavedProxy": "store",
    "load_proxy": "store",
    "save_proxy": "store",
    "simplify": "simplification",
    "to_python": "export",
    "to_graph": "export",
    "to_sympy": "symbolic",
    "to_latex": "symbolic",
    "table": "markdown",
    "write_report": "markdown",
    "KNOWN_PROXIES": "library",
    "write_text": "atomic",
    "SavedEnsemble": "ensemble",
    "ensemble_of_run": "ensemble",
    "load_ensemble": "ensemble",
    "mean_rank": "ensemble",
    "save_ensemble": "ensemble",
}
__all__ = [
    "AutoproxError",
    "__version__",
    "DiscoveryConfig",
    "DiscoveryResult",
    "Evaluator",
    "FrontRow",
    "KNOWN_PROXIES",
    "Objective",
    "Report",
    "SavedEnsemble",
    "SavedProxy",
    "Task",
    "best_of_runs",
    "bootstrap_difference",
    "build_pset",
    "correlations",
    "discover",
    "ensemble_of_run",
    "freed_memory_kept",
    "front_proxy",
    "jcm",
    "kendall",
    "known_proxy",
    "load_ensemble",
    "load_proxy",
    "mean_rank",
    "parse",
    "read_front",
    "report",
    "resolve_device",
    "save_ensemble",
    "save_proxy",
    "simplify",
    "split_for_validation",
    "table",
    "to_graph",
    "to_latex",
    "to_python",
    "to_sympy",
    "write_report",
    "write_text",
]

if TYPE_CHECKING:
    from gp_proxy.atomic import write_text
    from gp_proxy.config import DiscoveryConfig
    from gp_proxy.device import resolve_device
    from gp_proxy.discovery import discover
    from gp_proxy.ensemble import SavedEnsemble, ensemble_of_run, load_ensemble, mean_rank, save_ensemble
    from gp_proxy.export import to_graph, to_python
    from gp_proxy.fitness import (
        Report,
        Task,
        bootstrap_difference,
        correlations,
        jcm,
        kendall,
        report,
        split_for_validation,
    )
    from gp_proxy.library import KNOWN_PROXIES, known_proxy
    from gp_proxy.markdown import table, write_report
    from gp_proxy.memory import freed_memory_kept
    from gp_proxy.objective import Objective
    from gp_proxy.primitives import build_pset
    from gp_proxy.program import Evaluator, parse
    from gp_proxy.results import DiscoveryResult, FrontRow, best_of_runs, front_proxy, read_front
    from gp_proxy.simplification import simplify
    from gp_proxy.store import SavedProxy, load_proxy, save_proxy
    from gp_proxy.symbolic import to_latex, to_sympy


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
