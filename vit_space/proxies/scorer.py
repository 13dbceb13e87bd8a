"""The standalone scorer of an exported Python proxy: `score(model, images, labels=None, *, seed=None)`.

`export --format python` appends it to the proxy's module (`gp_proxy.export.to_python`). It is
stitched from autoprox's own probe source at export time (`vit_space.probe`: the sketch, the
hooks, the head statistics and the conditions), so a network scored by the file gets the
statistics, and the score, that autoprox gives it, with nothing but torch (and timm's fused
attention class when timm is installed). Only `init2` cannot be exported: it rebuilds the
architecture under another seed, which needs autoprox's spaces.
"""

from __future__ import annotations

import ast
import inspect
import json

from gp_proxy.export import defined_names, source_of
from vit_space.probe import conditions, heads, hooks, sketch
from vit_space.probe.conditions import PREFIX

STITCHED = (  # module, the top-level names the scorer copies from it (with what they call)
    (sketch, {"sketch_indices", "as_matrix", "sketch", "stack_sketches"}),
    (
        hooks,
        {
            "LINEARS",
            "KINDS",
            "GROUPS",
            "UNITS",
            "Block",
            "unit_paths",
            "_submodule",
            "find_blocks",
            "unit_stats",
            "probability_site",
            "_fast_attention",
            "attention_sketch",
            "_Recorder",
            "probe",
            "slice_gradients",
            "probe_minibatches",
        },
    ),
    (
        heads,
        {"HEAD_KINDS", "POWER_STEPS", "POWER_TOL", "spectral_norm", "head_statistics"}
        | {"_probability_site", "probe_heads"},
    ),
    (conditions, {"CONDITIONS", "MINIBATCHES", "Condition", "conditions", "probe_conditions"}),
)

_PRELUDE = '''

# ---------------------------------------------------------------------------------------------
# The probe, copied from autoprox's source at export time; `score` at the end of the file.

import copy
import warnings
from collections.abc import Callable
from functools import lru_cache

import torch.nn.functional as F
from torch import nn

try:
    from timm.layers.attention import Attention
except ImportError:  # without timm no module is timm's Attention: every one is read at its attn_drop
    Attention = None


class AutoproxError(Exception):
    """A model or batch this file cannot probe."""


class AutoproxWarning(UserWarning):
    """Blocks this file does not probe."""


@dataclass
class UnitStats:
    """Sketched statistics of one network: name -> (U, S, S), element counts, unit groups, blocks."""

    tensors: dict
    numel: dict
    groups: dict
    block: torch.Tensor
'''

_SCORE = '''

PROBE = json.loads({probe!r})  # how autoprox measured the statistics this proxy reads
PREFIX = {prefix!r}


def score(model, images, labels=None, *, seed=None, units=None):
    """The proxy's score of `model` (higher: higher predicted accuracy), probed as autoprox does.

    images: (B, C, H, W) float batch, normalised as the model expects; labels: (B,) int64 classes
    (default: uniform seeded labels over the model's outputs); seed: the sketch's (and noise's)
    seed, default the proxy's own ({seed}). The model runs in train mode, as in autoprox, and is
    given back in its own mode; the `synflow` condition probes a copy. Conditions: {conditions}.
    units: where a block keeps its four linears, for models that name them otherwise than timm, e.g.
    {{"qkv": "attention.query_key_value", "proj": "attention.dense", "fc1": "mlp.dense_h_to_4h",
    "fc2": "mlp.dense_4h_to_h"}} (paths relative to the block; unnamed units keep timm's names).
    Raises AutoproxError for a model with no blocks with those linears, naming the paths.
    """
    seed = PROBE["seed"] if seed is None else seed
    names = tuple(PROBE["conditions"])
    if "init2" in names:
        raise AutoproxError("the init2 condition rebuilds the architecture under another seed: score it with autoprox")
    training = model.training
    model.train()
    try:
        if labels is None:
            with torch.no_grad():
                classes = model(images[:1]).shape[-1]
            labels = torch.randint(classes, (len(images),), generator=torch.Generator().manual_seed(seed))
        conds = conditions(names, images, labels.to(images.device), seed, PROBE.get("minibatches", MINIBATCHES))
        target = copy.deepcopy(model) if "synflow" in names else model
        per_condition = probe_conditions(target, conds, PROBE["sketch_size"], seed, units)
    finally:
        model.train(training)
    first = next(iter(per_condition.values()))
    tensors = {{PREFIX[c] + k: v for c, s in per_condition.items() for k, v in s.tensors.items()}}
    numel = {{PREFIX[c] + k: v for c, s in per_condition.items() for k, v in s.numel.items()}}
    mask = {{name: count > 0 for name, count in numel.items()}}
    groups = {{"all": torch.ones(first.block.shape, dtype=torch.bool), **first.groups}}
    return float(proxy(tensors, numel, groups, mask))
'''


def scorer_source(probe: dict) -> str:
    """Python source of the probe and of `score(...)` for a proxy measured as `probe` says
    (`ProbeSpec.as_dict`); appended to the module `gp_proxy.export.to_python` writes. Empty for a
    proxy that records no statistics spec."""
    if not probe:
        return ""
    parts = [_PRELUDE, "import json\n"]
    for module, names in STITCHED:
        missing = names - {n for stmt in ast.parse(inspect.getsource(module)).body for n in defined_names(stmt)}
        if missing:
            raise RuntimeError(f"{module.__name__} no longer defines {sorted(missing)}: update STITCHED")
        parts.append(source_of(module, lambda stmt, names=names: bool(defined_names(stmt) & names)))
    parts.append(
        _SCORE.format(
            probe=json.dumps(probe, sort_keys=True),
            prefix=dict(PREFIX),
            seed=probe.get("seed"),
            conditions=", ".join(probe.get("conditions", [])),
        )
    )
    return "\n\n\n".join(parts)
