"""Sparse routing (routemix.nn.sparse, thesis sec. 5.3): dispatch rules, sparsity, closed form, FLOPs."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from routemix.errors import RoutemixError
from routemix.models import create_model, list_models
from routemix.nn import GateTrace, PathConv2d, PathLinear
from routemix.nn.sparse import SparseRouting, combine, dispatch, plan_dispatch, top_k_paths


def test_dispatch_fills_slots_in_priority_order_and_drops_overflow():
    # 4 samples, 2 paths, capacity 2; first choices 0, 0, 0, 1 and second choices 1, 1, 1, 0
    paths = torch.tensor([[0, 1], [0, 1], [0, 1], [1, 0]])
    weights = torch.full((4, 2), 0.5)
    plan = plan_dispatch(paths, weights, num_paths=2, capacity=2)
    # priority: first choices of samples 0..3, then second choices of samples 0..3
    assert plan.sample.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert plan.path.tolist() == [0, 0, 0, 1, 1, 1, 1, 0]
    # path 0 takes samples 0 and 1 (sample 2's first choice overflows, so does sample 3's second);
    # path 1 takes sample 3 first, then sample 0's second choice; samples 1 and 2 find it full
    assert plan.kept.tolist() == [True, True, False, True, True, False, False, False]
    assert plan.load.tolist() == [4, 4] and plan.dropped == 4
    x = torch.arange(4.0).view(4, 1) + 1  # sample b holds b + 1
    slots = dispatch(x, plan)
    assert slots.shape == (2, 2, 1)
    assert slots[:, 0, 0].tolist() == [1.0, 2.0]  # path 0: samples 0, 1
    assert slots[:, 1, 0].tolist() == [4.0, 1.0]  # path 1: sample 3, then sample 0
    out = combine(slots * 10, plan, batch_size=4)
    # sample 0 via both paths, 1 via path 0 only, 2 nowhere (zeros), 3 via path 1 only
    assert out[:, 0].tolist() == [10.0, 10.0, 0.0, 20.0]


def test_unlimited_capacity_is_the_busiest_path():
    paths = torch.tensor([[2], [2], [0], [2]])
    plan = plan_dispatch(paths, torch.ones(4, 1), num_paths=3, capacity=None)
    assert plan.capacity == 3 and plan.dropped == 0


def test_reroute_sends_an_overflowing_sample_to_its_next_choice_with_room():
    # the plan of the test above with k = 1 and rerouting: sample 2 finds path 0 full and falls
    # back to its second choice, path 1, which still has a slot
    paths = torch.tensor([[0, 1], [0, 1], [0, 1], [1, 0]])
    weights = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.7, 0.3]])
    plan = plan_dispatch(paths, weights, num_paths=2, capacity=2, k=1)
    assert plan.sample.tolist() == [0, 1, 2, 3, 2]  # round 1: every first choice; round 2: sample 2 only
    assert plan.path.tolist() == [0, 0, 0, 1, 1]
    assert plan.kept.tolist() == [True, True, False, True, True]
    assert plan.dropped == 0 and plan.rerouted == 1 and plan.load.tolist() == [3, 1]
    x = torch.arange(4.0).view(4, 1) + 1
    out = combine(dispatch(x, plan) * 10, plan, batch_size=4)
    # sample 2 is computed by path 1 and weighted by its gate there (0.4)
    torch.testing.assert_close(out[:, 0], torch.tensor([6.0, 12.0, 12.0, 28.0]))


def test_reroute_never_gives_a_sample_one_path_twice():
    # 3 paths of one slot, k = 2, both samples prefer 0, then 1, then 2: sample 0 takes paths 0
    # and 1; sample 1 finds both full and gets path 2 only, not path 2 twice
    paths = torch.tensor([[0, 1, 2], [0, 1, 2]])
    plan = plan_dispatch(paths, torch.full((2, 3), 1 / 3), num_paths=3, capacity=1, k=2)
    served = {(s, p) for s, p, kept in zip(plan.sample.tolist(), plan.path.tolist(), plan.kept.tolist()) if kept}
    assert served == {(0, 0), (0, 1), (1, 2)}
    assert plan.dropped == 1 and plan.rerouted == 1


class RecordingPaths(nn.Module):
    """Paths that record the slots they are given and scale path j by j + 1."""

    def __init__(self, num_paths):
        super().__init__()
        self.seen = None
        self.register_buffer("scale", torch.arange(1.0, num_paths + 1))

    def forward(self, slots):
        self.seen = slots.detach().clone()
        return slots * self.scale.view(1, -1, *([1] * (slots.dim() - 2)))


def test_a_path_sees_only_the_samples_routed_to_it():
    torch.manual_seed(0)
    num_paths, batch = 4, 32
    layer = SparseRouting(RecordingPaths(num_paths), num_paths, channels=8, k=1, capacity_factor=None).train()
    x = (
        torch.randn(batch, 8, 5, 5) + torch.arange(batch, dtype=torch.float).view(-1, 1, 1, 1) * 10
    )  # distinguishable samples
    plan = plan_dispatch(*top_k_paths(layer.gate(x.unsqueeze(1)).squeeze(1), 1), num_paths, None)
    layer(x)
    seen = layer.paths.seen
    for j in range(num_paths):
        routed = plan.sample[plan.path == j]
        got = seen[:, j]
        filled = got.flatten(1).abs().sum(1) > 0
        assert int(filled.sum()) == len(routed)  # as many occupied slots as routed samples, the rest empty
        torch.testing.assert_close(got[filled], x[routed])


def _dense_reference(layer: SparseRouting, x: torch.Tensor, keep=None) -> torch.Tensor:
    """Every path on every sample, then y_b = sum over chosen (and kept) paths of g_bj path_j(x_b)."""
    gates = layer.gate(x.unsqueeze(1)).squeeze(1)
    chosen, weights = top_k_paths(gates, layer.k)
    everything = layer.paths(x.unsqueeze(1).expand(-1, layer.num_paths, *x.shape[1:]))  # (B, P, ...)
    picked = everything[torch.arange(len(x)).unsqueeze(1), chosen]  # (B, k, ...)
    w = weights if keep is None else weights * keep
    return (picked * w.view(*w.shape, *([1] * (picked.dim() - 2)))).sum(1)


@pytest.mark.parametrize("k,allocation", [(1, "softmax"), (2, "softmax"), (2, "cluster"), (3, "cluster")])
def test_sparse_routing_equals_the_dense_closed_form(k, allocation):
    torch.manual_seed(1)
    layer = (
        SparseRouting(PathConv2d(4, 6, 5, 3, bias=True), 4, 6, k, allocation=allocation, capacity_factor=None)
        .double()
        .eval()
    )
    x = torch.randn(16, 6, 7, 7, dtype=torch.double, requires_grad=True)
    y = layer(x)
    reference = _dense_reference(layer, x)
    torch.testing.assert_close(y, reference)
    # gradients too: for the input, the paths and the gate network
    g_sparse = torch.autograd.grad(y.square().sum(), [x, *layer.parameters()])
    g_dense = torch.autograd.grad(reference.square().sum(), [x, *layer.parameters()])
    for a, b in zip(g_sparse, g_dense, strict=True):
        torch.testing.assert_close(a, b)


def test_overflow_contributes_nothing_and_evaluation_never_drops():
    torch.manual_seed(2)
    layer = SparseRouting(PathLinear(2, 3, 4), 2, 3, k=1, capacity_factor=0.5).double()
    with torch.no_grad():  # a gate that sends every sample to path 1
        layer.gate.excite.bias.copy_(torch.tensor([[-20.0, 20.0]]))
    x = torch.randn(8, 3, dtype=torch.double)
    layer.train()
    assert layer.capacity(8) == 2  # ceil(0.5 * 1 * 8 / 2)
    plan = layer.plan(x)
    assert plan.load.tolist() == [0, 8] and plan.dropped == 6
    keep = plan.kept.view(1, -1).t().to(x.dtype)  # k = 1: assignments are in sample order
    torch.testing.assert_close(layer(x), _dense_reference(layer, x, keep=keep))
    assert (layer(x)[2:] == 0).all()  # the six samples that found path 1 full get zeros
    layer.eval()
    assert layer.plan(x).dropped == 0
    torch.testing.assert_close(layer(x), _dense_reference(layer, x))


def test_rerouted_overflow_is_computed_by_another_path_and_nobody_gets_zeros():
    torch.manual_seed(2)
    layer = SparseRouting(PathLinear(2, 3, 4), 2, 3, k=1, capacity_factor=1.0, overflow="reroute").double().train()
    with torch.no_grad():  # a gate that sends every sample to path 1 first
        layer.gate.excite.bias.copy_(torch.tensor([[-3.0, 3.0]]))
    x = torch.randn(8, 3, dtype=torch.double)
    plan = layer.plan(x)
    assert plan.load.tolist() == [0, 8] and plan.dropped == 0 and plan.rerouted == 4  # 4 slots per path
    served = torch.zeros(8, dtype=torch.long)
    served[plan.sample[plan.kept]] = plan.path[plan.kept]
    assert served.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # batch order decides who is rerouted
    gates = layer.gate(x.unsqueeze(1)).squeeze(1)
    everything = layer.paths(x.unsqueeze(1).expand(-1, 2, -1))  # (B, P, 4)
    rows = torch.arange(8)
    reference = everything[rows, served] * gates[rows, served].unsqueeze(1)
    torch.testing.assert_close(layer(x), reference)


def test_cluster_allocation_ignores_a_constant_preference_for_one_path():
    """A bias that makes every sample prefer path 0 decides softmax routing but not the clustering
    router, which normalises each path's scores over the batch (eq. 4.11)."""
    torch.manual_seed(3)
    x = torch.randn(64, 16)
    loads = {}
    for allocation in ("softmax", "cluster"):
        layer = SparseRouting(PathLinear(4, 16, 8), 4, 16, k=1, allocation=allocation).train()
        with torch.no_grad():
            layer.gate.excite.bias.copy_(torch.tensor([[10.0, 0.0, 0.0, 0.0]]))
        loads[allocation] = layer.plan(x).load
    assert loads["softmax"].tolist() == [64, 0, 0, 0]
    assert (loads["cluster"] > 0).all()


def test_top1_gate_learns_from_the_task():
    """Combine weights are the gate probabilities, not renormalised, so a top-1 router's gate gets a
    gradient (renormalised, its weight would be the constant 1)."""
    torch.manual_seed(4)
    layer = SparseRouting(PathLinear(3, 5, 5), 3, 5, k=1).train()
    layer(torch.randn(32, 5)).square().sum().backward()
    assert layer.gate.excite.weight.grad.abs().sum() > 0


def _conv_flops(layer: SparseRouting, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        layer(x)
    return sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))


def test_flops_grow_with_k_not_with_the_number_of_paths():
    torch.manual_seed(5)
    x = torch.randn(64, 16, 8, 8)

    def flops(paths, k):
        layer = SparseRouting(PathConv2d(paths, 16, 16, 3, bias=False), paths, 16, k, capacity_factor=1.0).train()
        return _conv_flops(layer, x)

    one_path_per_sample = 2 * 64 * 16 * 16 * 9 * 8 * 8  # a 3x3 conv of 16 -> 16 channels on 64 samples
    assert flops(2, 1) == flops(4, 1) == flops(8, 1) == one_path_per_sample
    assert flops(8, 2) == flops(4, 2) == 2 * one_path_per_sample
    # the soft multi-path layer computes every path on every sample
    with FlopCounterMode(display=False) as counter:
        PathConv2d(8, 16, 16, 3, bias=False)(x.unsqueeze(1).expand(-1, 8, -1, -1, -1))
    assert counter.get_total_flops() == 8 * one_path_per_sample


def test_sparse_models_train_under_bf16_autocast():
    model = create_model("clustered_basecnn_2_top2", num_classes=10).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(16, 3, 32, 32))
    out.float().square().sum().backward()
    assert torch.isfinite(out.float()).all() and model.layers.conv1.gate.excite.weight.grad is not None


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="k must be between 1 and"):
        SparseRouting(nn.Identity(), 2, 4, k=3)
    with pytest.raises(ValueError, match="allocation"):
        SparseRouting(nn.Identity(), 2, 4, allocation="random")
    with pytest.raises(ValueError, match="capacity_factor"):
        SparseRouting(nn.Identity(), 2, 4, capacity_factor=0)
    with pytest.raises(ValueError, match="overflow"):
        SparseRouting(nn.Identity(), 2, 4, overflow="wait")
    with pytest.raises(RoutemixError, match="allocation"):
        create_model("sparse_basecnn_2_top1", num_classes=10, allocation="random")
    with pytest.raises(RoutemixError, match="path_init"):
        create_model("sparse_basecnn_2_top1", num_classes=10, path_init="random")


def test_shared_path_init_starts_every_path_from_the_same_filters():
    torch.manual_seed(0)
    shared = create_model("sparse_basecnn_4_top1", num_classes=10, path_init="shared")
    independent = create_model("sparse_basecnn_4_top1", num_classes=10, path_init="independent")
    for model, alike in ((shared, True), (independent, False)):
        for name, module in model.named_modules():
            if isinstance(module, SparseRouting):
                per_path = module.paths.conv.weight.view(4, -1)
                assert torch.equal(per_path, per_path[:1].expand_as(per_path)) == alike, name


SPARSE_ZOO = list_models(family="sparse-basecnn")


@pytest.mark.parametrize("name", SPARSE_ZOO)
def test_sparse_models_learn_exactly_on_the_paths_that_computed(name):
    """Logits for a batch; a path's filters get a gradient exactly when samples were routed to it,
    and everything that is not a path (gates, batch norm, the dense head) always learns."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).train()
    layers = {name: m for name, m in model.named_modules() if isinstance(m, SparseRouting)}
    plans = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, args: plans.__setitem__(m, m.plan(args[0]))) for m in layers.values()
    ]
    out = model(torch.randn(32, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert out.shape == (32, 7) and torch.isfinite(out).all()
    out.square().sum().backward()
    used_somewhere = False
    for name, layer in layers.items():
        plan = plans[layer]
        routed = torch.bincount(plan.path[plan.kept], minlength=layer.num_paths) > 0
        grad = layer.paths.conv.weight.grad.view(layer.num_paths, -1)
        assert ((grad != 0).any(1) == routed).all(), name
        used_somewhere |= bool(routed.sum() > 1)
    assert used_somewhere
    others = [
        n for n, p in model.named_parameters() if ".paths." not in n and (p.grad is None or not (p.grad != 0).any())
    ]
    assert not others, others


# --- the load-balancing loss and the clustering loss on sparse routers -------------------------


def test_load_balancing_loss_is_one_when_even_and_p_when_collapsed():
    from routemix.losses.gates import LoadBalancingLoss

    loss = LoadBalancingLoss({"r.gate": (1, 4)})
    even = torch.eye(4).repeat(8, 1).view(32, 1, 4) * 5  # each path first choice of a quarter, scores symmetric
    assert float(loss({"r.gate": even})) == pytest.approx(1.0)
    collapsed = torch.tensor([10.0, 0, 0, 0]).expand(32, 1, 4)
    assert float(loss({"r.gate": collapsed})) == pytest.approx(4 * torch.softmax(collapsed[0, 0], 0)[0].item())
    # the gradient lowers the busiest path's scores and raises the others'
    scores = collapsed.clone().requires_grad_(True)
    loss({"r.gate": scores}).backward()
    assert (scores.grad[..., 0] > 0).all() and (scores.grad[..., 1:] < 0).all()


def test_gate_regularizers_find_the_sparse_routers():
    from routemix.losses.gates import GateClusteringLoss, LoadBalancingLoss, gate_regularizer

    model = create_model("clustered_basecnn_4_top1", num_classes=10)
    assert gate_regularizer(model, "none") is None
    nmm, balance = gate_regularizer(model, "local"), gate_regularizer(model, "balance")
    assert isinstance(nmm, GateClusteringLoss) and isinstance(balance, LoadBalancingLoss)
    assert nmm.names == balance.names == [f"layers.conv{i}.gate" for i in range(1, 7)]
    with GateTrace(model) as trace:
        model(torch.randn(16, 3, 32, 32))
    assert torch.isfinite(nmm(trace.scores)) and torch.isfinite(balance(trace.scores))
    with pytest.raises(ValueError, match="gate regulariser must be one of"):
        gate_regularizer(model, "entropy")


# --- routemix bench sparse ---------------------------------------------------------------------


def test_path_usage_counts_top_k_assignments_or_gate_mass():
    from routemix.metrics import path_usage

    gates = torch.tensor(
        [[[0.7, 0.2, 0.1, 0.0]], [[0.6, 0.3, 0.1, 0.0]], [[0.1, 0.8, 0.06, 0.04]], [[0.5, 0.1, 0.36, 0.04]]]
    )
    (top1,) = path_usage({"r.gate": gates}, {"r.gate": 1})
    assert top1["share"] == [0.75, 0.25, 0.0, 0.0] and top1["peak"] == 3.0 and top1["used"] == 2 and top1["sparse"]
    (top2,) = path_usage({"r.gate": gates}, {"r.gate": 2})
    assert top2["share"] == [0.5, 0.375, 0.125, 0.0] and top2["used"] == 3
    (soft,) = path_usage({"r.gate": gates})  # a soft router: every path computes, shares are gate mass
    assert soft["share"] == pytest.approx([0.475, 0.35, 0.155, 0.02]) and soft["used"] == 4 and not soft["sparse"]
    (strict,) = path_usage({"r.gate": gates}, min_share=0.05)
    assert strict["used"] == 3
    with pytest.raises(ValueError, match="must be \\(N, P_in, P_out\\)"):
        path_usage({"r.gate": torch.ones(4, 4)})


def test_bench_sparse_trains_every_variant_resumes_and_tabulates(tmp_path, monkeypatch):
    from routemix.bench import routing
    from routemix.bench import sparse as bench

    calls = []

    def fake_train_one(model, seed, *, gate_reg, gate_samples, model_options, **kwargs):
        calls.append((model, gate_reg, seed) + ((model_options,) if model_options else ()))
        collapsed = model.startswith("sparse_") and gate_reg == "none"
        gates = (
            torch.tensor([0.7, 0.1, 0.1, 0.1]).expand(8, 1, 4) if collapsed else torch.eye(4).repeat(2, 1).view(8, 1, 4)
        )
        return {
            "model": model,
            "seed": seed,
            "error": 10.0 + seed,
            "seconds": 2.0,
            "epochs": 4,
            "train_images": 100,
            "gates": {},
            "gate_reg": gate_reg,
            "gate_stats": [],
            "gate_samples": {"layers.conv1.gate": gates.tolist()},
        }

    monkeypatch.setattr(routing, "train_one", fake_train_one)
    kwargs = dict(
        data_dir=None, paths=4, k=1, epochs=4, train_images=100, out=str(tmp_path / "sparse.json"), progress=False
    )
    bench.run(seeds=(0,), **kwargs)
    results = bench.run(seeds=(0, 1), **kwargs)  # only seed 1 is new
    assert (
        len(calls) == 10
        and calls[0] == ("basecnn_4cc", "none", 0)
        and calls[2] == ("sparse_basecnn_4_top1", "balance", 0)
    )
    assert calls[4] == ("clustered_basecnn_4_top1", "local", 0)
    rows = {r["variant"]: r for r in bench.summarize(results)}
    assert rows["sparse"]["peak_load"] == 4.0 and rows["sparse"]["paths_used"] == 1
    assert rows["clustered+nmm"]["peak_load"] == 1.0 and rows["clustered+nmm"]["paths_used"] == 4
    assert rows["soft"]["peak_load"] is None and rows["soft"]["error"] == pytest.approx(10.5)
    table = bench.format_table(list(rows.values()), paths=4)
    assert "| sparse | sparse_basecnn_4_top1 | 10.50 ± 0.50 | 10.00, 11.00 | 4.00 | 1.0 |" in table
    with pytest.raises(ValueError, match="bench sparse compares"):
        bench.run(seeds=(0,), variants=("dense",), **kwargs)
    bench.run(seeds=(0,), variants=("sparse/drop",), **kwargs)  # an ablation: the same model, built otherwise
    assert calls[-1] == ("sparse_basecnn_4_top1", "none", 0, {"overflow": "drop"})
    # any P builds: 8 paths is BaseCNN-8-CC beside the 8-path sparse networks (issue 21: it failed at its first job)
    bench.run(seeds=(0,), **{**kwargs, "paths": 8, "out": str(tmp_path / "sparse8.json")})
    assert [c[0] for c in calls[-5:]] == [
        "basecnn_8cc",
        "sparse_basecnn_8_top1",
        "sparse_basecnn_8_top1",
        "clustered_basecnn_8_top1",
        "clustered_basecnn_8_top1",
    ]
    with pytest.raises(RoutemixError, match="must not exceed P"):  # refused before any training
        bench.run(seeds=(0,), **{**kwargs, "paths": 2, "k": 3, "out": str(tmp_path / "sparse23.json")})
    assert len(calls) == 16 and not (tmp_path / "sparse23.json").exists()


def test_step_timing_reports_flops_that_grow_with_k():
    from routemix.bench.sparse import time_steps

    info = time_steps(["sparse_basecnn_2_top1", "sparse_basecnn_2_top2"], batch=16, steps=1, repeats=1)
    one, two = info["sparse_basecnn_2_top1"], info["sparse_basecnn_2_top2"]
    assert one["parameters"] == two["parameters"] and one["step_ms"] > 0
    assert two["conv_mflops"] == pytest.approx(2 * one["conv_mflops"], rel=0.1)  # capacity rounding aside


def test_train_and_eval_commands_with_a_sparse_model_and_load_balancing(shared_data, tmp_path, capsys):
    import json

    from routemix.cli import main

    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "sparse_basecnn_2_top1",
                "--dataset",
                "fashion_mnist",
                "--data-dir",
                str(shared_data),
                "--epochs",
                "1",
                "--limit",
                "256",
                "--limit-test",
                "128",
                "--gate-reg",
                "balance",
                "--run-dir",
                str(run_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((run_dir / "config.json").read_text())["gate_reg"] == "balance"
    assert main(["eval", str(run_dir), "--limit", "128", "--no-progress", "--out", str(tmp_path / "eval.json")]) == 0
    assert "paths used" in capsys.readouterr().out
    usage = json.loads((tmp_path / "eval.json").read_text())["path_usage"]
    assert [u["router"] for u in usage] == [f"layers.conv{i}.gate" for i in range(1, 7)]
    assert all(u["sparse"] and sum(u["share"]) == pytest.approx(1.0) and 1 <= u["used"] <= 2 for u in usage)
