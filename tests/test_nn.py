"""routemix.nn: lifted layers, gates and routers against closed forms and slow looped references."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from routemix.errors import RoutemixError
from routemix.nn import (
    AveragePaths,
    CrossConnection,
    CrossPrediction,
    CrossStitch,
    GateNetwork,
    GateTrace,
    LinearCrossPrediction,
    OneToManyConnection,
    OneToManyPrediction,
    PathBasicBlock,
    PathBatchNorm2d,
    PathConv2d,
    PathLinear,
    PerPath,
    RepeatPaths,
    mix_paths,
)
from routemix.nn.blocks import ZeroPadShortcut, init_conv_bn

# ---- slow references: P separate ordinary modules, Python loops over paths -----------------------


def looped_gates(gate: GateNetwork, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3.3-3.5 with one nn.Linear pair per incoming path, copied from the batched gate network."""
    rows = []
    for i in range(gate.num_in):
        w1, w2 = nn.Linear(*gate.squeeze.weight.shape[1:][::-1]), nn.Linear(*gate.excite.weight.shape[1:][::-1])
        with torch.no_grad():
            w1.weight.copy_(gate.squeeze.weight[i]), w1.bias.copy_(gate.squeeze.bias[i])
            w2.weight.copy_(gate.excite.weight[i]), w2.bias.copy_(gate.excite.bias[i])
        z = x[:, i].mean(dim=(-2, -1)) if x.dim() == 5 else x[:, i]  # eq. 3.3
        rows.append(torch.softmax(w2(torch.relu(w1(z))), dim=-1))  # eq. 3.4-3.5
    return torch.stack(rows, dim=1)


def looped_cross_connection(router: CrossConnection, x: torch.Tensor) -> torch.Tensor:
    g = looped_gates(router.gate, x)
    outputs = []
    for j in range(router.gate.num_out):
        y = sum(g[:, i, j].view(-1, *[1] * (x.dim() - 2)) * x[:, i] for i in range(router.gate.num_in))  # eq. 3.7
        outputs.append(y)
    return torch.stack(outputs, dim=1)


def looped_cross_prediction(router: CrossPrediction, x: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 with P_in x P_out separate nn.Conv2d, copied from the grouped convolution."""
    grouped = router.predict.conv
    p_in, p_out, c_out = router.gate.num_in, router.num_out, router.out_channels
    weight = grouped.weight.view(p_in, p_out, c_out, *grouped.weight.shape[1:])
    bias = grouped.bias.view(p_in, p_out, c_out)
    g = looped_gates(router.gate, x)
    outputs = []
    for j in range(p_out):
        total = 0
        for i in range(p_in):
            conv = nn.Conv2d(weight.shape[3], c_out, grouped.kernel_size, grouped.stride, grouped.padding)
            with torch.no_grad():
                conv.weight.copy_(weight[i, j]), conv.bias.copy_(bias[i, j])
            total = total + g[:, i, j].view(-1, 1, 1, 1) * conv(x[:, i])  # eq. 3.1, 3.6
        outputs.append(torch.relu(total))
    return torch.stack(outputs, dim=1)


# ---- gates ------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 5),
    p_in=st.integers(1, 4),
    p_out=st.integers(1, 5),
    channels=st.integers(1, 20),
    spatial=st.booleans(),
)
def test_gate_rows_are_probabilities_of_the_right_shape(batch, p_in, p_out, channels, spatial):
    gate = GateNetwork(p_in, p_out, channels)
    x = torch.randn(batch, p_in, channels, 3, 3) if spatial else torch.randn(batch, p_in, channels)
    g = gate(x)
    assert g.shape == (batch, p_in, p_out)
    assert torch.all(g >= 0)
    torch.testing.assert_close(g.sum(-1), torch.ones(batch, p_in))
    torch.testing.assert_close(g, looped_gates(gate, x))


def test_gate_hidden_width_default_and_override():
    assert GateNetwork(2, 2, 256).squeeze.out_features == 16  # SENet's reduction 16
    assert GateNetwork(2, 2, 3).squeeze.out_features == 8  # floor for narrow inputs
    assert GateNetwork(2, 2, 64, hidden=5).excite.in_features == 5


# ---- routers against the closed form and the looped reference ---------------------------------------


@pytest.mark.parametrize("p_in,p_out", [(2, 2), (3, 2), (2, 4), (1, 3)])
def test_cross_connection_equals_looped_reference(p_in, p_out):
    torch.manual_seed(0)
    router = CrossConnection(p_in, p_out, channels=6)
    x = torch.randn(4, p_in, 6, 5, 5)
    y = router(x)
    assert y.shape == (4, p_out, 6, 5, 5)
    torch.testing.assert_close(y, looped_cross_connection(router, x))


def test_cross_connection_is_the_matrix_of_eq_3_8_pixel_by_pixel():
    torch.manual_seed(1)
    router = CrossConnection(3, 2, channels=4)
    x = torch.randn(2, 3, 4, 3, 3)
    g = router.gate(x)
    y = router(x)
    b, a, bb, c = 1, 2, 0, 3
    pixel_in = x[b, :, c, a, bb]  # (x_1 ... x_m) at one location
    torch.testing.assert_close(y[b, :, c, a, bb], g[b].T @ pixel_in)


def test_dense_cross_connection():
    router = CrossConnection(2, 3, channels=7)
    x = torch.randn(5, 2, 7)
    torch.testing.assert_close(router(x), looped_cross_connection(router, x))


@pytest.mark.parametrize("p_in,p_out,stride", [(2, 2, 1), (3, 2, 1), (2, 3, 2)])
def test_cross_prediction_equals_looped_reference(p_in, p_out, stride):
    torch.manual_seed(0)
    router = CrossPrediction(p_in, p_out, in_channels=4, out_channels=5, stride=stride)
    x = torch.randn(3, p_in, 4, 8, 8)
    y = router(x)
    assert y.shape == (3, p_out, 5, 8 // stride, 8 // stride)
    torch.testing.assert_close(y, looped_cross_prediction(router, x))


def test_linear_cross_prediction_closed_form():
    torch.manual_seed(0)
    router = LinearCrossPrediction(3, 2, in_features=6, out_features=4)
    x = torch.randn(5, 3, 6)
    g = looped_gates(router.gate, x)
    w = router.predict.weight.view(3, 2, 4, 6)
    b = router.predict.bias.view(3, 2, 4)
    expected = torch.stack(
        [torch.relu(sum(g[:, i, j, None] * (x[:, i] @ w[i, j].T + b[i, j]) for i in range(3))) for j in range(2)], dim=1
    )
    torch.testing.assert_close(router(x), expected)


def test_one_to_many_routers_take_a_tensor_without_path_axis():
    x = torch.randn(2, 3, 8, 8)
    widen = OneToManyConnection(4, channels=3)
    y = widen(x)
    g = widen.gate(x.unsqueeze(1))[:, 0]  # (B, P_out)
    torch.testing.assert_close(y, g[:, :, None, None, None] * x[:, None])  # Y_j = g_j X
    assert OneToManyPrediction(3, 3, 16)(x).shape == (2, 3, 16, 8, 8)


def test_single_path_routers_reduce_to_the_plain_layers():
    x = torch.randn(2, 1, 4, 6, 6)
    torch.testing.assert_close(CrossConnection(1, 1, 4)(x), x)  # the only gate is softmax of one score = 1
    router = CrossPrediction(1, 1, 4, 5)
    plain = nn.Conv2d(4, 5, 3, padding=1)
    plain.load_state_dict(router.predict.conv.state_dict())
    torch.testing.assert_close(router(x)[:, 0], torch.relu(plain(x[:, 0])))


def test_cross_prediction_norm_option_normalises_before_the_relu():
    router = CrossPrediction(2, 2, 3, 4, norm=True, bias=False)
    x = torch.randn(16, 2, 3, 5, 5)
    y = router(x)
    assert y.shape == (16, 2, 4, 5, 5) and torch.all(y >= 0)
    assert router.predict.conv.bias is None


# ---- gradients: eq. 3.10-3.15 ---------------------------------------------------------------------


def simplified_cross_connection(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sec. 3.3's simplified layer: A_i = W_i X_i (eq. 3.9), G_i = softmax(A_i), Y_j = sum_i g_ij X_i."""
    scores = torch.einsum("iok,bik->bio", weights, x)
    return mix_paths(x, torch.softmax(scores, dim=-1))


def test_simplified_cross_connection_passes_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 5, dtype=torch.double, requires_grad=True)
    w = torch.randn(2, 3, 5, dtype=torch.double, requires_grad=True)  # m=2 inputs, n=3 outputs, k=5
    assert torch.autograd.gradcheck(simplified_cross_connection, (x, w))


def test_autograd_matches_the_closed_form_gradients_of_eq_3_10_to_3_15():
    torch.manual_seed(0)
    m, n, k = 2, 3, 4
    x = torch.randn(1, m, k, dtype=torch.double, requires_grad=True)
    w = torch.randn(m, n, k, dtype=torch.double, requires_grad=True)
    dy = torch.randn(1, n, k, dtype=torch.double)  # dL/dY_j
    (simplified_cross_connection(x, w) * dy).sum().backward()

    for i in range(m):
        xi, wi = x[0, i].detach(), w[i].detach()
        g = torch.softmax(wi @ xi, dim=0)
        dl_dg = torch.stack([(dy[0, j] * xi).sum() for j in range(n)])  # eq. 3.10-3.11
        jacobian = torch.diag(g) - torch.outer(g, g)  # eq. 3.13
        dl_da = jacobian.T @ dl_dg  # eq. 3.12
        torch.testing.assert_close(w.grad[i], torch.outer(dl_da, xi))  # eq. 3.14
        direct = sum(g[j] * dy[0, j] for j in range(n))
        torch.testing.assert_close(x.grad[0, i], direct + wi.T @ dl_da)  # eq. 3.15


def test_full_routers_pass_gradcheck_in_double_precision():
    torch.manual_seed(0)
    cc = CrossConnection(2, 3, channels=3, gate_hidden=4).double()
    x = torch.randn(2, 2, 3, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(cc, (x,))
    cp = CrossPrediction(2, 2, 2, 2, gate_hidden=3).double()
    x = torch.randn(2, 2, 2, 4, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(cp, (x,))


# ---- lifted layers ---------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    paths=st.integers(1, 4),
    c_in=st.integers(1, 5),
    c_out=st.integers(1, 5),
    size=st.integers(3, 7),
    kernel=st.sampled_from([1, 3]),
    stride=st.sampled_from([1, 2]),
)
def test_path_conv_is_p_separate_convolutions(batch, paths, c_in, c_out, size, kernel, stride):
    layer = PathConv2d(paths, c_in, c_out, kernel, stride=stride)
    x = torch.randn(batch, paths, c_in, size, size)
    y = layer(x)
    for p in range(paths):
        conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2)
        with torch.no_grad():
            conv.weight.copy_(layer.conv.weight[p * c_out : (p + 1) * c_out])
            conv.bias.copy_(layer.conv.bias[p * c_out : (p + 1) * c_out])
        torch.testing.assert_close(y[:, p], conv(x[:, p]))


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 4), paths=st.integers(1, 4), d_in=st.integers(1, 6), d_out=st.integers(1, 6))
def test_path_linear_is_p_separate_linears(batch, paths, d_in, d_out):
    layer = PathLinear(paths, d_in, d_out)
    x = torch.randn(batch, paths, d_in)
    expected = torch.stack([x[:, p] @ layer.weight[p].T + layer.bias[p] for p in range(paths)], dim=1)
    torch.testing.assert_close(layer(x), expected)


def test_path_batch_norm_keeps_separate_statistics_per_path():
    bn = PathBatchNorm2d(2, 3)
    x = torch.randn(8, 2, 3, 4, 4)
    x[:, 1] = x[:, 1] * 5 + 7
    y = bn(x)
    torch.testing.assert_close(y.mean(dim=(0, 3, 4)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    assert bn.bn.running_mean.view(2, 3)[1].mean() > bn.bn.running_mean.view(2, 3)[0].mean() + 0.5


def test_per_path_pooling_repeat_and_average():
    x = torch.randn(2, 3, 4, 8, 8)
    pooled = PerPath(nn.MaxPool2d(2))(x)
    torch.testing.assert_close(pooled[:, 1], nn.functional.max_pool2d(x[:, 1], 2))
    widened = RepeatPaths(3)(x[:, 0])
    assert widened.shape == (2, 3, 4, 8, 8) and torch.equal(widened[:, 2], x[:, 0])
    torch.testing.assert_close(AveragePaths()(x), (x[:, 0] + x[:, 1] + x[:, 2]) / 3)


def test_per_path_refuses_layers_with_weights():
    with pytest.raises(RoutemixError, match="PathBatchNorm2d"):
        PerPath(nn.BatchNorm2d(4))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_num_paths_below_one_is_a_clear_error(bad):
    with pytest.raises(RoutemixError, match="num_paths"):
        PathConv2d(bad, 3, 3, 3)


def test_wrong_number_of_paths_is_a_clear_error():
    with pytest.raises(RoutemixError, match=r"P=2.*\(4, 3, 3, 5, 5\)"):
        PathConv2d(2, 3, 3, 3)(torch.randn(4, 3, 3, 5, 5))


def test_multi_path_init_matches_separate_networks():
    """The per-group fan-out: each path of a 4-path conv starts like a lone convolution."""
    torch.manual_seed(0)
    wide = nn.Sequential(PathConv2d(4, 64, 64, 3))
    alone = nn.Sequential(PathConv2d(1, 64, 64, 3))
    init_conv_bn(wide), init_conv_bn(alone)
    expected = math.sqrt(2.0 / (64 * 9))
    assert wide[0].conv.weight.std().item() == pytest.approx(expected, rel=0.03)
    assert alone[0].conv.weight.std().item() == pytest.approx(expected, rel=0.03)


# ---- blocks and traces -----------------------------------------------------------------------------


def test_cross_stitch_starts_near_identity_and_mixes_with_one_matrix():
    stitch = CrossStitch(2)
    torch.testing.assert_close(stitch.weights.detach(), torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    x = torch.randn(3, 2, 4, 2, 2)
    torch.testing.assert_close(stitch(x)[:, 0], 0.9 * x[:, 0] + 0.1 * x[:, 1])


def test_zero_pad_shortcut_subsamples_and_pads_channels():
    x = torch.randn(2, 1, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 1, 32, 4, 4)
    torch.testing.assert_close(y[:, :, 8:24], x[..., ::2, ::2])
    assert torch.all(y[:, :, :8] == 0) and torch.all(y[:, :, 24:] == 0)


def test_basic_block_with_one_path_is_torchvision_basic_block():
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(0)
    ours = PathBasicBlock(1, 8, 16, stride=2, shortcut="B").eval()
    theirs = BasicBlock(
        8, 16, stride=2, downsample=nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
    ).eval()
    for (_, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        b.copy_(a.view_as(b))
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(ours(x.unsqueeze(1))[:, 0], theirs(x))


def test_gate_trace_collects_gates_with_gradients_and_leaves_no_hooks():
    model = nn.Sequential(OneToManyConnection(2, 3), CrossConnection(2, 2, 3), AveragePaths())
    x = torch.randn(4, 3, 5, 5)
    with GateTrace(model) as trace:
        model(x).sum().backward()
    assert list(trace.gates) == ["0.gate", "1.gate"]
    assert trace.gates["0.gate"].shape == (4, 1, 2) and trace.gates["1.gate"].requires_grad
    torch.testing.assert_close(torch.softmax(trace.scores["1.gate"], -1), trace.gates["1.gate"])
    assert all(not m._forward_hooks for m in model.modules())
