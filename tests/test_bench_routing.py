"""bench routing: the scaled recipe, the summary against Table 3.2, and a tiny real run."""

import json

import pytest

from routemix.bench.routing import MODELS, claim_holds, format_table, milestones_for, run, summarize


def test_milestones_scale_the_80_150_of_200_recipe():
    assert milestones_for(200) == [80, 150]
    assert milestones_for(4) == [2, 3]
    assert milestones_for(1) == []


def _fake(model, seed, error):
    return {"model": model, "seed": seed, "error": error, "seconds": 1.0, "epochs": 4, "train_images": 100, "gates": {}}


def test_summary_orders_against_the_thesis_and_judges_the_claim():
    results = [_fake("basecnn_2cc", s, 10.0 + s) for s in range(3)] + [_fake("widecnn", s, 12.0) for s in range(3)]
    results += [_fake("basecnn_2", s, 10.5) for s in range(3)]
    rows = summarize(results, MODELS)
    assert [r["model"] for r in rows] == ["widecnn", "basecnn_2", "basecnn_2cc"]  # the table keeps MODELS order
    cc = rows[-1]
    assert cc["error"] == pytest.approx(11.0) and cc["error_std"] == pytest.approx((2 / 3) ** 0.5)
    assert cc["thesis_error"] == 7.03 and rows[1]["thesis_error"] is None  # Table 3.2 prints no BaseCNN-2
    assert claim_holds(rows) == {"widecnn": True, "basecnn_2": False}
    assert "widecnn: yes, basecnn_2: no" in format_table(rows)


def test_tiny_run_writes_results_and_continues(shared_data, tmp_path):
    out = tmp_path / "routing.json"
    kwargs = dict(
        data_dir=str(shared_data), seeds=(0,), epochs=1, train_images=128, test_images=128, out=str(out), progress=False
    )
    first = run(models=("basecnn",), **kwargs)
    assert len(first) == 1 and 0 <= first[0]["error"] <= 100
    both = run(models=("basecnn", "basecnn_2cc"), **kwargs)  # only the new model trains
    assert [r["model"] for r in both] == ["basecnn", "basecnn_2cc"]
    assert both[0] == first[0] and len(json.loads(out.read_text())) == 2
    assert set(both[1]["gates"]) and all(len(rows) for rows in both[1]["gates"].values())
