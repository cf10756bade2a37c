"""The augmentation pipeline benchmark: batched (kornia) vs per image in DataLoader workers."""

import pytest
import torch
from torchvision.transforms.v2.functional import to_pil_image

from routemix.bench.pipeline import PIPELINES, format_table, run
from routemix.data.transforms import per_image_augmentation


@pytest.mark.parametrize("channels", [1, 3])
def test_per_image_augmentation_takes_tensors_and_pil_images(channels):
    torch.manual_seed(0)
    image = torch.randint(0, 256, (channels, 28, 28), dtype=torch.uint8)
    transform = per_image_augmentation(channels, (28, 28))
    for source in (image, to_pil_image(image)):
        out = transform(source)
        assert out.shape == (channels, 28, 28) and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_pipeline_rows_and_table():
    rows = run(("mnist",), (0,), batch=4, steps=1, repeats=1, progress=False)
    assert [(r.shape, r.pipeline, r.workers) for r in rows] == [("mnist", p, 0) for p in PIPELINES]
    assert all(r.images_per_second > 0 and r.batch == 4 for r in rows)
    assert "| mnist 1x28x28 | batched, kornia on the device | 0 | 4 |" in format_table(rows)


def test_bench_pipeline_cli_runs_tiny_and_rejects_bad_input(capsys):
    from routemix.cli import main

    tiny = ["--batch", "4", "--steps", "1", "--repeats", "1", "--no-progress"]
    assert main(["bench", "pipeline", "--shapes", "cifar", "--workers", "1", *tiny]) == 0
    assert "| cifar 3x32x32 | per image, v2 on PIL images | 1 |" in capsys.readouterr().out
    for bad in (["--shapes", "imagenet"], ["--workers", "x"], ["--workers", "-1"], ["--batch", "0"]):
        assert main(["bench", "pipeline", *tiny, *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("routemix: error:") and "Traceback" not in err
