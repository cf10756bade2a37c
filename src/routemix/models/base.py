"""What every classifier in the zoo shares: input checks and access to the gates.

``model(x)`` returns logits ``(B, num_classes)``; ``model(x, return_gates=True)`` returns
``(logits, gates)`` where ``gates`` maps each gate network's module name to its ``(B, P_in, P_out)``
gates for this batch (empty for models without routers). Multi-path models average the P path
outputs at the end (thesis sec. 3.1), so their logits look like any classifier's.
"""

from __future__ import annotations

from torch import Tensor, nn

from routemix.errors import RoutemixError
from routemix.nn.gates import GateTrace


class Classifier(nn.Module):
    """Base of the zoo's image classifiers. Subclasses implement :meth:`forward_logits`.

    ``input_size`` is the one spatial size a model accepts (its dense layers fix it), or ``None``
    when any size of at least ``min_input_size`` works (global average pooling).
    ``default_input_size`` is the size it is meant for (224 for ImageNet networks), used by
    listings such as ``routemix models`` to count FLOPs.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        num_paths: int = 1,
        input_size: int | None = None,
        min_input_size: int = 1,
        default_input_size: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes, self.in_channels, self.num_paths = num_classes, in_channels, num_paths
        self.input_size, self.min_input_size = input_size, min_input_size
        self.default_input_size = input_size or default_input_size

    def forward_logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, return_gates: bool = False):
        self.check_input(x)
        if not return_gates:
            return self.forward_logits(x)
        with GateTrace(self) as trace:
            logits = self.forward_logits(x)
        return logits, dict(trace.gates)

    def check_input(self, x: Tensor) -> None:
        """A clear error for an input this model cannot take (wrong rank, channels or size)."""
        name = type(self).__name__
        if x.dim() != 4:
            raise RoutemixError(
                f"{name} takes images (B, C, H, W); got a {x.dim()}-D tensor of shape {tuple(x.shape)}."
            )
        if x.shape[1] != self.in_channels:
            raise RoutemixError(
                f"{name} was built for {self.in_channels} input channels but got {x.shape[1]}: "
                f"create it with in_channels={x.shape[1]} (or convert the images)."
            )
        h, w = x.shape[-2:]
        if self.input_size is not None and (h, w) != (self.input_size, self.input_size):
            raise RoutemixError(
                f"{name} was built for {self.input_size}x{self.input_size} images but got {h}x{w}: "
                f"create it with input_size={h} (square images) or resize the images."
            )
        if min(h, w) < self.min_input_size:
            raise RoutemixError(
                f"{name} needs images of at least {self.min_input_size}x{self.min_input_size}, got {h}x{w}."
            )
