"""Each pass proxy against an independent hand computation on models small enough to do by hand."""

import math

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vit_space.proxies import zero_cost as zc


def linear_net(*widths: int, act: nn.Module | None = None, seed: int = 0) -> nn.Sequential:
    """Flatten, then bias-free linears widths[0] -> widths[1] -> ...; `act` between the first two."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b, bias=False))
        if act is not None and i == 0:
            layers.append(act)
    return nn.Sequential(*layers)


def tiny_vit(embed_dim: int = 16, seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(img_size=16, patch_size=8, embed_dim=embed_dim, depth=2, num_heads=2, num_classes=5)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 2, 2, generator=gen), torch.randint(0, 3, (6,), generator=gen)


def test_synflow_of_a_bias_free_linear_net_is_depth_times_the_path_sum(batch):
    net = linear_net(12, 4, 3)
    w1, w2 = (m.weight.detach().abs().double() for m in net if isinstance(m, nn.Linear))
    path_sum = float(torch.ones(3, dtype=torch.float64) @ w2 @ w1 @ torch.ones(12, dtype=torch.float64))
    assert zc.synflow(net, *batch) == pytest.approx(2 * path_sum, rel=1e-12)


def test_logsynflow_equals_the_closed_form(batch):
    net = linear_net(12, 4, 3)
    w1, w2 = (m.weight.detach().abs().double() for m in net if isinstance(m, nn.Linear))
    grad_w1 = w2.sum(0)[:, None].expand_as(w1)  # dR/dW1[i, j] = sum_k |W2[k, i]|
    grad_w2 = w1.sum(1)[None, :].expand_as(w2)  # dR/dW2[k, i] = sum_j |W1[i, j]|
    expected = float((w1 * torch.log1p(grad_w1)).sum() + (w2 * torch.log1p(grad_w2)).sum())
    assert zc.logsynflow(net, *batch) == pytest.approx(expected, rel=1e-12)


def test_synflow_does_not_touch_the_callers_model(batch):
    net = linear_net(12, 4, 3)
    before = [p.clone() for p in net.parameters()]
    zc.synflow(net, *batch)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_grasp_equals_theta_dot_explicit_hessian_times_gradient(batch):
    net = linear_net(12, 4, 3, act=nn.Tanh()).double()
    images, labels = batch[0].double(), batch[1]
    shapes = [m.weight.shape for m in net if isinstance(m, nn.Linear)]
    theta = torch.cat([m.weight.detach().reshape(-1) for m in net if isinstance(m, nn.Linear)])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        w1, w2 = flat[: shapes[0].numel()].reshape(shapes[0]), flat[shapes[0].numel() :].reshape(shapes[1])
        return nn.functional.cross_entropy(torch.tanh(images.flatten(1) @ w1.T) @ w2.T, labels)

    g = torch.autograd.functional.jacobian(loss, theta)
    hessian = torch.autograd.functional.hessian(loss, theta)
    assert zc.grasp(net, images, labels) == pytest.approx(float(-theta @ hessian @ g), rel=1e-9)


def test_jacov_of_a_linear_net_has_the_rank_one_closed_form(batch):
    images = batch[0]
    n, k = len(images), 1e-5
    expected = -((math.log(n + k) + 1 / (n + k)) + (n - 1) * (math.log(k) + 1 / k))
    assert zc.jacov(linear_net(12, 4, 3), *batch) == pytest.approx(expected, rel=1e-6, abs=1e-2)


def test_jacov_is_nan_when_an_image_jacobian_is_constant(batch):
    net = linear_net(12, 3)
    with torch.no_grad():
        net[1].weight.fill_(1.0)  # every input gradient is the constant 3
    assert math.isnan(zc.jacov(net, *batch))


def test_naswot_equals_log_det_of_the_hamming_kernel(batch):
    net = linear_net(12, 7, 3, act=nn.GELU())
    pre = (batch[0].flatten(1) @ net[1].weight.detach().T > 0).numpy()
    units = pre.shape[1]
    kernel = np.array([[units - np.sum(a != b) for b in pre] for a in pre], dtype=np.float64)
    assert zc.naswot(net, *batch) == pytest.approx(np.linalg.slogdet(kernel)[1], rel=1e-9)


def test_zen_of_a_linear_map_is_log_of_the_perturbation_norm(batch):
    net, alpha = linear_net(12, 4), 0.01
    gen = torch.Generator().manual_seed(3)
    torch.randn(batch[0].shape, generator=gen)  # x: a linear map's difference ignores it
    eps = torch.randn(batch[0].shape, generator=gen).flatten(1)
    expected = math.log(float((alpha * eps @ net[1].weight.detach().T).abs().sum(1).mean()))
    assert zc.zen(net, *batch, seed=3) == pytest.approx(expected, rel=1e-4)


def test_zico_equals_the_hand_gradient_statistics(batch):
    images, labels = batch
    net = linear_net(12, 3)
    w = net[1].weight.detach().double()
    grads = []
    for x, y in zip(images.flatten(1).double().chunk(2), labels.chunk(2)):
        p = torch.softmax(x @ w.T, dim=1)
        p[torch.arange(len(y)), y] -= 1
        grads.append(p.T @ x / len(y))  # dCE/dW of the mean loss
    g = torch.stack(grads)
    expected = math.log(float((g.abs().mean(0) / g.std(0, unbiased=False)).sum()))
    assert zc.zico(net, images, labels) == pytest.approx(expected, rel=1e-5)


def test_ntk_condition_number_of_a_linear_net_is_that_of_the_image_gram(batch):
    images = batch[0]
    x = images.flatten(1).double()
    eig = torch.linalg.eigvalsh(x @ x.T)  # Θ = C · X Xᵀ for y = W x, C classes
    assert zc.ntk_cond(linear_net(12, 3), *batch) == pytest.approx(float(-eig[-1] / eig[0]), rel=1e-4)


def test_dss_splits_nuclear_norms_on_msa_and_saliency_on_mlp():
    model = tiny_vit()
    images = torch.zeros(2, 3, 16, 16)
    linear = zc._linearised(model)
    linear(torch.ones(1, 3, 16, 16, dtype=torch.float64)).sum().backward()
    expected = 0.0
    for block in linear.blocks:
        for lin in (block.attn.qkv, block.attn.proj):
            nuc = lambda t: np.linalg.svd(t.detach().numpy(), compute_uv=False).sum()  # noqa: E731
            expected += nuc(lin.weight) * nuc(lin.weight.grad)
        for lin in (block.mlp.fc1, block.mlp.fc2):
            expected += float((lin.weight.detach() * lin.weight.grad).abs().sum())
    assert zc.dss(model, images, torch.zeros(2, dtype=torch.long)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", sorted(zc.PASS_PROXIES))
def test_every_pass_proxy_is_finite_and_deterministic_on_a_vit(name):
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    first = zc.PASS_PROXIES[name](tiny_vit(), images, labels, 0)
    assert math.isfinite(first)
    assert zc.PASS_PROXIES[name](tiny_vit(), images, labels, 0) == first


@pytest.mark.parametrize("name", ["synflow", "logsynflow", "dss"])
def test_wider_vits_score_higher_on_size_driven_proxies(name):
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    narrow = zc.PASS_PROXIES[name](tiny_vit(embed_dim=16), images, labels, 0)
    wide = zc.PASS_PROXIES[name](tiny_vit(embed_dim=64), images, labels, 0)
    assert wide > narrow
