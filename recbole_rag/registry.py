"""One registry for models and trainers: the plug-in's first, then RecBole's."""

import importlib
import inspect

from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import ModelType

from recbole_rag.errors import UnknownModelError
from recbole_rag.model.bce import with_bce
from recbole_rag.trainer.safe_checkpoint import with_safe_checkpoints

# name -> module of the plug-in's models (imported on first use).
OUR_MODELS = {
    "DuoRec": "recbole_rag.model.sequential_recommender.duorec",
    "RaSeRec": "recbole_rag.model.sequential_recommender.raserec",
    "SRACL": "recbole_rag.model.sequential_recommender.sracl",
    "Regenerator": "recbole_rag.model.sequential_recommender.regenerator",
}
# model name -> "module:Class" of its trainer.
OUR_TRAINERS = {
    "RaSeRec": "recbole_rag.trainer.raserec_trainer:RaSeRecTrainer",
    "SRACL": "recbole_rag.trainer.sracl_trainer:SRACLTrainer",
    "Regenerator": "recbole_rag.trainer.regenerator_trainer:RegeneratorTrainer",
}

# RecBole's model packages, in the order RecBole's own get_model searches them. The exlib
# package (lightgbm, xgboost) is left out: importing it fails without those libraries, which is
# what turns RecBole's "unknown model" into a misleading lightgbm error.
_RECBOLE_MODEL_PACKAGES = [
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.knowledge_aware_recommender",
]


def _recbole_models():
    models = {}
    for package in _RECBOLE_MODEL_PACKAGES:
        module = importlib.import_module(package)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, AbstractRecommender):
                models.setdefault(name, obj)
    return models


def known_models():
    """Sorted names of every model the registry can build."""
    return sorted(set(OUR_MODELS) | set(_recbole_models()))


def get_model(name):
    """The model class called ``name``, looking in the plug-in first and then in RecBole."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model must be a name (str), got {type(name).__name__}")
    if name in OUR_MODELS:
        return getattr(importlib.import_module(OUR_MODELS[name]), name)
    recbole_models = _recbole_models()
    if name in recbole_models:
        return recbole_models[name]
    close = [m for m in known_models() if m.lower() == name.lower()]
    hint = f" Did you mean {close[0]}?" if close else ""
    raise UnknownModelError(f"Unknown model '{name}'.{hint} Known models: {', '.join(known_models())}.")


def model_class(config):
    """The class that builds ``config``'s model: ``get_model``'s, trained with BCE on sampled
    negatives where ``loss_type`` is BCE (recbole_rag.model.bce)."""
    model = get_model(config["model"])
    if config["loss_type"] == "BCE":
        model = with_bce(model)
    return model


def get_trainer(model_type, model_name):
    """The trainer class for a model: the plug-in's own, else RecBole's choice; always saving
    checkpoints that load with ``torch.load(weights_only=True)``."""
    if model_name in OUR_TRAINERS:
        module, cls = OUR_TRAINERS[model_name].split(":")
        return getattr(importlib.import_module(module), cls)
    trainer_module = importlib.import_module("recbole.trainer")
    if hasattr(trainer_module, model_name + "Trainer"):
        base = getattr(trainer_module, model_name + "Trainer")
    elif model_type == ModelType.KNOWLEDGE:
        base = trainer_module.KGTrainer
    elif model_type == ModelType.TRADITIONAL:
        base = trainer_module.TraditionalTrainer
    else:
        base = trainer_module.Trainer
    return with_safe_checkpoints(base)
