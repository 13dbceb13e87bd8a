"""The programs a run remembers: its best, and the Pareto front of training JCM against size."""

from __future__ import annotations

from deap import tools

from gp_proxy.evolve import same_fitness


def same_values(a, b) -> bool:
    """Pareto-front similarity: the same (rounded JCM, size); of such programs the first found stays."""
    return a.fitness.values == b.fitness.values


class HallOfFame(tools.HallOfFame):
    """DEAP's hall of fame (the `maxsize` best by training JCM, one per JCM value) that also keeps
    `front`: every program seen that no other beats in both training JCM and size (fewer nodes),
    as PySR keeps one equation per complexity. The evolution loops update it as DEAP's do."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize, similar=same_fitness)
        self.front = tools.ParetoFront(similar=same_values)

    def update(self, population) -> None:
        super().update(population)
        self.front.update(population)

    def clear(self) -> None:
        super().clear()
        self.front.clear()
