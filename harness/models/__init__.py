"""Model providers (`provider/model` names) and their shared contract."""

from harness.models.base import CodingContext, Completion, Message, Model, ModelError, Usage
from harness.models.registry import get_model, provider_names

__all__ = [
    "CodingContext",
    "Completion",
    "Message",
    "Model",
    "ModelError",
    "Usage",
    "get_model",
    "provider_names",
]
