"""Probe conditions: how a network is fed for each set of statistics, the pass that measures it, and how
its statistics are named (`PREFIX`, and `latex_names` for formulas)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gp_proxy.errors import AutoproxError
from gp_proxy.stats import UnitStats
from vit_space.probe.heads import probe_heads
from vit_space.probe.hooks import probe, probe_minibatches

CONDITIONS = ("data", "noise", "minibatch", "init2", "heads", "synflow")
MINIBATCHES = 4  # default slices of the probe batch in the "minibatch" condition (ProbeSpec.minibatches)
PREFIX = {"data": "", "noise": "noise.", "minibatch": "mb.", "init2": "i2.", "heads": "h.", "synflow": "sf."}
_LATEX = {
    "W": "W",
    "gW": r"\nabla W",
    "sgW": r"\sigma_{\nabla W}",
    "X": "X",
    "gX": r"\nabla X",
    "Y": "Y",
    "gY": r"\nabla Y",
    "A": "A",
    "Ae": r"\mathcal{H}_A",
    "Ar": r"\rho_A",
    "Ah": r"\cos_A",
}


def latex_names(names: Sequence[str]) -> dict[str, str]:
    """LaTeX for statistic names: gW -> \\nabla W, sf.X -> X^{\\text{sf}} (condition as superscript)."""
    out = {}
    for name in names:
        condition, _, kind = name.rpartition(".")
        if kind in _LATEX:
            out[name] = _LATEX[kind] + (rf"^{{\text{{{condition}}}}}" if condition else "")
    return out


@dataclass(frozen=True)
class Condition:
    """How to feed a model for one set of statistics."""

    name: str
    images: torch.Tensor
    loss_fn: Callable[[torch.Tensor], torch.Tensor]
    absolute_weights: bool = False
    labels: torch.Tensor | None = None
    slices: int = 0  # > 0: weight gradients of this many slices of the batch (`probe_minibatches`)
    reinit: bool = False  # probe a second initialisation of the network (the caller builds it)
    forward_only: bool = False  # per-head attention statistics of one forward pass (`probe_heads`)


def conditions(
    names: tuple[str, ...], images: torch.Tensor, labels: torch.Tensor, seed: int, minibatches: int = MINIBATCHES
) -> list[Condition]:
    """The probe conditions: `data` (the batch, cross-entropy), `noise` (Gaussian images of the same
    shape, same labels), `minibatch` (weight-gradient mean and std over `minibatches` slices of the
    batch, K >= 2), `init2` (the batch through a second initialisation of the same architecture: init
    robustness), `heads` (per-head attention entropy, stable rank and similarity of one forward pass of
    the batch) and `synflow` (one all-ones image through absolute weights, loss = sum of logits).
    `synflow` changes the weights in place, so it is always run last."""
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise AutoproxError(f"unknown probe conditions {unknown}; known: {', '.join(CONDITIONS)}")
    if not isinstance(minibatches, int) or isinstance(minibatches, bool) or minibatches < 2:
        raise AutoproxError(
            f"minibatches must be an integer >= 2 (the minibatch condition's slices of the batch), got {minibatches!r}"
        )
    cross_entropy = lambda logits: F.cross_entropy(logits, labels)  # noqa: E731
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed + 7919)).to(images.device)
    table = {
        "data": Condition("data", images, cross_entropy),
        "noise": Condition("noise", noise, cross_entropy),
        "minibatch": Condition("minibatch", images, cross_entropy, labels=labels, slices=minibatches),
        "init2": Condition("init2", images, cross_entropy, reinit=True),
        "heads": Condition("heads", images, cross_entropy, forward_only=True),
        "synflow": Condition(
            "synflow", torch.ones(1, *images.shape[1:], device=images.device), torch.sum, absolute_weights=True
        ),
    }
    return [table[n] for n in sorted(set(names), key=CONDITIONS.index)]


def probe_conditions(
    model: nn.Module, conds: list[Condition], size: int, seed: int, units: dict[str, str] | None = None
) -> dict[str, UnitStats]:
    """Probe `model` under each condition in order (absolute-weight conditions modify the model);
    `units` maps unit names to other module paths (`hooks.unit_paths`)."""
    out = {}
    for cond in conds:
        if cond.reinit:
            raise AutoproxError(f"condition {cond.name} probes a second initialisation: use cache.probe_arch")
        if cond.absolute_weights:
            with torch.no_grad():
                for p in model.parameters():
                    p.abs_()
        if cond.slices:
            out[cond.name] = probe_minibatches(model, cond.images, cond.labels, cond.slices, size, seed, units)
        elif cond.forward_only:
            out[cond.name] = probe_heads(model, cond.images, size, seed, units)
        else:
            out[cond.name] = probe(model, cond.images, cond.loss_fn, size, seed, units)
    return out
