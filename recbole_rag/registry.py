"""One registry for models and trainers: the plug-in's first, then RecBole's."""

import importlib
import inspect

from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import ModelType

from recbole_rag.errors import ConfigError, UnknownModelError
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


# RaSeRec's own stage 1 (our SASRec encoder trained as DuoRec); any other backbone is a RecBole model.
OWN_BACKBONE = "DuoRec"


def built_class(model, backbone=None, loss_type=None):
    """The class that builds ``model``: ``get_model``'s; for RaSeRec on a ``backbone`` other than
    its own, RaSeRec's RAFT on that RecBole sequential model; with ``loss_type`` BCE, trained with
    BCE on sampled negatives (recbole_rag.model.bce)."""
    if model == "RaSeRec" and backbone not in (None, OWN_BACKBONE):
        if not isinstance(backbone, str) or backbone in OUR_MODELS:
            raise ConfigError(
                f"RaSeRec's backbone is {OWN_BACKBONE} or a RecBole sequential model (GRU4Rec, NARM, ...), "
                f"got {backbone!r}."
            )
        base = get_model(backbone)
        if getattr(base, "type", None) != ModelType.SEQUENTIAL:
            raise ConfigError(f"RaSeRec's backbone must be a sequential model; {backbone} is not one.")
        if loss_type == "BCE":
            base = with_bce(base)
        return importlib.import_module(OUR_MODELS["RaSeRec"]).on_backbone(base)
    cls = get_model(model)
    return with_bce(cls) if loss_type == "BCE" else cls


def model_class(config):
    """The class that builds ``config``'s model (``built_class``)."""
    return built_class(config["model"], config["backbone"], config["loss_type"])


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
