"""The model zoo and its registry."""

# importing a family registers its models
from routemix.models import basecnn, clusternets, ddc_nets, resnet_cifar, resnet_imagenet, sparse_cnn, vgg  # noqa: F401
from routemix.models.registry import ModelSpec, count_parameters, create_model, list_models, model_spec, register_model

__all__ = ["ModelSpec", "count_parameters", "create_model", "list_models", "model_spec", "register_model"]
