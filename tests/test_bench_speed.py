"""The speed benchmark's networks: the naive reference is the routed model written with loops."""

import torch

from routemix.bench.speed import VARIANTS, build_variant, format_table, time_variants
from routemix.models import count_parameters
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
