"""Gate regularisation with the NMM-EM loss (thesis ch. 5.1-5.2) and the gate statistics."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from test_train_supervised import tiny_datamodule

from routemix.bench import gates as bench_gates
from routemix.cli import main
from routemix.losses import NMMLoss
from routemix.losses.gates import GateClusteringLoss, gate_networks
from routemix.metrics import gate_statistics, summarize_gate_statistics
from routemix.models import create_model
from routemix.nn.gates import GateNetwork, GateTrace
from routemix.nn.routers import CrossConnection, OneToManyConnection
from routemix.train.supervised import ClassifierModule, fit

# --- NMMLoss with several mixtures -------------------------------------------------------------


def test_several_mixtures_are_independent_nmm_losses_summed():
    """(B, M, K) scores score exactly as M separate NMM losses: loss summed, posteriors, running
    statistics and priors per mixture."""
    torch.manual_seed(0)
    scores = torch.randn(32, 3, 4, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.5]).view(1, 3, 1).double()
    joint = NMMLoss(4, priors=True, prior_momentum=0.5, num_mixtures=3).double()
    singles = [NMMLoss(4, priors=True, prior_momentum=0.5).double() for _ in range(3)]
    for _ in range(2):  # the second call sees updated priors
        out = joint(scores)
        outs = [loss(scores[:, m]) for m, loss in enumerate(singles)]
        torch.testing.assert_close(out.loss, sum(o.loss for o in outs))
        torch.testing.assert_close(out.posterior, torch.stack([o.posterior for o in outs], 1))
    torch.testing.assert_close(joint.running_mean.view(3, 4), torch.stack([s.running_mean for s in singles]))
    torch.testing.assert_close(joint.log_prior.view(3, 4), torch.stack([s.log_prior for s in singles]))
    torch.testing.assert_close(joint.log_prior.view(3, 4).exp().sum(-1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected scores of shape \(batch, 3, 4\)"):
        joint(torch.randn(8, 4))


# --- the regulariser ---------------------------------------------------------------------------


def _router_model():
    return torch.nn.Sequential(
        OneToManyConnection(2, channels=4, gate_hidden=8),
        CrossConnection(2, 3, channels=4, gate_hidden=8),
        CrossConnection(3, 1, channels=4, gate_hidden=8),
    )


def test_gate_networks_found_selected_and_single_outputs_skipped():
    model = _router_model()
    assert gate_networks(model) == {
        "0.gate": (1, 2),
        "1.gate": (2, 3),
    }  # "2.gate" routes to one path: nothing to cluster
    assert gate_networks(model, ["1.*"]) == {"1.gate": (2, 3)}
    with pytest.raises(
        ValueError,
        match=r"no gate network matches .conv\*.; "
        r"the model.s gate networks with more than one outgoing path: 0.gate, 1.gate\.$",
    ):
        gate_networks(model, ["conv*"])
    with pytest.raises(ValueError, match="no gate network to regularise"):
        GateClusteringLoss.for_model(create_model("basecnn", num_classes=10, in_channels=1, input_size=32))


def test_local_scope_is_one_nmm_loss_per_gating_vector_and_global_one_per_router():
    torch.manual_seed(1)
    scores = {
        "0.gate": torch.randn(16, 1, 2, dtype=torch.float64),
        "1.gate": torch.randn(16, 2, 3, dtype=torch.float64),
    }
    shapes = {"0.gate": (1, 2), "1.gate": (2, 3)}
    local = GateClusteringLoss(shapes, scope="local", priors=False).double()(scores)
    expected = NMMLoss(2).double()(scores["0.gate"][:, 0]).loss + sum(
        NMMLoss(3).double()(scores["1.gate"][:, i]).loss for i in range(2)
    )
    torch.testing.assert_close(local, expected)
    global_ = GateClusteringLoss(shapes, scope="global", priors=False).double()(scores)
    expected = (
        NMMLoss(2).double()(scores["0.gate"][:, 0]).loss + NMMLoss(3).double()(scores["1.gate"].flatten(0, 1)).loss
    )
    torch.testing.assert_close(global_, expected)
    with pytest.raises(ValueError, match="no relevance scores for gate network"):
        GateClusteringLoss(shapes)({"0.gate": scores["0.gate"]})


def test_global_scope_sees_offsets_between_gating_vectors_local_does_not():
    """The design difference of the two scopes: eq. 4.11 per (i, j) removes an offset of one gate
    network's scores (local cannot see it); shared statistics over the layer keep it (global can)."""
    torch.manual_seed(2)
    a = torch.randn(64, 2, 2, dtype=torch.float64)
    offset = torch.tensor([[3.0, -3.0], [0.0, 0.0]], dtype=torch.float64)  # gate 0 favours path 0, gate 1 does not
    for scope, invariant in (("local", True), ("global", False)):
        loss = GateClusteringLoss({"g": (2, 2)}, scope=scope, priors=False).double()
        same = torch.isclose(loss({"g": a}), loss({"g": a + offset}))
        assert bool(same) is invariant, scope
        common = torch.tensor([[1.0, -2.0], [1.0, -2.0]], dtype=torch.float64)  # the same offset for every gate
        torch.testing.assert_close(loss({"g": a}), loss({"g": a + common}))  # invisible to both


def test_regulariser_alone_makes_a_gate_cluster_its_inputs():
    """Trained only with the gate loss, a gate network splits two well-separated groups of inputs
    between its two outgoing paths (it clusters its input space, ch. 5.1)."""
    torch.manual_seed(3)
    centres = torch.zeros(2, 6)
    centres[0, 0], centres[1, 1] = 4.0, 4.0
    labels = torch.arange(256) % 2
    x = (centres[labels] + 0.5 * torch.randn(256, 6)).unsqueeze(1)  # (B, P_in=1, C)
    gate = GateNetwork(1, 2, channels=6, hidden=8)
    loss = GateClusteringLoss({"gate": (1, 2)}, scope="local", priors=True)
    optimizer = torch.optim.Adam(gate.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        loss({"gate": gate.scores(x)}).backward()
        optimizer.step()
    assigned = gate(x)[:, 0].argmax(-1)
    agreement = (assigned == labels).float().mean().item()
    assert max(agreement, 1 - agreement) > 0.95


def test_training_with_the_regulariser_logs_both_losses_and_changes_the_gates(tmp_path):
    def trained(regularizer):
        torch.manual_seed(0)
        model = create_model("basecnn_2cc", num_classes=10, in_channels=3, input_size=8)
        reg = None if regularizer is None else GateClusteringLoss.for_model(model, scope=regularizer)
        module = ClassifierModule(model, lr=0.05, milestones=[], gate_regularizer=reg, gate_weight=0.5)
        fit(
            module,
            tiny_datamodule(seed=1),
            max_epochs=1,
            run_dir=tmp_path / str(regularizer),
            progress=False,
            accelerator="cpu",
        )
        return model, tmp_path / str(regularizer)

    plain, _ = trained(None)
    local, run_dir = trained("local")
    with (run_dir / "logs" / "version_0" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    assert {"train/task_loss", "train/gate_loss", "val/gate_skewed_share", "val/gate_entropy"} <= columns
    row = next(r for r in rows if r["train/gate_loss"])
    assert float(row["train/loss"]) == pytest.approx(
        float(row["train/task_loss"]) + 0.5 * float(row["train/gate_loss"]), rel=1e-4
    )
    p, q = dict(plain.named_parameters()), dict(local.named_parameters())
    assert any(not torch.equal(p[n], q[n]) for n in p if ".gate." in n)


def test_train_and_eval_commands_with_gate_regularisation(shared_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--model",
        "basecnn_2cc",
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
        "global",
        "--gate-reg-routers",
        "layers.route*",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    assert main(args) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["gate_reg"] == "global" and config["gate_reg_weight"] == 0.01 and config["gate_reg_priors"] is True
    assert main(["eval", str(run_dir), "--limit", "128", "--no-progress", "--out", str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "gate statistics over the test images" in out and "gating vectors skewed" in out
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert len(saved["gate_stats"]) == 9 and 0 <= saved["gate_summary"]["entropy"] <= 1  # 1 + 4 x 2 gating vectors

    def bad(model, *extra):
        return [
            "train",
            "--model",
            model,
            "--dataset",
            "fashion_mnist",
            "--data-dir",
            str(shared_data),
            "--epochs",
            "1",
            "--limit",
            "64",
            "--gate-reg",
            "local",
            *extra,
            "--run-dir",
            str(tmp_path / "bad"),
            "--no-progress",
        ]

    assert main(bad("basecnn")) == 2
    assert "has no router to regularise" in capsys.readouterr().err
    assert main(bad("basecnn_2cc", "--gate-reg-routers", "nothing*")) == 2
    assert "no gate network matches 'nothing*'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything was written


# --- gate statistics ---------------------------------------------------------------------------


def test_gate_statistics_against_hand_computed_values():
    n = 100
    even = torch.tensor([0.5, 0.5]).expand(n, 2)
    stuck = torch.tensor([0.95, 0.05]).expand(n, 2)
    switching = torch.stack([torch.tensor([1.0, 0.0]) if i % 2 else torch.tensor([0.0, 1.0]) for i in range(n)])
    stats = gate_statistics({"r": torch.stack([even, stuck, switching], 1)})
    assert [s["incoming"] for s in stats] == [0, 1, 2]
    assert (
        stats[0]["entropy"] == pytest.approx(1.0)
        and not stats[0]["skewed"]
        and stats[0]["std"] == pytest.approx([0, 0])
    )
    h = -(0.95 * math.log(0.95) + 0.05 * math.log(0.05)) / math.log(2)
    assert (
        stats[1]["entropy"] == pytest.approx(h)
        and stats[1]["skewed"]
        and stats[1]["high"] == pytest.approx([0.95, 0.05])
    )
    # one-hot per sample but half and half over the data: routing, not collapse
    assert (
        stats[2]["entropy"] == pytest.approx(1.0)
        and not stats[2]["skewed"]
        and stats[2]["std"] == pytest.approx([0.5, 0.5])
    )
    assert stats[2]["low"] == pytest.approx([0, 0]) and stats[2]["high"] == pytest.approx([1, 1])
    summary = summarize_gate_statistics(stats)
    assert summary["skewed_share"] == pytest.approx(1 / 3)
    assert summary["minority_high"] == pytest.approx((0.5 + 0.05 + 1.0) / 3)
    with pytest.raises(ValueError, match=r"must be \(N, P_in, P_out\)"):
        gate_statistics({"r": torch.rand(4, 2)})


def test_model_gates_give_statistics_of_every_vector():
    model = create_model("basecnn_2cc", num_classes=10, in_channels=1, input_size=32).eval()
    with torch.no_grad(), GateTrace(model) as trace:
        model(torch.randn(8, 1, 32, 32))
    stats = gate_statistics(trace.gates)
    assert len(stats) == sum(g.shape[1] for g in trace.gates.values())
    for s in stats:
        assert sum(s["mean"]) == pytest.approx(1.0, abs=1e-5) and 0 <= s["entropy"] <= 1 + 1e-9


# --- bench gates -------------------------------------------------------------------------------


def _fake_run(variant, seed, error, stuck):
    values = np.full((6, 1, 2), [stuck, 1 - stuck])
    stats = gate_statistics({"layers.route1.gate": torch.as_tensor(values)})
    return {
        "model": "basecnn_2cc",
        "seed": seed,
        "error": error,
        "seconds": 1.0,
        "epochs": 4,
        "train_images": 100,
        "gate_reg": variant,
        "gate_weight": 0.01,
        "gate_stats": stats,
        "gate_samples": {"layers.route1.gate": values.tolist()},
    }


def test_bench_gates_summary_figure_and_resume(tmp_path, monkeypatch):
    calls = []

    def fake_train_one(model, seed, *, gate_reg, **kwargs):
        calls.append((gate_reg, seed))
        return _fake_run(gate_reg, seed, 10.0 + seed, 0.95 if gate_reg == "none" else 0.7)

    monkeypatch.setattr(bench_gates, "train_one", fake_train_one)
    out = tmp_path / "gates.json"
    kwargs = dict(data_dir=None, model="basecnn_2cc", epochs=4, train_images=100, out=str(out), progress=False)
    bench_gates.run(seeds=(0,), **kwargs)
    results = bench_gates.run(seeds=(0, 1), **kwargs)  # only seed 1 is new
    assert calls == [("none", 0), ("local", 0), ("global", 0), ("none", 1), ("local", 1), ("global", 1)]
    assert len(json.loads(out.read_text())) == 6 and len(results) == 6
    rows = bench_gates.summarize(results)
    assert [r["variant"] for r in rows] == ["none", "local", "global"]
    assert rows[0]["skewed_share"] == 1.0 and rows[1]["skewed_share"] == 0.0 and rows[0]["error"] == pytest.approx(10.5)
    assert "| none | 10.50 ± 0.50 | 10.00, 11.00 | 100% |" in bench_gates.format_table(rows)
    assert bench_gates.chosen_gate(results) == ("layers.route1.gate", 0, 1)
    written = bench_gates.plot_gate_response(results, tmp_path / "fig")
    assert [p.suffix for p in written] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in written)
