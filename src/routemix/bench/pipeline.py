"""Speed of the augmentation pipeline: batched on the training device vs per image in DataLoader workers.

The two-fold optimisation of NMM-EM (thesis sec. 4.4.3) augments every training batch with T.
This benchmark times two ways of producing augmented float batches from an in-memory uint8 set
of synthetic images (the speed of these transforms does not depend on the pixels):

- ``batched``: what the library does. The DataLoader indexes whole uint8 batches out of the
  tensor (no per-image Python work, no workers), the batch goes to the device and
  :func:`routemix.data.transforms.image_augmentation` (kornia) transforms all of it at once;
- ``tensor`` / ``pil``: the usual alternative. A Dataset applies
  :func:`routemix.data.transforms.per_image_augmentation` (torchvision transforms v2) to one image
  at a time, as a uint8 tensor or as a PIL image (what torchvision's MNIST hands out), in 0, 1, 2, ...
  DataLoader workers, which collate the batch; it then goes to the device.

Each configuration is timed in blocks: a fresh iterator, its first batch untimed (worker start-up
and warm-up), then ``steps`` batches timed up to an augmented batch on the device. The blocks
are interleaved round-robin over ``repeats`` (median per configuration), so a slow spell of a
shared machine hits all of them. Images/second is the rate at which the pipeline alone hands
out augmented batches; with workers that work overlaps the training step, without it adds to it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from routemix.data.transforms import image_augmentation, per_image_augmentation
from routemix.errors import RoutemixError

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
PIPELINES = ("batched", "tensor", "pil")
LABELS = {
    "batched": "batched, kornia on the device",
    "tensor": "per image, v2 on uint8 tensors",
    "pil": "per image, v2 on PIL images",
}


@dataclass
class PipelineTiming:
    shape: str  # key of SHAPES
    pipeline: str  # one of PIPELINES
    workers: int
    batch: int
    seconds: float  # median seconds per augmented batch
    images_per_second: float


class PerImageAugmented(Dataset):
    """uint8 images (N, C, H, W), each augmented on its own when indexed; ``pil`` hands the
    transform a PIL image, as torchvision's MNIST and CIFAR datasets do."""

    def __init__(self, images: torch.Tensor, transform, *, pil: bool = False) -> None:
        self.images, self.transform, self.pil = images, transform, pil

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        if self.pil:
            from torchvision.transforms.v2.functional import to_pil_image

            image = to_pil_image(image)
        return self.transform(image)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pipeline(pipeline: str, images: torch.Tensor, batch: int, workers: int, device: torch.device):
    """(loader, consume): ``consume`` turns one loader batch into an augmented float batch on ``device``."""
    channels, height, width = images.shape[1:]
    pin = device.type == "cuda"
    if pipeline == "batched":
        augment = image_augmentation(channels, (height, width)).to(device)
        sampler = BatchSampler(RandomSampler(images), batch, drop_last=True)
        loader = DataLoader(TensorDataset(images), sampler=sampler, batch_size=None, pin_memory=pin)
        return loader, lambda b: augment(b[0].to(device, non_blocking=True))
    if pipeline in ("tensor", "pil"):
        dataset = PerImageAugmented(images, per_image_augmentation(channels, (height, width)), pil=pipeline == "pil")
        loader = DataLoader(
            dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers, pin_memory=pin
        )
        return loader, lambda b: b.to(device, non_blocking=True)
    raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")


def _time_block(loader: DataLoader, consume, steps: int, device: torch.device) -> float:
    """Seconds per batch over ``steps`` batches of a fresh iterator, after one untimed batch."""
    iterator = iter(loader)
    consume(next(iterator))
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        consume(next(iterator))
    _synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    del iterator  # shuts its workers down before the next configuration runs
    return seconds


def run(
    shapes=("mnist", "cifar"),
    workers=(0, 1, 2),
    *,
    batch: int = 128,
    steps: int = 5,
    repeats: int = 3,
    device: str = "cpu",
    progress: bool = True,
) -> list[PipelineTiming]:
    """Images/second of the batched and the per-image pipelines (module docstring), interleaved."""
    from tqdm.auto import tqdm

    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise RoutemixError(f"bench pipeline takes shapes {', '.join(SHAPES)}; not {', '.join(unknown)}.")
    if any(w < 0 for w in workers):
        raise RoutemixError(f"--workers takes counts of 0 or more, got {','.join(map(str, workers))}.")
    for name, value in (("batch", batch), ("steps", steps), ("repeats", repeats)):
        if value < 1:
            raise RoutemixError(f"--{name} must be at least 1, got {value}.")
    torch.manual_seed(0)
    dev = torch.device(device)
    configs = {}
    for shape in shapes:
        images = torch.randint(0, 256, (batch * (steps + 1), *SHAPES[shape]), dtype=torch.uint8)
        configs[(shape, "batched", 0)] = _pipeline("batched", images, batch, 0, dev)
        for pipeline in PIPELINES[1:]:
            for w in workers:
                configs[(shape, pipeline, w)] = _pipeline(pipeline, images, batch, w, dev)
    samples: dict[tuple, list[float]] = {key: [] for key in configs}
    with tqdm(total=repeats * len(configs), desc="pipeline", disable=not progress) as bar:
        for _ in range(repeats):
            for key, (loader, consume) in configs.items():
                samples[key].append(_time_block(loader, consume, steps, dev))
                bar.update()
    rows = []
    for (shape, pipeline, w), times in samples.items():
        seconds = statistics.median(times)
        rows.append(PipelineTiming(shape, pipeline, w, batch, seconds, batch / seconds))
    return rows


def format_table(rows: list[PipelineTiming]) -> str:
    """Markdown: one line per configuration, with its speed relative to the batched pipeline."""
    batched = {r.shape: r for r in rows if r.pipeline == "batched"}
    lines = [
        "| images | pipeline | workers | batch | ms / batch | images/s | vs batched |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shape = "x".join(map(str, SHAPES[r.shape]))
        relative = r.images_per_second / batched[r.shape].images_per_second
        lines.append(
            f"| {r.shape} {shape} | {LABELS[r.pipeline]} | {r.workers} | {r.batch} | {1e3 * r.seconds:.1f} | "
            f"{r.images_per_second:.0f} | {relative:.2f}x |"
        )
    return "\n".join(lines)
