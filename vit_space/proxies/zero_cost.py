"""Hand-designed zero-cost proxies that need passes of their own through a built model.

Each proxy is a small function `proxy(model, images, labels, seed) -> float` on a freshly
initialised model in train mode, `images` (B, C, H, W), `labels` (B,) and a `seed` for proxies
that draw noise of their own (Zen); higher score means higher
predicted accuracy (proxies whose authors rank by the opposite sign are negated, and say so).
"Weights" are the weight matrices of every `nn.Linear` and `nn.Conv2d` of the model (patch
embedding, blocks, pooling, head), as in the zero-cost proxy literature. Proxies that rewrite
weights (SynFlow, LogSynFlow, DSS) work on a copy.

Proxies over the probe's cached statistics (SNIP, grad-norm, Fisher, weight L2, the paper's
proxy) are programs in `gp_proxy.library`; parameter count and MACs are analytic.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gp_proxy.errors import AutoproxError
from vit_space.probe.hooks import find_blocks
from vit_space.spaces.base import disable_fused_attention

PassProxy = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], float]


def weights(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices of all linear and convolution layers, in module order."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _linearised(model: nn.Module) -> nn.Module:
    """A float64 copy with every parameter replaced by its absolute value (SynFlow's trick)."""
    model = copy.deepcopy(model).double()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    return model


def _synflow_grads(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Linearise `model`, push one all-ones image through it, backpropagate R = sum of logits."""
    model = _linearised(model)
    model.zero_grad(set_to_none=True)
    model(torch.ones(1, *images.shape[1:], dtype=torch.float64, device=images.device)).sum().backward()
    return model


def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """SynFlow (Tanaka et al., 2020): Σ |θ ⊙ ∂R/∂θ| over weights, R = sum of the logits of an
    all-ones image through the absolute-valued network (float64, so deep nets do not overflow)."""
    model = _synflow_grads(model, images)
    return float(sum((w.detach() * w.grad).abs().sum() for w in weights(model)))


def logsynflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """LogSynFlow (Cavagnero et al., 2022): Σ θ ⊙ log(|∂R/∂θ| + 1), SynFlow with log-scaled
    gradients so that a few huge ones do not dominate."""
    model = _synflow_grads(model, images)
    return float(sum((w.detach() * torch.log1p(w.grad.abs())).sum() for w in weights(model)))


def dss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """TF-TAS's DSS indicator (Zhou et al., 2022) on the linearised network of SynFlow:
    synaptic diversity Σ ‖W‖_nuc·‖∂R/∂W‖_nuc over the MSA linears (qkv, proj) plus synaptic
    saliency Σ |W ⊙ ∂R/∂W| over the MLP linears (fc1, fc2), as in the authors' released code."""
    model = _synflow_grads(model, images)
    score = 0.0
    with torch.no_grad():
        for block in find_blocks(model):
            qkv, proj, fc1, fc2 = (linear.weight for linear in block.linears)
            for w in (qkv, proj):
                score += float(torch.linalg.matrix_norm(w, "nuc") * torch.linalg.matrix_norm(w.grad, "nuc"))
            for w in (fc1, fc2):
                score += float((w * w.grad).abs().sum())
    return score


def grasp(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """GraSP (Wang et al., 2020) as summed by Abdelfattah et al. (2021): Σ -θ ⊙ (H g) over
    weights, g = ∂L/∂θ of the cross-entropy L and H its Hessian (a Hessian-vector product).
    Attention runs unfused here: fused attention has no double backward."""
    model = copy.deepcopy(model)
    disable_fused_attention(model)
    ws = weights(model)
    g = torch.autograd.grad(F.cross_entropy(model(images), labels), ws)
    g_graph = torch.autograd.grad(F.cross_entropy(model(images), labels), ws, create_graph=True)
    hg = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g_graph, g)), ws)
    return float(sum((-w.detach() * h).sum() for w, h in zip(ws, hg)))


def jacov(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """Jacobian covariance (Mellor et al., 2020, v1): with J the (B, C·H·W) input gradients of the
    summed logits and v the eigenvalues of its (B, B) correlation matrix, -Σ log(v + k) + 1/(v + k),
    k = 1e-5. NaN when an image's Jacobian is constant (the correlation is undefined)."""
    x = images.clone().requires_grad_(True)
    model(x).sum().backward()
    jac = x.grad.reshape(len(x), -1).double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(jac)
    if not np.isfinite(corr).all():
        return float("nan")
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """NASWOT (Mellor et al., 2021): log|K| with K = Σ over GELU inputs of c·cᵀ + (1-c)·(1-c)ᵀ,
    c the (B, units) binary codes (input > 0) of each image (Hamming-similarity kernel)."""
    kernel = torch.zeros(len(images), len(images), dtype=torch.float64, device=images.device)

    def hook(module: nn.Module, args: tuple) -> None:
        codes = (args[0].detach().reshape(len(images), -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.GELU)]
    if not handles:
        raise AutoproxError(f"NASWOT reads binary codes at GELU inputs, and {type(model).__name__} has no nn.GELU")
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_features(x) if hasattr(model, "forward_features") else model(x)


def zen(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0, alpha: float = 0.01) -> float:
    """Zen-score (Lin et al., 2021): log E_b Σ |f(x) - f(x + α ε)| of the pre-head features f
    (timm's `forward_features`), x and ε standard Gaussian of the batch's shape drawn from `seed`.
    ViTs have no BatchNorm, so Zen's BN-variance term is zero."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(images.shape, generator=gen).to(images.device)
    eps = torch.randn(images.shape, generator=gen).to(images.device)
    with torch.no_grad():
        diff = (_features(model, x) - _features(model, x + alpha * eps)).abs()
    return math.log(float(diff.reshape(len(x), -1).sum(dim=1).mean()) + 1e-30)


def zico(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0, splits: int = 2) -> float:
    """ZiCo (Li et al., 2023): Σ over weight tensors of log Σ mean|g| / std(g), the per-weight mean
    and (population) std of the gradient across `splits` mini-batches of the batch; weights whose
    gradient does not vary are skipped, as in the authors' code."""
    grads: list[list[torch.Tensor]] = []
    for x, y in zip(images.chunk(splits), labels.chunk(splits)):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        grads.append([w.grad.detach().clone() for w in weights(model)])
    model.zero_grad(set_to_none=True)
    score = 0.0
    for per_split in zip(*grads):
        g = torch.stack(per_split).double()
        std, mean_abs = g.std(dim=0, unbiased=False), g.abs().mean(dim=0)
        nonzero = std != 0
        total = float((mean_abs[nonzero] / std[nonzero]).sum())
        if total > 0:
            score += math.log(total)
    return score


def ntk_cond(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """Negative condition number of the empirical NTK (Chen et al., 2021, TE-NAS): Θ = G·Gᵀ with
    G (B, P) the per-image gradients of the summed logits w.r.t. the weights; TE-NAS prefers a
    small λ_max/λ_min, so the score is -λ_max/λ_min (-inf when Θ is singular)."""
    ws = weights(model)
    rows = []
    for x in images.split(1):
        grads = torch.autograd.grad(model(x).sum(), ws)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    per_image = torch.stack(rows)
    eig = torch.linalg.eigvalsh(sum(c.double() @ c.double().T for c in per_image.split(1 << 20, dim=1)))
    return float(-eig[-1] / eig[0]) if eig[0] > 0 else float("-inf")


PASS_PROXIES: dict[str, PassProxy] = {
    "grasp": grasp,
    "synflow": synflow,
    "logsynflow": logsynflow,
    "jacov": jacov,
    "naswot": naswot,
    "zen": zen,
    "zico": zico,
    "dss": dss,
    "ntk_cond": ntk_cond,
}
