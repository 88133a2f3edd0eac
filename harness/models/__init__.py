"""Model providers (`provider/model` names) and their shared contract."""

from harness.models.contract import CallContext, Completion, Message, Model, ModelError, Usage
from harness.models.registry import get_model, provider, provider_names

__all__ = [
    "CallContext",
    "Completion",
    "Message",
    "Model",
    "ModelError",
    "Usage",
    "get_model",
    "provider",
    "provider_names",
]
