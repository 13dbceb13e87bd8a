"""The settings of a discovery run: the one place where their defaults live."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gp_proxy.errors import AutoproxError
from gp_proxy.evolve import ALGORITHMS
from gp_proxy.fitness import JCM_MODES
from gp_proxy.library import known_proxy


@dataclass(frozen=True)
class DiscoveryConfig:
    """Everything that decides a run's result (a resume must use the same, bar `iterations`,
    `max_evaluations` and `checkpoint_every`). JCMs are of Kendall tau, in [-1, 1]; sizes and
    heights count tree nodes and levels."""

    algorithm: str = "elitism"  # a name in gp_proxy.evolve.ALGORITHMS: "elitism" or "mu+lambda"
    iterations: int = 1000  # elitism-preserve steps, or (mu + lambda) generations
    max_evaluations: int = 0  # stop once this many programs were evaluated (0: no limit)
    population: int = 50
    seed: int = 0
    jcm: str = "mean"
    pool_ratio: float = 0.5  # elitism: pool size as a share of the population
    top_k: int = 5  # elitism: parent drawn from the pool's top k
    margin: float = 0.01  # elitism: child kept if JCM >= parent's - margin
    max_tries: int = 5  # elitism: evaluated mutations of a parent before giving up
    max_draws: int = 20  # draws of copies (programs already in the population) before giving up:
    # elitism, per parent and try; (mu + lambda), rounds of varOr
    batch: int = 1  # elitism: parents per step (evaluated together through toolbox.map)
    lambda_: int = 50  # (mu + lambda): offspring per generation
    cxpb: float = 0.5
    mutpb: float = 0.5
    seed_proxies: tuple[str, ...] = ()
    hall_of_fame: int = 10
    min_height: int = 1
    max_height: int = 3
    height_limit: int = 10
    validation: float = 0.0  # share of each task's training architectures kept to choose the proxies (0: none)
    validation_seed: int = 0
    size_limit: int = 12  # largest program in nodes: 12 generalised better than 30 (README)
    checkpoint_every: int = 100

    def validate(self) -> None:
        """Raise AutoproxError, naming the option, on a value no run can use."""
        if self.algorithm not in ALGORITHMS:
            raise AutoproxError(f"unknown algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")
        if self.jcm not in JCM_MODES:
            raise AutoproxError(f"unknown JCM mode {self.jcm!r}; known: {', '.join(JCM_MODES)}")
        if self.population < max(2, self.top_k):
            raise AutoproxError(
                f"population (--population) must be >= max(2, top_k) = {max(2, self.top_k)}; got {self.population}"
            )
        if self.iterations < 1:
            raise AutoproxError(f"iterations (--iterations) must be >= 1; got {self.iterations}")
        if not 0 <= self.validation < 1:
            raise AutoproxError(f"validation share (--validation) must lie in [0, 1); got {self.validation}")
        for name in self.seed_proxies:
            known_proxy(name)

    def as_dict(self) -> dict:
        """The fields a resumed run must share with its checkpoint (the validation ones only when used:
        without a validation share they change nothing)."""
        skip = {"iterations", "max_evaluations", "checkpoint_every"}
        skip |= {"validation", "validation_seed"} if not self.validation else set()
        return {k: v for k, v in asdict(self).items() if k not in skip}

    @property
    def programs_per_step(self) -> int:
        """How many programs a step scores together (through `toolbox.map`): the elitism `batch`, or
        the (mu + lambda) `lambda_` (its retries score fewer)."""
        return self.batch if self.algorithm == "elitism" else self.lambda_

    def algorithm_options(self) -> dict:
        """The keyword arguments of `ALGORITHMS[self.algorithm]` taken from this config (its own
        parameters, named as the fields)."""
        return {name: getattr(self, name) for name in _ALGORITHM_OPTIONS[self.algorithm]}


_ALGORITHM_OPTIONS = {
    "elitism": ("pool_ratio", "top_k", "margin", "max_tries", "batch", "max_draws"),
    "mu+lambda": ("lambda_", "cxpb", "mutpb", "max_draws"),
}
