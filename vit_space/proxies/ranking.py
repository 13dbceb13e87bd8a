"""How well one proxy ranks a benchmark: correlations per accuracy field, whole and held out."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gp_proxy.fitness import CORRELATIONS, correlations, jcm
from gp_proxy.markdown import table
from gp_proxy.store import SavedProxy, json_safe
from vit_space.bench.benchmark import Benchmark, field_dataset, field_name
from vit_space.probe.cache import ProbeSpec, StatsCache
from vit_space.proxies.scores import Scores, proxy_label, proxy_scores
from vit_space.spaces import get_space

FORMATS = ("table", "md", "csv", "json")


@dataclass(frozen=True)
class Ranking:
    """Correlations of one proxy with each accuracy field of one benchmark.

    whole, heldout: field -> {"kendall", "spearman", "pearson", "n", "top1_acc", "top1_ties", "top5_acc"};
    `heldout` is the test part of the benchmark's seeded split (empty when there is none).
    `top1_acc` is the mean accuracy (%) of the architectures the proxy ranks first (all of them
    when several tie for first; `top1_ties` says how many), `top5_acc` the expected mean accuracy
    of its top five when ties are broken at random. `seconds_per_arch`: field -> wall time (s).
    """

    proxy: str
    bench: str
    whole: dict[str, dict[str, float]]
    heldout: dict[str, dict[str, float]]
    seconds_per_arch: dict[str, float]
    scores: dict[str, np.ndarray]

    @property
    def jcm(self) -> float:
        return jcm([c["kendall"] for c in self.whole.values()])

    @property
    def jcm_heldout(self) -> float:
        return jcm([c["kendall"] for c in self.heldout.values()]) if self.heldout else float("nan")

    def as_dict(self) -> dict:
        out = {"proxy": self.proxy, "bench": self.bench, "fields": self.whole, "jcm": self.jcm}
        if self.heldout:
            out["heldout"] = {"fields": self.heldout, "jcm": self.jcm_heldout}
        return out


def topk_accuracy(scores: np.ndarray, accuracy: np.ndarray, index: np.ndarray, k: int = 1) -> float:
    """Expected mean accuracy of the `k` architectures with the highest finite scores among `index`
    when ties are broken uniformly at random: architectures above the k-th score count fully, the
    group tied at the k-th score counts by its mean for the places left (so `k` = 1 gives the
    mean accuracy of every architecture tied for first). NaN if none has both a score and an
    accuracy; `k` larger than what is left means all of them."""
    keep = index[np.isfinite(scores[index]) & np.isfinite(accuracy[index])]
    if not len(keep):
        return float("nan")
    k = min(k, len(keep))
    kth = np.sort(scores[keep])[::-1][k - 1]
    above, tied = accuracy[keep[scores[keep] > kth]], accuracy[keep[scores[keep] == kth]]
    return float((above.sum() + (k - len(above)) * tied.mean()) / k)


def top_ties(scores: np.ndarray, accuracy: np.ndarray, index: np.ndarray) -> int:
    """How many architectures among `index` (with a finite score and accuracy) share the highest score."""
    keep = index[np.isfinite(scores[index]) & np.isfinite(accuracy[index])]
    return int((scores[keep] == scores[keep].max()).sum()) if len(keep) else 0


def rank(
    proxy: str | SavedProxy,
    bench: Benchmark,
    fields: Sequence[str],
    spec: ProbeSpec,
    cache: StatsCache,
    holdout: float = 0.5,
    split_seed: int = 0,
    compute_missing: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> Ranking:
    """Score every architecture of `bench` with `proxy` on the batch of each field's data set and
    correlate the scores with the field's accuracies (e.g. c100_kd_acc, imagenet_super_acc).
    Statistics and scores missing from `cache` are computed on the way (or, without
    `compute_missing`, raise an `AutoproxError` saying how to compute them); networks and programs
    run on `device`."""
    space = get_space(bench.space)
    archs = [space.validate(a) for a in bench.archs]
    accuracies = {field: bench.accuracy(field) for field in fields}
    everything = np.arange(len(bench))
    test = bench.split(holdout, split_seed)[1] if holdout > 0 else np.array([], dtype=int)
    whole, heldout, seconds, per_dataset, scores = {}, {}, {}, {}, {}
    for field, accuracy in accuracies.items():
        dataset = field_dataset(field)
        if dataset not in per_dataset:
            per_dataset[dataset] = proxy_scores(
                proxy, space, archs, spec.for_dataset(dataset), cache, compute_missing, progress, device
            )
        result: Scores = per_dataset[dataset]
        scores[field], seconds[field] = result.values, result.seconds_per_arch
        whole[field] = _summary(result.values, accuracy, everything)
        if len(test):
            heldout[field] = _summary(result.values, accuracy, test)
    return Ranking(proxy_label(proxy), bench.name, whole, heldout, seconds, scores)


def bench_fields(bench: Benchmark, datasets: Sequence[str], kind: str | None = None) -> list[str]:
    """Field names for `datasets` (default: all the benchmark has) trained as `kind` (kd, base, or
    all: every accuracy field of the benchmark, ImageNet supernet included; None: kd where the
    benchmark has it, else base)."""
    kind = kind or bench.default_kind()
    if kind == "all":
        return [f for f in bench.fields if not datasets or field_dataset(f) in datasets]
    fields = [field_name(d, kind) for d in datasets or bench.datasets(kind)]
    for field in fields:
        bench.accuracy(field)  # names the fields there are when one is missing
    return fields


def _summary(scores: np.ndarray, accuracy: np.ndarray, index: np.ndarray) -> dict[str, float]:
    return correlations(scores, accuracy, index) | {
        "top1_acc": topk_accuracy(scores, accuracy, index, 1),
        "top1_ties": top_ties(scores, accuracy, index),
        "top5_acc": topk_accuracy(scores, accuracy, index, 5),
    }


def _rows(rankings: Sequence[Ranking]) -> list[dict]:
    rows = []
    for r in rankings:
        for part, values, overall in (("all", r.whole, r.jcm), ("held-out", r.heldout, r.jcm_heldout)):
            for field, c in values.items():
                rows.append(
                    {
                        "proxy": r.proxy,
                        "bench": r.bench,
                        "part": part,
                        "field": field,
                        **{k: c[k] for k in (*CORRELATIONS, "n", "top1_acc", "top1_ties", "top5_acc")},
                        "seconds_per_arch": r.seconds_per_arch[field],
                    }
                )
            if values:
                rows.append({"proxy": r.proxy, "bench": r.bench, "part": part, "field": "JCM", "kendall": overall})
    return rows


def _cell(value) -> str:
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.3f}" if 0.01 <= abs(value) < 100 else f"{value:.3g}"
    return "" if value is None else str(value)


def format_rankings(rankings: Sequence[Ranking], fmt: str = "table") -> str:
    """The rankings as an aligned text table, Markdown, CSV, or JSON (one object per proxy and bench)."""
    if fmt == "json":
        payload = [r.as_dict() for r in rankings]
        return json.dumps(json_safe(payload[0] if len(payload) == 1 else payload), indent=2)
    header = [
        "proxy",
        "bench",
        "part",
        "field",
        *CORRELATIONS,
        "n",
        "top1_acc",
        "top1_ties",
        "top5_acc",
        "seconds_per_arch",
    ]
    rows = [[row.get(h) for h in header] for row in _rows(rankings)]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return out.getvalue().rstrip("\n")
    cells = [header, *[[_cell(v) for v in row] for row in rows]]
    if fmt == "md":
        return table(header, ["| " + " | ".join(c) + " |" for c in cells[1:]])
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)
