"""``routemix viz`` figures of trained classifiers (thesis sec. 3.5, Figs. 3.7-3.10).

Untrained zoo models saved as classifier checkpoints stand in for trained ones (the figures read
the same things either way); the test images are the first few of ../shared/data Fashion-MNIST.
"""

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from routemix.cli import main
from routemix.errors import RoutemixError
from routemix.storage import save_checkpoint
from routemix.train.evaluate import build_classifier, save_classifier
from routemix.viz import routing
from routemix.viz.common import DPI


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """model.pt files of untrained 1-channel 32x32 models, configured for Fashion-MNIST."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"../shared/data with Fashion-MNIST is not beside this checkout ({SHARED_DATA})")
    root = tmp_path_factory.mktemp("viz-checkpoints")
    paths = {}
    torch.manual_seed(0)
    for name in ("basecnn_2cc", "basecnn_2cp", "basecnn_4cc", "basecnn_2", "basecnn"):
        model = build_classifier(name, num_classes=10, in_channels=1, input_size=32)
        paths[name] = root / name / "model.pt"
        save_classifier(
            paths[name], model, name, input_size=32, config={"dataset": "fashion_mnist", "data_dir": str(SHARED_DATA)}
        )
    return paths


def read_png(path: Path) -> np.ndarray:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[-1] in (3, 4)
    assert image[..., :3].std() > 0.05  # something is drawn
    return image


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels."""
    height, width = read_png(path).shape[:2]
    return width, height


def assert_written(paths, stem: str, size: tuple[int, int] | None = None) -> None:
    png, svg = Path(paths[0]), Path(paths[1])
    assert png.name == f"{stem}.png" and svg.name == f"{stem}.svg"
    assert svg.stat().st_size > 1000 and svg.read_text()[:200].lstrip().startswith("<?xml")
    if size is not None:
        assert png_size(png) == size
    else:
        read_png(png)


def run_cli(args: list[str], capsys) -> list[Path]:
    assert main(["viz", *args]) == 0
    return [Path(line) for line in capsys.readouterr().out.split()]


def cli_error(args: list[str], capsys) -> str:
    assert main(["viz", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("routemix: error:") and err.count("\n") == 1 and "Traceback" not in err
    return err


# --- Fig. 3.7 ------------------------------------------------------------------------------------


def test_routing_diagram_from_the_command_line(checkpoints, tmp_path, capsys):
    written = run_cli(
        ["routing-diagram", str(checkpoints["basecnn_2cc"].parent), "--index", "0,3", "--out", str(tmp_path)], capsys
    )
    assert_written(written, "routing-diagram-0_3")
    width, height = png_size(written[0])
    assert width > 2 * height > 600  # a strip of routers, two rows


@pytest.mark.parametrize("name", ["basecnn_2cp", "basecnn_4cc"])
def test_routing_diagram_of_one_to_many_and_four_path_routers(checkpoints, tmp_path, name):
    written = routing.routing_diagram(checkpoints[name], tmp_path, indices=(5,), formats=("png",))
    assert [p.name for p in written] == ["routing-diagram-5.png"]
    width, height = png_size(written[0])
    assert width > height


def test_trace_routes_gives_every_router_in_order_with_normalised_strengths():
    model = build_classifier("basecnn_2cp", num_classes=10, in_channels=1, input_size=32).eval()
    routers, after, logits = routing.trace_routes(model, torch.randn(3, 1, 32, 32))
    assert [r.name for r in routers] == ["layers.conv1", "layers.conv3", "layers.conv5", "layers.fc2"]
    assert [r.gates.shape[1:] for r in routers] == [(1, 2), (2, 2), (2, 2), (2, 2)]
    assert routers[0].kind == "one-to-many CP" and routers[-1].kind == "dense cross-prediction"
    assert routers[1].layers_before == ["conv", "pool"] and after == ["dense", "average"]
    for r in routers:
        np.testing.assert_allclose(r.gates.sum(-1), 1, atol=1e-5)
        np.testing.assert_allclose(r.incoming.sum(-1), 1, atol=1e-5)
        np.testing.assert_allclose(r.outgoing.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(routers[0].incoming, 1.0)  # the image: one tensor, no path axis
    assert logits.shape == (3, 10)


def test_relative_activation_is_mean_absolute_activation_over_the_paths_sum():
    x = torch.zeros(1, 2, 3, 2, 2)
    x[:, 0] = 1.0
    x[:, 1] = -3.0
    torch.testing.assert_close(routing.relative_activation(x), torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(routing.relative_activation(torch.randn(4, 3, 8, 8)), torch.ones(4, 1))


# --- Fig. 3.8 ------------------------------------------------------------------------------------


def test_gate_max_from_the_command_line(checkpoints, tmp_path, capsys):
    written = run_cli(
        [
            "gate-max",
            str(checkpoints["basecnn_2cc"]),
            "--router",
            "route2",
            "--incoming",
            "2",
            "--outgoing",
            "1",
            "--count",
            "4",
            "--steps",
            "3",
            "--limit",
            "40",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert_written(written, "gate-max-layers_route2-2-1", (round(8.1 * DPI), round(4.6 * DPI)))


def test_gate_max_function_and_the_synthesis_raises_its_objective(checkpoints, tmp_path):
    written = routing.gate_max(
        checkpoints["basecnn_2cc"],
        tmp_path,
        router="layers.route3.gate",
        count=10,
        steps=2,
        limit=30,
        objective="gate",
        formats=("png",),
    )
    assert png_size(written[0]) == (round(15.0 * DPI), round(4.6 * DPI))
    loaded = routing.load_for_figures(checkpoints["basecnn_2cc"], limit=2, device="cpu")
    gate = "layers.route3.gate"
    _, start, _ = routing.synthesize_gate_input(loaded, gate, 0, 1, steps=0)
    # unregularised, so the score alone moves: on this untrained network the L2 pull towards grey outweighs it
    image, end, value = routing.synthesize_gate_input(loaded, gate, 0, 1, steps=25, blur=0, l2=0)
    assert end > start and 0 <= value <= 1
    assert image.shape == (1, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
    assert all(p.requires_grad for p in loaded.network.parameters())  # unfrozen again


# --- Fig. 3.9 ------------------------------------------------------------------------------------


def test_gate_hist_from_the_command_line(checkpoints, tmp_path, capsys):
    written = run_cli(
        ["gate-hist", str(checkpoints["basecnn_2cc"]), "--classes", "0,7,9", "--limit", "60", "--out", str(tmp_path)],
        capsys,
    )
    assert_written(written, "gate-hist-layers_widen-1-1", (900, 552))


def test_gate_hist_function_as_small_multiples(checkpoints, tmp_path):
    written = routing.gate_hist(
        checkpoints["basecnn_4cc"],
        tmp_path,
        router="layers.route4",
        incoming=4,
        outgoing=2,
        layout="grid",
        limit=60,
        formats=("png",),
    )
    assert written[0].name == "gate-hist-layers_route4-4-2.png"
    assert png_size(written[0]) == (round((4 * 3.2 + 0.8) * DPI), round((2.6 + 1.0) * DPI))


# --- Fig. 3.10 -----------------------------------------------------------------------------------


def test_weight_hist_from_the_command_line(checkpoints, tmp_path, capsys):
    written = run_cli(["weight-hist", str(checkpoints["basecnn_2cc"]), "--out", str(tmp_path)], capsys)
    assert_written(written, "weight-hist", (round((4 * 3.6 + 0.6) * DPI), round(4.0 * DPI)))


def test_weight_hist_function_takes_layer_names_and_numbers(checkpoints, tmp_path):
    written = routing.weight_hist(checkpoints["basecnn_2cp"], tmp_path, layers="conv3,8", formats=("png",))
    assert png_size(written[0]) == (round((2 * 3.6 + 0.6) * DPI), round(4.0 * DPI))


def test_path_layers_number_like_the_thesis():
    """Fig. 3.10's "layer 11" of VGG13-2-CC is its first dense layer; gate networks are not path layers."""
    layers = routing.path_layers(build_classifier("vgg13_2cc", num_classes=10, in_channels=1, input_size=32))
    names = [name for name, _ in layers]
    assert len(names) == 13 and names[10] == "layers.fc1" and not any("gate" in n for n in names)
    assert [names[k] for k in routing.select_layers(layers, None)] == [
        "layers.conv3",
        "layers.conv6",
        "layers.conv8",
        "layers.fc1",
    ]
    assert routing.path_weights(layers[0][1]).shape == (2, 32 * 1 * 9)


# --- bad input -----------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error(checkpoints, tmp_path, capsys):
    cc = str(checkpoints["basecnn_2cc"])
    out = ["--out", str(tmp_path)]
    assert (
        "--router 'route9' is none of the gate networks of this model: layers.widen.gate, layers.route1.gate"
        in cli_error(["gate-max", cc, "--router", "route9", "--limit", "8", *out], capsys)
    )
    assert "--classes 3,10: basecnn_2cc has classes 0 to 9" in cli_error(
        ["gate-hist", cc, "--classes", "3,10", "--limit", "8", *out], capsys
    )
    assert "--incoming 3: router layers.route1.gate has 2 incoming paths" in cli_error(
        ["gate-hist", cc, "--router", "route1", "--incoming", "3", "--limit", "8", *out], capsys
    )
    assert "--index 20000: the fashion_mnist test split has 10000 images" in cli_error(
        ["routing-diagram", cc, "--index", "20000", *out], capsys
    )
    assert "--layers 'conv9' is none of the path layers" in cli_error(
        ["weight-hist", cc, "--layers", "conv9", *out], capsys
    )

    foreign = tmp_path / "other" / "model.pt"
    save_checkpoint(foreign, {"centroids": torch.zeros(3, 2)})
    assert "is not a classifier checkpoint" in cli_error(["gate-hist", str(foreign), *out], capsys)

    for figure in ("routing-diagram", "gate-max", "gate-hist"):
        with pytest.raises(RoutemixError, match="basecnn_2 has no routers, so it has no gates to draw"):
            getattr(routing, figure.replace("-", "_"))(
                checkpoints["basecnn_2"], tmp_path, **({} if figure == "routing-diagram" else {"limit": 8})
            )
    with pytest.raises(RoutemixError, match="basecnn has no parallel paths"):
        routing.weight_hist(checkpoints["basecnn"], tmp_path)
    assert not list(tmp_path.glob("*.png"))  # nothing half-drawn
