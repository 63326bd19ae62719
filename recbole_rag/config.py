"""RecBole's Config with the plug-in's properties layered in.

Order, later wins: RecBole's defaults < properties/overall.yaml < properties/model/<C>.yaml for
each class C of the model's chain, base first (RaSeRec: EncoderRecommender, DuoRec, RaSeRec) <
properties/dataset/<D>.yaml < the user's YAML files < config_dict (the CLI's --key=value).
"""

from __future__ import annotations

import ast
import difflib
import functools
import os
import warnings
from pathlib import Path
from typing import Any

import recbole
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import InputType

from recbole_rag.errors import ConfigError
from recbole_rag.process_group import init_cpu_process_group, uses_gpu
from recbole_rag.registry import built_class, get_model
from recbole_rag.settings_check import check_settings


def properties_dir():
    """properties/ of a checkout (editable installs too), else the copy ``pip install .`` puts
    inside the package (setup.cfg maps it to recbole_rag/properties)."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "properties", package / "properties"):
        if (candidate / "overall.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"recbole_rag's properties/ not found next to {package}: reinstall the package.")


def property_files(model, dataset_name):
    """The plug-in's YAML files for this model (a name or class) and dataset, lowest priority
    first: overall.yaml, one file per class along the model's class chain that has one (RaSeRec:
    EncoderRecommender.yaml, DuoRec.yaml, RaSeRec.yaml), then the dataset's."""
    root = properties_dir()
    model_class = get_model(model) if isinstance(model, str) else model
    chain = []
    for cls in reversed(model_class.__mro__):
        ours = root / "model" / f"{cls.__name__}.yaml"
        if ours.is_file() or cls is model_class:
            chain.append(ours)
        elif cls.__module__.startswith("recbole.model."):  # RaSeRec's backbone: RecBole's own defaults for it
            chain.append(Path(recbole.__file__).resolve().parent / "properties" / "model" / f"{cls.__name__}.yaml")
    candidates = [root / "overall.yaml", *chain, root / "dataset" / f"{dataset_name}.yaml"]
    return [str(path) for path in candidates if path.is_file()]


def chosen_backbone(config_dict, user_files):
    """RaSeRec's ``backbone`` as the user set it (``--backbone``, else their YAML files), or None."""
    if "backbone" in config_dict:
        return config_dict["backbone"]
    chosen = None
    for path in user_files:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f) or {}
        chosen = content.get("backbone", chosen) if isinstance(content, dict) else chosen
    return chosen


def presets():
    """{name: path} of the settings files shipped in properties/preset/ (e.g. sracl-authors)."""
    return {path.stem: path for path in sorted((properties_dir() / "preset").glob("*.yaml"))}


def resolve_config_file(name):
    """A user's config file: a path, or the name of a shipped preset (``sracl-authors``)."""
    if os.path.isfile(name):
        return name
    shipped = presets()
    if name in shipped:
        return str(shipped[name])
    raise ConfigError(
        f"Config file '{name}' does not exist and is no shipped preset (presets: {', '.join(shipped) or 'none'})."
    )


# Settings RecBole sets or reads that no properties file lists; and ``unknown_settings``: what a
# key no model, dataset or trainer reads does, warn (default), error or ignore. (Kept out of
# overall.yaml: bench/ keys its stored results by the YAML files' content.)
_RUNTIME_KEYS = {
    "unknown_settings",
    "model",
    "dataset",
    "device",
    "single_spec",
    "local_rank",
    "world_size",
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "valid_neg_sample_args",
    "test_neg_sample_args",
    "NEG_ITEMS",
    "POS_ITEMS",
    "MASK_INDEX",
    "MASK_ITEM_SEQ",
    "CROP_ITEM_SEQ",
    "CROP_ITEM_SEQ_LEN",
    "REORDER_ITEM_SEQ",
    "INVERSE_ITEM_SEQ",
    "encoding",
    "use_filter",
    "feature_num",
    "tail_ratio",
    "token_num_threshold",
    "nproc",
    "offset",
    "ip",
    "port",
    "eta",
    "has_residual",
    "norm",
}
# Settings RecBole reads from its final dict directly, past __getitem__ (device set-up).
_READ_DIRECTLY = {"gpu_id", "use_gpu", "nproc", "world_size", "offset", "ip", "port"}
# RecBole reads ``alias_of_<field>`` for any field name.
_RUNTIME_PREFIXES = ("alias_of_",)


class UnknownSettingWarning(UserWarning):
    """A YAML key or --key=value override no model, dataset or trainer reads."""


@functools.cache
def known_keys():
    """Every setting RecBole's or the plug-in's properties files define (any model, any dataset)."""
    roots = [Path(recbole.__file__).resolve().parent / "properties", properties_dir()]
    keys = set(_RUNTIME_KEYS)
    for path in (p for root in roots for p in root.rglob("*.yaml") if p.name != "url.yaml"):  # url.yaml: datasets
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(loaded, dict):
            keys.update(loaded)
    return frozenset(keys)


def unknown_settings(keys):
    """Messages for keys no properties file defines, each with the nearest known key."""
    known = known_keys()
    messages = []
    for key in sorted(k for k in keys if k not in known and not k.startswith(_RUNTIME_PREFIXES)):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        hint = f"did you mean '{close[0]}'?" if close else "no model or dataset reads it"
        messages.append(f"unknown setting '{key}': {hint}")
    return messages


# RecBole's dataset and dataloader caches are pickles, and reading one runs whatever code it holds;
# RecBole reads ``<checkpoint_dir>/<dataset>-SequentialDataset.pth`` (or the dataloaders' file)
# whenever one is there, asked for or not. recbole-rag neither writes nor reads them: both paths
# point where no file can be (under a device file), and a setting that asks for them is refused.
NO_CACHE = os.path.join(os.devnull, "recbole-rag-reads-no-pickle")
_PICKLE_CACHES = {"save_dataset": "dataset_save_path", "save_dataloaders": "dataloaders_save_path"}
# Settings RecBole hands to eval(): the values its code means, nothing else (KD_DAGFM's teacher).
_EVALUATED = {"teacher": ("CrossNet", "CIN")}


def no_code_from_files(final):
    """Refuse settings through which RecBole would run code read from a file or a setting."""
    for switch, path_key in _PICKLE_CACHES.items():
        if final.get(switch):
            raise ConfigError(
                f"{switch}: True writes a RecBole pickle cache, which runs code when read back; recbole-rag "
                f"loads data from the atomic files only (set {switch}: False)."
            )
        if final.get(path_key) not in (None, NO_CACHE):
            raise ConfigError(
                f"{path_key} points RecBole at a pickle ({final[path_key]!r}), which runs code when read; "
                "recbole-rag loads data from the atomic files only: remove the setting."
            )
        final[path_key] = NO_CACHE
    for key, allowed in _EVALUATED.items():
        if key in final and final[key] not in allowed:
            raise ConfigError(
                f"{key} must be one of {', '.join(allowed)}, got {final[key]!r} (RecBole evaluates it as code)."
            )


def _literal_or_text(text):
    """A string setting as RecBole reads one (a number, list, dict, bool, None), with
    ast.literal_eval instead of eval; anything else stays the string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return {"true": True, "false": False}.get(text.lower(), text)
    return value if value is None or isinstance(value, (str, int, float, list, tuple, dict, bool)) else text


def _type_error(key, value, default):
    """A message if ``value`` cannot stand where the default ``default`` stands, else None."""
    if default is None or value is None:
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        wanted = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        wanted = "a number"
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
        wanted = "a mapping such as {'a': 1}"
    else:
        return None
    if ok:
        return None
    return f"'{key}' expects {wanted} (default {default!r}), got {value!r}"


class Config(RecBoleConfig):
    """Use exactly like ``recbole.config.Config``; ``model`` may be one of the plug-in's models."""

    def __init__(
        self,
        model: str | type | None = None,
        dataset: str | None = None,
        config_file_list: list[str] | str | None = None,
        config_dict: dict[str, Any] | None = None,
    ) -> None:
        if not model:
            raise ConfigError("No model given: pass --model=<name>, e.g. --model=SASRec.")
        if not dataset or not isinstance(dataset, str):
            raise ConfigError("No dataset given: pass --dataset=<name>, e.g. --dataset=ml-100k.")
        if dataset in (".", "..") or "/" in dataset or "\\" in dataset or os.sep in dataset:
            raise ConfigError(
                f"--dataset must be a plain name (a folder under --data_path, and log and checkpoint file "
                f"names), got {dataset!r}: give the folder above it as --data_path."
            )
        model_class = get_model(model) if isinstance(model, str) else model
        if isinstance(config_file_list, (str, os.PathLike)):  # one file given as itself
            config_file_list = [config_file_list]
        user_files = [resolve_config_file(str(f)) for f in (config_file_list or [])]
        if model == "RaSeRec":  # on another backbone: that model's class and defaults too
            model_class = built_class(model, chosen_backbone(config_dict or {}, user_files))
        files = property_files(model_class, dataset) + user_files
        self._user_files = user_files
        super().__init__(
            model=model_class,
            dataset=dataset,
            config_file_list=files,
            config_dict=dict(config_dict or {}),
        )
        if self.final_config_dict.get("loss_type") == "BCE" and "MODEL_INPUT_TYPE" not in self.final_config_dict:
            # RecBole derives the loader's format from CE or BPR only: BCE reads BPR's (a positive
            # and a sampled negative per row) (recbole_rag.model.bce)
            self.final_config_dict["MODEL_INPUT_TYPE"] = InputType.PAIRWISE

    def _load_config_files(self, file_list):
        merged = {}
        for path in file_list or []:
            try:
                with open(path, encoding="utf-8") as f:
                    loaded = yaml.load(f.read(), Loader=self.yaml_loader)
            except yaml.YAMLError as err:
                raise ConfigError(f"Config file '{path}' is not valid YAML: {err}") from err
            except UnicodeDecodeError:
                raise ConfigError(f"Config file '{path}' is not UTF-8 text.") from None
            if loaded is None:
                continue
            if not isinstance(loaded, dict):
                raise ConfigError(
                    f"Config file '{path}' must be a mapping of 'key: value' lines, got a {type(loaded).__name__}."
                )
            merged.update(loaded)
        return merged

    def _init_device(self):
        # One of several processes (local_rank set) without a GPU: gloo on the CPU, where
        # RecBole would start NCCL on a CUDA device (recbole_rag.process_group).
        if "local_rank" in self.final_config_dict and not uses_gpu(self.final_config_dict):
            init_cpu_process_group(self.final_config_dict)
        else:
            super()._init_device()

    def _check_known(self, settings, user_keys):
        """Warn about (``unknown_settings: error``: refuse) a user's YAML key or override that no
        model, dataset or trainer reads, e.g. ``--datset=`` or ``learnin_rate:``."""
        problems = unknown_settings(user_keys)
        mode = {**settings, **self.variable_config_dict}.get("unknown_settings", "warn")
        if mode not in ("warn", "error", "ignore"):
            raise ConfigError(f"unknown_settings must be warn, error or ignore, got {mode!r}.")
        if problems and mode == "error":
            raise ConfigError("; ".join(problems) + " (unknown_settings: warn lets the run go on).")
        if problems and mode == "warn":
            for message in problems:
                warnings.warn(
                    message.capitalize() + " (ignored; unknown_settings: error refuses it).",
                    UnknownSettingWarning,
                    stacklevel=2,
                )

    def _convert_config_dict(self, config_dict):
        # RecBole eval()s every string value here; a literal is all a setting can be, and a
        # checkpoint's saved settings come back through this path, so nothing in them may run.
        for key, value in config_dict.items():
            if isinstance(value, str):
                config_dict[key] = _literal_or_text(value)
        return config_dict

    def _load_cmd_line(self):
        # The CLI parses sys.argv itself and hands --key=value overrides in as config_dict, so a
        # library call never picks up the arguments of whatever script imported it.
        return {}

    def _get_final_config_dict(self):
        defaults = dict(self.internal_config_dict)
        defaults.update(self.file_config_dict)
        # the keys the user set, in their YAML files or as overrides
        user_keys = set(self.variable_config_dict) | set(self._load_config_files(self._user_files))
        self._check_known(defaults, user_keys)
        problems = [
            message
            for key, value in self.variable_config_dict.items()
            if (message := _type_error(key, value, defaults.get(key)))
        ]
        if problems:
            raise ConfigError("Invalid override: " + "; ".join(problems) + ".")
        self._user_keys = user_keys
        final = super()._get_final_config_dict()
        self._sample_negatives_where_needed(final, user_keys)
        no_code_from_files(final)
        pairwise = getattr(self.model_class, "input_type", None) == InputType.PAIRWISE
        check_settings(final, getattr(self.model_class, "type", None), pairwise)
        return final

    # Which settings a run reads: a key the user set that nothing read changed nothing (e.g.
    # --alpha on SASRec: a known key, RaSeRec's, so the unknown-setting warning stays quiet).
    def __getitem__(self, item):
        self.__dict__.setdefault("_read", set()).add(item)
        return super().__getitem__(item)

    def __contains__(self, key):
        self.__dict__.setdefault("_read", set()).add(key)
        return super().__contains__(key)

    def __getattr__(self, item):
        if item in self.__dict__.get("final_config_dict", {}):
            self.__dict__.setdefault("_read", set()).add(item)
        return super().__getattr__(item)

    def unread_settings(self):
        """The keys the user set (YAML files, overrides) that nothing has read from this Config."""
        read = self.__dict__.get("_read", set())
        exempt = _RUNTIME_KEYS | _READ_DIRECTLY
        return sorted(k for k in self.__dict__.get("_user_keys", ()) if k not in read and k not in exempt)

    def _sample_negatives_where_needed(self, final, user_keys):
        """overall.yaml trains with cross-entropy over all items and no sampled negatives; a model
        that learns from sampled negatives (BPR, BCE, or any model with a pairwise loss) gets RecBole's
        own default sampling back, unless the user set train_neg_sample_args."""
        user_set = "train_neg_sample_args" in user_keys
        pairwise = getattr(self.model_class, "input_type", None) == InputType.PAIRWISE
        if (
            not user_set
            and final.get("train_neg_sample_args") is None
            and (pairwise or final.get("loss_type") in ("BPR", "BCE"))
        ):
            final["train_neg_sample_args"] = self.internal_config_dict.get("train_neg_sample_args")
