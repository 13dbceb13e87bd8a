import random
import warnings

import pytest
import torch
import torch.nn.functional as F

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, probe_arch
from vit_space.probe.hooks import find_blocks, probe, probe_minibatches
from vit_space.probe.sketch import sketch, sketch_indices
from vit_space.spaces import get_space

ARCH = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [3.5, 4.0] * 6, "num_heads": [3, 4] * 6}
S = 16


@pytest.fixture
def model_and_batch():
    torch.manual_seed(0)
    model = get_space("autoformer").build(ARCH, num_classes=10, img_size=64)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([3, 7])
    return model, images, lambda logits: F.cross_entropy(logits, labels)


def full_capture(model, images, loss_fn):
    """Full tensors of block 0's fc1: weight, grad, input and output with their gradients."""
    fc1, store = find_blocks(model)[0].linears[2], {}

    def hook(module, args, out):
        store["X"], store["Y"] = args[0], out
        args[0].retain_grad()
        out.retain_grad()

    handle = fc1.register_forward_hook(hook)
    model.zero_grad()
    loss_fn(model(images)).backward()
    handle.remove()
    return {
        "W": fc1.weight.detach(),
        "gW": fc1.weight.grad.clone(),
        "X": store["X"].detach(),
        "gX": store["X"].grad,
        "Y": store["Y"].detach(),
        "gY": store["Y"].grad,
    }


def test_sketches_equal_the_sampled_entries_of_full_tensors(model_and_batch):
    model, images, loss_fn = model_and_batch
    stats = probe(model, images, loss_fn, size=S, seed=0)
    full = full_capture(model, images, loss_fn)
    unit = 2  # block 0, fc1
    for kind, tensor in full.items():
        torch.testing.assert_close(stats.tensors[kind][unit], sketch(tensor, S, 0), rtol=1e-4, atol=1e-7)
        assert stats.numel[kind][unit] == tensor.numel()
    # the input activation and the weight share their column (in_features) indices
    cols = sketch_indices(192, S, 0)
    rows = sketch_indices(full["X"].reshape(-1, 192).shape[0], S, 0)
    for kind, sampled in [
        ("X", full["X"].reshape(-1, 192)[rows][:, cols]),
        ("W", full["W"][sketch_indices(full["W"].shape[0], S, 0)][:, cols]),
    ]:
        scale = (full[kind].square().mean() / sampled.square().mean()).sqrt()  # RMS of the sketch = RMS of the tensor
        torch.testing.assert_close(stats.tensors[kind][unit], sampled * scale)
        assert stats.tensors[kind][unit].square().mean().sqrt() == pytest.approx(
            float(full[kind].square().mean().sqrt()), rel=1e-5
        )


def test_units_groups_and_attention(model_and_batch):
    model, images, loss_fn = model_and_batch
    stats = probe(model, images, loss_fn, size=S, seed=0)
    assert stats.num_units == 4 * 12
    assert stats.groups["msa"].tolist() == [True, True, False, False] * 12
    assert stats.groups["ln_out"].tolist() == [True, False, True, False] * 12
    assert stats.block.tolist() == [b for b in range(12) for _ in range(4)]
    attn_numel = stats.numel["A"].view(12, 4)
    assert (attn_numel[:, 2:] == 0).all() and (attn_numel[:, :2] > 0).all()
    assert attn_numel[0, 0] == 2 * 3 * 17 * 17  # batch x heads x tokens x tokens (64/16 = 4, 16 patches + cls)


def test_fast_attention_sketch_equals_materialised_probabilities(model_and_batch):
    model, images, loss_fn = model_and_batch
    stats = probe(model, images, loss_fn, size=S, seed=0)
    assert all(b.attn.fused_attn for b in find_blocks(model))  # the probe left fused attention on
    captured = []
    for block in find_blocks(model):
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(
            lambda m, a, out: captured.append(sketch(out, S, 0, match_rms=False))
        )
    with torch.no_grad():
        model(images)
    for b, probs in enumerate(captured):
        torch.testing.assert_close(stats.tensors["A"][4 * b], probs, rtol=1e-5, atol=1e-6)


def test_hooks_removed_and_gradients_cleared(model_and_batch):
    model, images, loss_fn = model_and_batch
    probe(model, images, loss_fn, size=S, seed=0)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(p.grad is None for p in model.parameters())


def test_a_probe_copies_its_statistics_to_the_cpu_once_per_kind(monkeypatch):
    """Every copy to the CPU waits for a GPU: a probe makes one per kind of statistic it returns,
    not one per sketch (before: 25 per block for the data statistics, six per unit and one per attention)."""
    space = get_space("autoformer")
    spec = ProbeSpec(BatchSpec("c100", "skimage", 8, 0), conditions=("data", "minibatch", "heads"))
    copies, to_cpu = [], torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda t, *a, **k: copies.append(tuple(t.shape)) or to_cpu(t, *a, **k))
    stats = probe_arch(space, space.sample(random.Random(0)), spec)
    kinds = [name for condition in stats.values() for name in condition.tensors]
    assert len(kinds) == 7 + 2 + 3  # data, minibatch (gW, sgW), heads (Ae, Ar, Ah)
    assert len(copies) == len(kinds)
    assert all(shape[1:] == (32, 32) for shape in copies)  # whole stacks of (units, 32, 32) sketches


def test_seeded_probe_of_an_arch_is_reproducible_and_conditions_differ():
    spec = ProbeSpec(
        BatchSpec("chaoyang", batch_size=2, image_size=64), sketch_size=S, conditions=("data", "noise", "synflow")
    )
    a = probe_arch(get_space("autoformer"), ARCH, spec)
    b = probe_arch(get_space("autoformer"), ARCH, spec)
    for cond in a:
        for kind in a[cond].tensors:
            assert torch.equal(a[cond].tensors[kind], b[cond].tensors[kind])
    assert torch.equal(a["data"].tensors["W"], a["noise"].tensors["W"])
    assert not torch.equal(a["data"].tensors["X"], a["noise"].tensors["X"])
    assert (a["synflow"].tensors["W"] >= 0).all()
    assert a["synflow"].numel["X"][0] == 1 * 17 * 192  # synflow feeds a single all-ones image


def test_timm_models_are_probed_and_non_vits_refused():
    space = get_space("timm:pit_ti_224")
    spec = ProbeSpec(BatchSpec("c100", batch_size=2, image_size=64), sketch_size=8)
    stats = probe_arch(space, {"timm": "pit_ti_224"}, spec)["data"]
    assert stats.num_units == 4 * (2 + 6 + 4)
    assert torch.isfinite(stats.tensors["gW"]).all() and stats.tensors["gW"].abs().sum() > 0
    with pytest.raises(AutoproxError, match="no transformer blocks"):
        probe_arch(get_space("timm:resnet18"), {"timm": "resnet18"}, spec)


def test_sketch_indices_for_short_dimensions_repeat_every_element():
    idx = sketch_indices(5, 12, seed=3)
    counts = torch.bincount(idx, minlength=5)
    assert set(counts.tolist()) <= {2, 3} and counts.sum() == 12
    assert torch.equal(sketch_indices(100, 8, 3), sketch_indices(100, 8, 3))
    assert not torch.equal(sketch_indices(100, 8, 3), sketch_indices(100, 8, 4))


def test_minibatch_condition_is_the_mean_and_std_of_slice_gradients():
    torch.manual_seed(0)
    model = get_space("autoformer").build(ARCH, num_classes=10, img_size=64)
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([3, 7, 1, 0, 9, 2, 5, 5])
    stats = probe_minibatches(model, images, labels, parts=4, size=S, seed=0)
    assert all(p.grad is None for p in model.parameters())  # gradients cleared after
    fc1 = find_blocks(model)[0].linears[2]
    slices = []
    for rows in ([0, 1], [2, 3], [4, 5], [6, 7]):  # by hand: one backward pass per slice of 2
        model.zero_grad()
        F.cross_entropy(model(images[rows]), labels[rows]).backward()
        slices.append(fc1.weight.grad.clone())
    slices = torch.stack(slices)
    unit = 2  # block 0: qkv, proj, fc1, fc2
    assert torch.allclose(stats.tensors["gW"][unit], sketch(slices.mean(0), S, 0), rtol=1e-5, atol=1e-8)
    assert torch.allclose(stats.tensors["sgW"][unit], sketch(slices.std(0, correction=0), S, 0), rtol=1e-5, atol=1e-8)
    assert stats.numel["sgW"][unit] == fc1.weight.numel() and (stats.tensors["sgW"] >= 0).all()
    with pytest.raises(AutoproxError, match="splits the batch in 4; batch size 2 is smaller"):
        probe_minibatches(model, images[:2], labels[:2], parts=4)


def test_minibatch_statistics_reach_programs_through_the_cache(tmp_path):
    from gp_proxy import Evaluator, build_pset, parse
    from vit_space.probe.cache import StatsCache, fill, load_bundle
    from vit_space.probe.conditions import latex_names

    space, spec = (
        get_space("af-tiny"),
        ProbeSpec(BatchSpec("digits", image_size=None), conditions=("data", "minibatch")),
    )
    archs = [space.sample(random.Random(s)) for s in range(4)]
    cache = StatsCache(tmp_path)
    fill(space, archs, [spec], cache, progress=False)
    bundle = load_bundle(space, archs, spec, cache)
    assert {"gW", "mb.gW", "mb.sgW"} <= set(bundle.names)
    snr = parse("agg_sum_all(u_div(fro(mb.gW), fro(mb.sgW)))", build_pset(bundle.names, sorted(bundle.groups)))
    scores = Evaluator(bundle)(snr)
    assert scores.shape == (4,) and (scores > 0).all()
    assert latex_names(["mb.sgW"]) == {"mb.sgW": r"\sigma_{\nabla W}^{\text{mb}}"}


def test_minibatch_slice_count_is_an_option_with_its_own_cache_entries(tmp_path):
    from vit_space.probe.cache import StatsCache, fill, load_bundle

    space = get_space("af-tiny")
    archs = [space.sample(random.Random(s)) for s in range(2)]
    four = ProbeSpec(BatchSpec("digits", image_size=None), conditions=("minibatch",))
    two = ProbeSpec(BatchSpec("digits", image_size=None), conditions=("minibatch",), minibatches=2)
    assert "minibatches" not in four.key(space, archs[0], "minibatch")  # the default keeps its older files
    assert two.key(space, archs[0], "minibatch")["minibatches"] == 2
    assert two.key(space, archs[0], "data") == four.key(space, archs[0], "data")  # K changes only minibatch entries
    cache = StatsCache(tmp_path)
    assert fill(space, archs, [four, two], cache, progress=False).computed == 4
    a, b = (load_bundle(space, archs, s, cache).tensors["mb.sgW"] for s in (four, two))
    assert a.shape == b.shape and not torch.equal(a, b)  # 4 slices of 8 images vs 2 of 16
    assert ProbeSpec.from_dict(two.as_dict(), "digits") == ProbeSpec(
        BatchSpec("digits", image_size=None), conditions=("minibatch",), minibatches=2
    )
    old = {k: v for k, v in four.as_dict().items() if k != "minibatches"}  # saved before the option
    assert ProbeSpec.from_dict(old, "digits").minibatches == 4
    for k in (1, 0, 2.5):
        with pytest.raises(AutoproxError, match=f"minibatches must be an integer >= 2 .*got {k}"):
            ProbeSpec(BatchSpec("digits"), conditions=("minibatch",), minibatches=k).validate()
    with pytest.raises(AutoproxError, match="minibatches=8 slices; batch size 4 is smaller"):
        ProbeSpec(BatchSpec("digits", batch_size=4), conditions=("minibatch",), minibatches=8).validate()
    with pytest.raises(
        AutoproxError, match=r"2 of 2 af-tiny .* conditions data in .* --conditions data,minibatch --bench"
    ):
        load_bundle(space, archs, ProbeSpec(four.batch, conditions=("data", "minibatch")), cache)
    with pytest.raises(
        AutoproxError, match=r"conditions minibatch in .* --conditions minibatch --minibatches 2 --bench"
    ):
        load_bundle(space, archs, two, StatsCache(tmp_path / "empty"))


def test_init2_condition_probes_a_second_initialisation_on_the_same_batch():
    from vit_space.probe.networks import batch_of

    space = get_space("autoformer")
    spec = ProbeSpec(
        BatchSpec("c100", batch_size=2, image_size=64, seed=3), sketch_size=S, conditions=("data", "init2")
    )
    stats = probe_arch(space, ARCH, spec)
    assert list(stats) == ["data", "init2"]
    first, second = stats["data"].tensors, stats["init2"].tensors
    assert first["W"].shape == second["W"].shape and not torch.equal(first["W"], second["W"])
    torch.manual_seed(space.seeded_init(ARCH, 4))  # by hand: the init of batch seed 3 + 1 ...
    model = space.build(ARCH, num_classes=100, img_size=64).train()
    images, labels = batch_of(spec.batch)  # ... fed batch seed 3's images, sketched with seed 3
    expected = probe(model, images, lambda logits: F.cross_entropy(logits, labels), S, 3).tensors
    for kind in ("W", "gW", "X"):
        assert torch.equal(second[kind], expected[kind]), kind
    assert torch.equal(probe_arch(space, ARCH, spec)["init2"].tensors["gW"], second["gW"])  # seeded


TIMM_FAMILIES = {  # tiny configurations of timm's other transformer families, and their probed blocks
    "swin_tiny_patch4_window7_224": (dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)), 4),
    "cait_xxs24_224": (dict(depth=2, depth_token_only=1, embed_dim=48, num_heads=2), 2),
    "deit3_small_patch16_224": (dict(depth=2, embed_dim=48, num_heads=2), 2),
    "eva02_tiny_patch14_224": (dict(depth=2, embed_dim=48, num_heads=2), 2),
}


@pytest.mark.parametrize("name", sorted(TIMM_FAMILIES))
# the warning asserted below, again from the calls after it
@pytest.mark.filterwarnings("ignore:Cait. 1 blocks:gp_proxy.errors.AutoproxWarning")
def test_timm_transformer_families_are_probed(name):
    import timm

    from gp_proxy.errors import AutoproxWarning
    from vit_space.probe.heads import probe_heads

    kwargs, count = TIMM_FAMILIES[name]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).train()
    images, labels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = probe(model, images, lambda logits: F.cross_entropy(logits, labels), S, 0)
    skipped = [w for w in caught if issubclass(w.category, AutoproxWarning)]
    if name.startswith("cait"):  # its class-attention block has q, k, v linears: named, not probed
        assert skipped and "1 blocks (LayerScaleBlockClassAttn)" in str(skipped[0].message)
    else:
        assert not skipped
    assert stats.tensors["W"].shape == (4 * count, S, S) and len(find_blocks(model)) == count
    attention = stats.numel["A"] > 0
    assert attention.tolist() == [True, True, False, False] * count  # qkv and proj units carry A
    probs = stats.tensors["A"][attention]  # softmax probabilities (CaiT: before talking heads mix them)
    assert (probs >= 0).all() and (probs <= 1).all() and probs.amax() > 0
    assert all(torch.isfinite(t).all() for t in stats.tensors.values()) and (stats.numel["gW"] > 0).all()
    heads = probe_heads(model, images, S, 0)
    assert torch.equal(heads.numel["Ae"] > 0, attention)


def test_units_map_other_module_names_to_the_same_statistics():
    from renamed import NEOX, NEOX_UNITS, TIMM, PatchTransformer

    from vit_space.probe.conditions import conditions, probe_conditions

    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    conds = conditions(("data", "minibatch", "heads"), images, labels, seed=0, minibatches=2)
    timm_named = probe_conditions(PatchTransformer(TIMM), conds, S, 0)
    neox = PatchTransformer(NEOX)
    renamed = probe_conditions(neox, conds, S, 0, units=NEOX_UNITS)
    for name, stats in timm_named.items():
        assert stats.tensors.keys() == renamed[name].tensors.keys()
        for kind, tensor in stats.tensors.items():
            assert torch.equal(tensor, renamed[name].tensors[kind]), (name, kind)
    assert (timm_named["data"].numel["A"] > 0).tolist() == [True, True, False, False] * 2  # read at attn_drop
    with pytest.raises(AutoproxError, match=r"attn\.qkv, attn\.proj, mlp\.fc1, mlp\.fc2 linears.*units="):
        find_blocks(neox)
    with pytest.raises(AutoproxError, match=r"no transformer blocks with attention\.query_key_value, attn\.proj"):
        find_blocks(neox, {"qkv": "attention.query_key_value"})  # the others keep timm's names
    with pytest.raises(AutoproxError, match=r"unknown unit names \['q'\]; allowed: qkv, proj, fc1, fc2"):
        find_blocks(neox, {"q": "attention.query_key_value"})
