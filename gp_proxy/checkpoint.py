"""Checkpoints of a discovery run: one JSON file, written atomically, read by parsing.

    {"version": 2, "config": {...}, "iteration": ..., "evaluations": ..., "seconds": ...,
     "random_state": [...], "population": [{"expression": ..., "fitness": [jcm, size]}, ...],
     "halloffame": [...], "front": [...], "logbook": [{record}, ...]}

`config` is the run's `DiscoveryConfig.as_dict()` (a resume must match it); `seconds` is the
search time of every session so far. Expressions are parsed back against the primitive set,
never unpickled.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from deap import creator, gp, tools

from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.evolve import make_stats, new_logbook
from gp_proxy.program import parse

CHECKPOINT_VERSION = 2  # 2: no duplicates in the population, cumulative search seconds


def save_checkpoint(
    path: Path, config: dict, population: list, halloffame: tools.HallOfFame, logbook: tools.Logbook, seconds: float
) -> None:
    """Write the run's state after the logbook's last iteration, with the random state."""
    state = random.getstate()
    dump = lambda inds: [{"expression": str(i), "fitness": list(i.fitness.values)} for i in inds]  # noqa: E731
    write_text(
        path,
        json.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "config": config,
                "iteration": logbook[-1]["iteration"],
                "evaluations": logbook[-1]["evals"],
                "seconds": seconds,
                "random_state": [state[0], list(state[1]), state[2]],
                "population": dump(population),
                "halloffame": dump(halloffame.items),
                "front": dump(getattr(halloffame, "front", [])),
                "logbook": list(logbook),
            }
        ),
    )


def load_checkpoint(
    path: Path, pset: gp.PrimitiveSetTyped, config: dict, halloffame: tools.HallOfFame
) -> tuple[list, tools.Logbook, float]:
    """Read a checkpoint written with the same `config`: restore the random state, fill
    `halloffame`, and return (population, logbook, seconds searched so far); AutoproxError if
    it is of another version or configuration, or corrupt."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != CHECKPOINT_VERSION:
            raise AutoproxError(
                f"checkpoint {path} has version {state.get('version')!r}, expected {CHECKPOINT_VERSION}"
            )
        if state["config"] != json.loads(json.dumps(config)):
            raise AutoproxError(
                f"checkpoint {path} comes from another configuration; use a new --out folder or the same options"
            )

        def load(items):
            out = []
            for item in items:
                ind = creator.Proxy(parse(item["expression"], pset))
                ind.fitness.values = tuple(float(v) for v in item["fitness"])
                out.append(ind)
            return out

        population = load(state["population"])
        halloffame.update(load(state["halloffame"]))
        if hasattr(halloffame, "front"):
            halloffame.front.update(load(state.get("front", [])))  # absent in older checkpoints
        logbook = new_logbook(make_stats())
        logbook.extend(state["logbook"])
        if (logbook[-1]["iteration"], logbook[-1]["evals"]) != (state["iteration"], state["evaluations"]):
            raise ValueError("the logbook's last record is not the checkpoint's iteration")
        version, internal, gauss = state["random_state"]
        random.setstate((version, tuple(internal), gauss))
        return population, logbook, float(state["seconds"])
    except AutoproxError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise AutoproxError(f"checkpoint {path} is corrupt ({type(e).__name__}: {e}); delete it to start over") from e
