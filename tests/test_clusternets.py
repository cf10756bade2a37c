"""The clustering networks of thesis Table 4.2 and the tabular MLP."""

import pytest
import torch

from routemix.errors import RoutemixError
from routemix.models import count_parameters, create_model, list_models

# Thesis Table 4.2: printed counts (rounded to 0.1M) and our exact counts.
TABLE_4_2 = [
    ("clusternet_mnist", 10, 0.8, 772_490),
    ("clusternet_cifar", 10, 1.3, 1_309_578),
    ("clusternet_stl10", 10, 2.7, 2_695_050),
]


@pytest.mark.parametrize("name, classes, printed, exact", TABLE_4_2)
def test_table_4_2_parameter_counts(name, classes, printed, exact):
    count = count_parameters(create_model(name, num_classes=classes))
    assert count == exact
    assert round(count / 1e6, 1) == printed  # the table prints millions to one decimal


@pytest.mark.parametrize("name, classes, printed, exact", TABLE_4_2[1:])
def test_cifar_and_stl_within_three_percent(name, classes, printed, exact):
    assert abs(exact / (printed * 1e6) - 1) < 0.03


@pytest.mark.parametrize("name, size", [("clusternet_mnist", 28), ("clusternet_cifar", 32), ("clusternet_stl10", 96)])
def test_clusternets_forward_and_every_parameter_gets_a_gradient(name, size):
    model = create_model(name, num_classes=7)
    x = torch.randn(3, 2, size, size)
    out = model(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_mlp_for_the_2d_study():
    model = create_model("cluster_mlp", num_classes=10, in_features=2, hidden_sizes=(32, 32))
    assert model(torch.randn(5, 2)).shape == (5, 10)


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects input \(batch, 2, 28, 28\)"):
        create_model("clusternet_mnist", num_classes=10)(torch.randn(2, 3, 28, 28))


def test_unknown_model_suggests_close_names():
    with pytest.raises(RoutemixError, match="Did you mean clusternet_mnist"):
        create_model("clusternet_mnis", num_classes=10)
    assert "clusternet_cifar" in list_models()
