"""Fitness of proxies: rank correlations per task and the joint correlation metric (JCM).

A *task* is one ranking problem: the statistics of a set of networks (a `StatsBundle`) and
their accuracies on one data set, with an architecture-level train/held-out split. A proxy's
fitness is the JCM of its Kendall tau over the training parts of all tasks; every number is
also reported on the held-out parts.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from gp_proxy.errors import AutoproxError
from gp_proxy.stats import StatsBundle

CORRELATIONS = ("kendall", "spearman", "pearson")
JCM_MODES = ("mean", "min", "mean-std")


@dataclass(frozen=True)
class Task:
    """One ranking problem: A architectures, their statistics and their accuracies on one data set.

    name:     e.g. "autoformer/c100_kd_acc".
    bundle:   StatsBundle of the A networks: per-architecture statistic tensors, (A, U, S, S)
              sketches per statistic name, with element counts, masks and unit groups.
    accuracy: (A,) float64 accuracies, in percent (any scale works: only their order is used);
              NaN where unknown.
    train, test: sorted int arrays of positions into the A architectures (disjoint); the search
              fits `train` only, `test` is held out and may be empty.
    Raises AutoproxError when the shapes disagree or `train` has fewer than 3 known accuracies.
    """

    name: str
    bundle: StatsBundle
    accuracy: np.ndarray
    train: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        if self.accuracy.shape != (self.bundle.num_archs,):
            raise AutoproxError(
                f"task {self.name}: {self.accuracy.shape[0]} accuracies for {self.bundle.num_archs} networks"
            )
        known = np.isfinite(self.accuracy)
        if known[self.train].sum() < 3:
            raise AutoproxError(f"task {self.name}: fewer than 3 architectures with a known accuracy to fit on")
        if np.ptp(self.accuracy[self.train][known[self.train]]) == 0:
            raise AutoproxError(f"task {self.name}: every training accuracy is the same, nothing to rank")


def _paired(scores: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The entries where both are finite; None when fewer than 3 are left or either side is constant."""
    keep = np.isfinite(scores) & np.isfinite(accuracy)
    s, a = (scores, accuracy) if keep.all() else (scores[keep], accuracy[keep])
    return None if len(s) < 3 or s.min() == s.max() or a.min() == a.max() else (s, a)


PAIRWISE_LIMIT = 256  # up to this many entries tau-b counts all pairs at once; above, scipy's O(n log n)


def _signs(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(n, n) int8 signs of x_i - x_j, and the number of untied pairs."""
    order = (x[:, None] > x).astype(np.int8) - (x[:, None] < x)
    return order, int(np.count_nonzero(order)) // 2


@lru_cache(maxsize=64)
def _accuracy_signs(data: bytes) -> tuple[np.ndarray, int]:
    """`_signs` of the float64 array whose bytes are `data`: a search compares every candidate's
    scores with the same few accuracy vectors, so theirs are counted once."""
    return _signs(np.frombuffer(data, dtype=np.float64))


def _tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b of two (n,) finite, non-constant arrays: the bits of `scipy.stats.kendalltau`
    (the same integer counts and the same float steps), without its ~0.7 ms of call overhead."""
    n = len(x)
    if n > PAIRWISE_LIMIT:
        return float(stats.kendalltau(x, y).statistic)
    (order_x, untied_x), (order_y, untied_y) = _signs(x), _accuracy_signs(y.astype(np.float64).tobytes())
    concordant_minus_discordant = int(np.einsum("ij,ij->", order_x, order_y, dtype=np.int64)) // 2
    tau = concordant_minus_discordant / np.sqrt(untied_x) / np.sqrt(untied_y)
    return float(min(1.0, max(-1.0, tau)))


def kendall(scores: np.ndarray, accuracy: np.ndarray) -> float:
    """Kendall tau-b of (A,) `scores` vs `accuracy` over the entries where both are finite (else NaN)."""
    pair = _paired(scores, accuracy)
    return float("nan") if pair is None else _tau_b(*pair)


def correlations(scores: np.ndarray, accuracy: np.ndarray, index: np.ndarray) -> dict[str, float]:
    """Kendall tau-b, Spearman rho, Pearson r and the count n of `scores` vs `accuracy` at `index`,
    over the entries where both are finite (NaN when fewer than 3 are left or either side is constant)."""
    keep = np.isfinite(scores[index]) & np.isfinite(accuracy[index])
    pair = _paired(scores[index], accuracy[index])
    if pair is None:
        return dict.fromkeys(CORRELATIONS, float("nan")) | {"n": int(keep.sum())}
    return {
        "kendall": _tau_b(*pair),
        "spearman": float(stats.spearmanr(*pair).statistic),
        "pearson": float(stats.pearsonr(*pair).statistic),
        "n": int(keep.sum()),
    }


def jcm(taus: Sequence[float], mode: str = "mean") -> float:
    """Joint correlation metric of per-task Kendall taus (each in [-1, 1]): their mean, min, or
    mean minus std (`mode`, one of JCM_MODES); NaN if there are none or one is NaN."""
    taus = np.asarray(taus, dtype=np.float64)
    if mode not in JCM_MODES:
        raise AutoproxError(f"unknown JCM mode {mode!r}; known: {', '.join(JCM_MODES)}")
    if taus.size == 0 or not np.isfinite(taus).all():
        return float("nan")
    return float({"mean": taus.mean, "min": taus.min, "mean-std": lambda: taus.mean() - taus.std()}[mode]())


def split_for_validation(tasks: Sequence[Task], share: float, seed: int) -> tuple[list[Task], list[Task]]:
    """Set aside a seeded `share` of each task's training architectures for validation.

    Returns (fit tasks: `train` = what is left, `test` = the held-out part as before; validation
    tasks: `train` = the validation architectures, no `test`). Tasks with the same training
    architectures (one benchmark's data sets) get the same split."""
    if not 0 < share < 1:
        raise AutoproxError(f"validation share (--validation) must lie in (0, 1); got {share}")
    fit, validation = [], []
    for task in tasks:
        rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(task.train).tobytes())])
        order = rng.permutation(len(task.train))
        cut = int(round(share * len(task.train)))
        held, kept = np.sort(task.train[order[:cut]]), np.sort(task.train[order[cut:]])
        fit.append(Task(task.name, task.bundle, task.accuracy, kept, task.test))
        try:
            validation.append(Task(task.name, task.bundle, task.accuracy, held, np.array([], dtype=int)))
        except AutoproxError as e:
            raise AutoproxError(
                f"{e} in its validation share (--validation {share}: {len(held)} of {len(task.train)} training "
                "architectures); use a larger share or more architectures"
            ) from None
    return fit, validation


def bootstrap_difference(
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    accuracies: Sequence[np.ndarray],
    index: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap over architectures of the mean Kendall tau of proxy a minus proxy b.

    The lists hold one (A,) array per task of the same A architectures (a benchmark's data
    sets); each resample draws `len(index)` of `index` with replacement, the same draw for every
    task and both proxies. Returns the difference on `index` itself and the 2.5% and 97.5%
    percentiles of the resampled differences (`low`, `high`), in Kendall tau units."""

    def difference(rows: np.ndarray) -> float:
        return float(
            np.mean(
                [
                    kendall(a[rows], acc[rows]) - kendall(b[rows], acc[rows])
                    for a, b, acc in zip(scores_a, scores_b, accuracies)
                ]
            )
        )

    rng = np.random.default_rng(seed)
    drawn = np.array([difference(rng.choice(index, size=len(index), replace=True)) for _ in range(resamples)])
    drawn = drawn[np.isfinite(drawn)]
    low, high = np.percentile(drawn, [2.5, 97.5]) if drawn.size else (float("nan"), float("nan"))
    return {"difference": difference(index), "low": float(low), "high": float(high), "resamples": int(drawn.size)}


def valid_scores(scores: np.ndarray) -> bool:
    """Finite everywhere and not constant across networks."""
    return bool(np.isfinite(scores).all() and np.ptp(scores) > 0)


@dataclass(frozen=True)
class Report:
    """Correlations of one proxy on every task, on the training and held-out parts."""

    train: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]]
    jcm_train: float
    jcm_test: float
    valid: bool

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "jcm_train": self.jcm_train,
            "jcm_test": self.jcm_test,
            "train": self.train,
            "test": self.test,
        }


def report(scores: dict[str, np.ndarray], tasks: Sequence[Task], mode: str = "mean") -> Report:
    """The `Report` of per-task `scores` (task name -> (A,) scores); invalid if any task's scores
    are NaN/inf or constant."""
    valid = all(valid_scores(scores[t.name]) for t in tasks)
    train = {t.name: correlations(scores[t.name], t.accuracy, t.train) for t in tasks}
    test = {t.name: correlations(scores[t.name], t.accuracy, t.test) for t in tasks if len(t.test)}
    return Report(
        train,
        test,
        jcm([c["kendall"] for c in train.values()], mode) if valid else float("nan"),
        jcm([c["kendall"] for c in test.values()], mode) if valid and test else float("nan"),
        valid,
    )
