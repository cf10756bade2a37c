"""The model zoo and its registry."""

from routemix.models import clusternets  # noqa: F401  (registers the clustering networks)
from routemix.models.registry import count_parameters, create_model, get_model_builder, list_models, register_model

__all__ = ["count_parameters", "create_model", "get_model_builder", "list_models", "register_model"]
