"""Models: loading by name (packaged offline, local folder, hub id), packaged-weight converters, backbone introspection.

`load_model(name, task, labels)` -> LoadedModel; `anatomy(model)` and `resolve_targets(anatomy, targets)` for methods.
"""

from transformers import AutoConfig, AutoModelForSequenceClassification

from peftlab.models.anatomy import Anatomy, anatomy, default_targets, resolve_targets
from peftlab.models.loading import LoadedModel, load_config, load_model, resolve_source
from peftlab.models.meanpool import MODEL_TYPE as MEANPOOL_MODEL_TYPE
from peftlab.models.meanpool import MeanPoolConfig, MeanPoolForSequenceClassification
from peftlab.models.packaged import PACKAGED_MODELS, PackagedModel

# Mean-pooling classifiers load through the Auto classes here, and, via the auto_map written by save_pretrained
# (which copies meanpool.py into the folder), anywhere with trust_remote_code=True.
AutoConfig.register(MEANPOOL_MODEL_TYPE, MeanPoolConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolConfig, MeanPoolForSequenceClassification, exist_ok=True)
MeanPoolConfig.register_for_auto_class()
MeanPoolForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "PACKAGED_MODELS",
    "Anatomy",
    "LoadedModel",
    "MeanPoolConfig",
    "MeanPoolForSequenceClassification",
    "PackagedModel",
    "anatomy",
    "default_targets",
    "load_config",
    "load_model",
    "resolve_targets",
    "resolve_source",
]
