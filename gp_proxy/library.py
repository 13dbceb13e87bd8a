"""Known proxies written as programs of the proxy language.

Statistic names follow the ViT probe: W, gW (weight and its gradient), X, gX (a linear's input
activation and its gradient), Y, gY (output and its gradient), A (attention probabilities);
groups: all, msa, mlp, ln_out (the linears fed by a LayerNorm: qkv and fc1), and one per linear.
"""

from __future__ import annotations

from dataclasses import dataclass

from gp_proxy.errors import AutoproxError


@dataclass(frozen=True)
class KnownProxy:
    expression: str
    description: str


KNOWN_PROXIES: dict[str, KnownProxy] = {
    "autoprox_paper": KnownProxy(
        "agg_mean_ln_out(u_add(fro(minmax(X)), sum(sqrt(sigmoid(gX)))))",
        "Auto-Prox's published ViT proxy (AAAI 2024): per LayerNorm output, the Frobenius norm of the "
        "min-max-normalised input activation (t2) plus the element-wise sum of sqrt(sigmoid) of its "
        "gradient (t4g), averaged over blocks.",
    ),
    "snip": KnownProxy("agg_sum_all(l1(mul(W, gW)))", "SNIP (Lee et al., 2019): sum over all linears of |W * dL/dW|."),
    "grad_norm": KnownProxy(
        "agg_sum_all(fro(gW))",
        "grad-norm (Abdelfattah et al., 2021): sum over linears of the gradient's Frobenius norm.",
    ),
    "weight_l2": KnownProxy(
        "agg_sum_all(fro(W))", "L2 norm of the weights (TVT's student-capability term): sum of Frobenius norms."
    ),
    "fisher": KnownProxy(
        "agg_sum_all(sum(square(mul(X, gX))))",
        "Fisher-like (after Turner et al., 2020): sum over linears of (activation * gradient)^2 "
        "at their inputs, element-wise (the sketch keeps sampled tokens, not per-channel sums).",
    ),
    "depth_width": KnownProxy(
        "agg_sum_qkv(fro(sign(W)))",
        "depth x width: over the blocks, the square root of the qkv weight's size (sqrt(3) x the block's "
        "embedding width), summed; sqrt(3) x depth x width for an AutoFormer, sqrt(3) x the sum of stage "
        "depth x stage width for a PiT.",
    ),
    "linear_params": KnownProxy(
        "agg_sum_all(sum(sign(square(W))))", "parameter count of the block linears: every non-zero weight counts 1."
    ),
}


def known_proxy(name: str) -> KnownProxy:
    """The known proxy `name` (a key of KNOWN_PROXIES, e.g. "snip", "grad_norm", "autoprox_paper"):
    its `expression` in the proxy language and a `description`; AutoproxError if unknown."""
    if name not in KNOWN_PROXIES:
        raise AutoproxError(f"unknown proxy {name!r}; known: {', '.join(KNOWN_PROXIES)}")
    return KNOWN_PROXIES[name]
