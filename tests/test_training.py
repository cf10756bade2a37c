import copy

import pytest
import torch

from routemix.data.transforms import SobelInput, image_augmentation
from routemix.losses import NMMLoss
from routemix.models import create_model
from routemix.train import clustering as training


def image_module(name, channels, size, two_fold=True):
    network = create_model(name, num_classes=10)
    return training.NMMModule(
        network,
        NMMLoss(10),
        em_lr=1e-3,
        consistency_lr=1e-3,
        two_fold=two_fold,
        augment=image_augmentation(channels, (size, size)),
        preprocess=SobelInput(),
    )


@pytest.mark.parametrize(
    "name, channels, size", [("clusternet_cifar", 3, 32), ("clusternet_stl10", 3, 96), ("clusternet_mnist", 1, 28)]
)
def test_two_fold_training_on_synthetic_images_of_the_real_shape(name, channels, size):
    """CIFAR-10/100 and STL-10 cannot be had here: their training path runs on random uint8
    images of the same shape."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (32, channels, size, size), dtype=torch.uint8)
    module = image_module(name, channels, size)
    before = copy.deepcopy(module.network.state_dict())
    trainer = training.fit(
        module,
        training.make_loader(images, batch_size=16, shuffle=True, seed=0),
        max_epochs=1,
        progress=False,
        accelerator="cpu",
    )
    assert trainer.current_epoch == 1
    changed = [
        k for k, v in module.network.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])
    ]
    assert len(changed) == len([v for v in before.values() if v.dtype.is_floating_point])  # every tensor trained
    proba = training.predict_proba(module, images)
    assert proba.shape == (32, 10)
    torch.testing.assert_close(torch.as_tensor(proba).sum(1), torch.ones(32))


def test_consistency_step_uses_its_own_optimizer():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    two_fold = image_module("clusternet_mnist", 1, 28)
    training.fit(
        two_fold,
        training.make_loader(images, batch_size=16, shuffle=True, seed=0),
        max_epochs=1,
        progress=False,
        accelerator="cpu",
    )
    em, consistency = two_fold.optimizers()
    assert em.optimizer.param_groups[0]["lr"] == 1e-3 and consistency.optimizer is not em.optimizer
    # one step each: Adam's step counter is 1 in both
    first = next(iter(em.optimizer.state.values()))["step"]
    second = next(iter(consistency.optimizer.state.values()))["step"]
    assert first.item() == 1 and second.item() == 1


def test_two_fold_needs_an_augmentation():
    with pytest.raises(ValueError, match="augmentation"):
        training.NMMModule(create_model("cluster_mlp", num_classes=3, in_features=4), NMMLoss(3), two_fold=True)


def test_nan_loss_stops_training_with_a_clear_error():
    network = create_model("cluster_mlp", num_classes=3, in_features=2)
    module = training.NMMModule(network, NMMLoss(3), two_fold=False)
    data = torch.tensor([[float("nan"), 0.0]] * 8)
    with pytest.raises(FloatingPointError, match="NMM-EM loss became nan"):
        training.fit(
            module,
            training.make_loader(data, batch_size=4, shuffle=True, seed=0),
            max_epochs=1,
            progress=False,
            accelerator="cpu",
        )
