"""The speed benchmark: the naive reference is the routed model written with loops; the throughput
mode's FLOP convention, utilisation arithmetic and data-loading shares."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from routemix.bench.speed import (
    VARIANTS,
    Throughput,
    arithmetic_utilisation,
    build_variant,
    format_table,
    format_throughput_table,
    forward_flops,
    matmul_peak_flops,
    run_throughput,
    time_variants,
    training_flops,
)
from routemix.models import count_parameters, create_model
from routemix.models.info import model_info
from routemix.nn import GateNetwork


def test_naive_reference_has_the_routed_models_layers():
    for base in ("basecnn", "resnet20"):
        routed, naive = build_variant(base, "routed", 3), build_variant(base, "naive", 3)
        assert count_parameters(naive) == count_parameters(routed)
        assert not any(isinstance(m, GateNetwork) for m in naive.modules())  # gates are nn.Linear pairs in loops
        assert naive(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_timing_rows_and_table():
    rows = time_variants("basecnn", 2, steps=1, repeats=1, batch=4)
    assert [r.variant for r in rows] == list(VARIANTS)
    assert all(r.seconds > 0 and r.batch == 4 for r in rows)
    table = format_table(rows)
    assert "| basecnn | 2 | 4 |" in table and "routed/naive" in table


def test_bad_bench_speed_arguments_are_one_line_errors(capsys):
    from routemix.cli import main

    for args in (["--paths", "2,x"], ["--paths", "1"], ["--bases", "vgg"]):
        assert main(["bench", "speed", "--no-memory", "--no-progress", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("routemix: error:") and "Traceback" not in err


# --- throughput mode ---------------------------------------------------------------------------


def test_flop_convention_is_two_flops_per_multiply_add_and_three_passes_per_step():
    assert forward_flops(1_000) == 2_000
    assert training_flops(1_000) == 6_000


@pytest.mark.parametrize("name", ["basecnn", "resnet20", "ddc_lenet"])
def test_training_flops_convention_matches_torchs_count_of_forward_and_backward(name):
    """On single-path networks (no grouped convolutions) torch's counter of forward + backward
    lands just under 3 forward passes: the first layer computes no input gradient."""
    info = model_info(name, num_classes=10)
    with torch.device("meta"):
        model = create_model(name, num_classes=10).train()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(2, *info.spec.input_shape)).sum().backward()
    per_image = counter.get_total_flops() / 2
    assert 0.9 * training_flops(info.multiply_adds) <= per_image <= training_flops(info.multiply_adds)


def test_utilisation_against_a_hand_computed_case():
    # 1e6 MACs/image -> 2e6 forward FLOPs -> 6e6 training FLOPs; x 500 img/s = 3e9 FLOP/s; over 1e10 peak = 0.3
    assert arithmetic_utilisation(1_000_000, 500.0, 1e10) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        arithmetic_utilisation(1, 1.0, 0.0)


def test_matmul_peak_is_positive():
    assert matmul_peak_flops("cpu", size=64, repeats=2) > 0


def test_throughput_rows_shares_and_utilisation():
    rows = run_throughput(
        ("ddc_lenet", "basecnn"), batch=4, steps=2, repeats=1, peak_size=64, memory=False, progress=False
    )
    assert [r.model for r in rows] == ["ddc_lenet", "basecnn"]
    for r in rows:
        info = model_info(r.model, num_classes=10)
        assert r.input_shape == info.spec.input_shape and r.training_flops == 6 * info.multiply_adds
        assert 0.0 <= r.loading_share <= 1.0 and 0.0 <= r.input_share <= 1.0
        assert r.loading_share + r.input_share <= 1.0
        assert r.images_per_second == pytest.approx(4 / r.step_seconds)
        assert 0 < r.end_to_end_images_per_second <= r.images_per_second
        assert r.utilisation == pytest.approx(
            arithmetic_utilisation(r.multiply_adds, r.images_per_second, r.peak_flops)
        )
        assert r.peak_mb is None
    table = format_throughput_table(rows)
    assert "| ddc_lenet | 0.156 | 1x28x28 |" in table and "utilisation %" in table


def test_throughput_with_a_loader_worker():
    (row,) = run_throughput(
        ("ddc_lenet",), batch=4, steps=1, repeats=1, workers=1, peak_size=64, memory=False, progress=False
    )
    assert isinstance(row, Throughput) and row.workers == 1 and 0.0 <= row.loading_share <= 1.0


def test_bench_speed_throughput_cli_runs_tiny(capsys, tmp_path):
    from routemix.cli import main

    out = tmp_path / "rows.json"
    args = [
        "bench",
        "speed",
        "--throughput",
        "--models",
        "ddc_lenet",
        "--batch",
        "4",
        "--steps",
        "1",
        "--repeats",
        "1",
        "--peak-size",
        "64",
        "--no-memory",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "| ddc_lenet |" in capsys.readouterr().out
    assert out.exists()


def test_bad_bench_speed_throughput_arguments_are_one_line_errors(capsys):
    from routemix.cli import main

    throughput = ["--throughput", "--peak-size", "64"]
    for args in (
        [*throughput, "--models", "cluster_mlp"],
        [*throughput, "--models", "basecnnn"],
        [*throughput, "--paths", "2"],
        [*throughput, "--workers", "-1"],
        ["--models", "basecnn"],
    ):
        assert main(["bench", "speed", "--no-memory", "--no-progress", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("routemix: error:") and "Traceback" not in err
