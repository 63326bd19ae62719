"""The three-stage pipeline in one command: regenerate the dataset (DR4SR) -> train a backbone
(SASRec, DuoRec, ...) on the regenerated data -> RaSeRec's RAFT on that backbone with a memory
bank of training pairs or of mined patterns. Also the original-data baseline, for the table.

    python -m recbole_rag.pipeline --backbone=SASRec --dataset=amazon-beauty \
        --data_path=DATA_PATH --memory_sources=pairs,patterns --epochs=6 --raft_epochs=20

``--epochs`` is the backbone's budget; the regenerator trains ``--regen_epochs`` (default: its
YAML). A saved regenerated set whose manifest matches is reused instead of regenerated.
"""

import os
import sys
from logging import getLogger

from recbole_rag.config import Config
from recbole_rag.errors import CommandParser, ConfigError, command, is_count
from recbole_rag.memory.builders import check_memory_source
from recbole_rag.model.backbone import BACKBONE_MODELS
from recbole_rag.overrides import parse_overrides
from recbole_rag.quick_start import run_recbole_rag, write_comparison
from recbole_rag.regeneration.writer import find_regenerated, pretraining_key, regen_folder
from recbole_rag.registry import get_model


def regenerate(dataset, config_file_list=None, config_dict=None, control=False):
    """Folder of ``<dataset>-regen`` (``control``: of its control, ``<dataset>-regen-control``, the
    original rows plus as many again): a saved one whose manifest matches, else written now.
    DR4SR+ (``personalise``, e.g. from --config_files=dr4sr-plus) is for the model trained on the
    set, never for the regenerator."""
    config_dict = {**(config_dict or {}), "personalise": False}
    if control:
        config_dict["regen_control"] = True
    config = Config("Regenerator", dataset, config_file_list, config_dict)
    folder = find_regenerated(config, control)
    if folder:
        getLogger().info(f"Reusing the regenerated dataset in {folder} (its manifest matches).")
        return folder
    run_recbole_rag("Regenerator", dataset, config_file_list, config_dict)
    return regen_folder(config, control)


def regenerator_key(dataset, config_file_list=None, config_dict=None):
    """The hash that names a regenerator's pre-training (recbole_rag.regeneration.writer)."""
    config_dict = {**(config_dict or {}), "personalise": False}
    return pretraining_key(Config("Regenerator", dataset, config_file_list, config_dict))


def regenerated_run(folder, config_file_list=None, config_dict=None):
    """(dataset name, config files, overrides) that load the regenerated dataset in ``folder``."""
    name = os.path.basename(os.path.normpath(folder))
    files = list(config_file_list or []) + [os.path.join(folder, f"{name}.yaml")]
    return name, files, {**(config_dict or {}), "data_path": os.path.dirname(os.path.normpath(folder))}


def run_pipeline(
    backbone,
    dataset,
    memory_sources=("pairs", "patterns"),
    baseline=True,
    regen_epochs=None,
    config_file_list=None,
    config_dict=None,
    out_dir="saved",
):
    """Run the stages; returns (results, Markdown table), the table also written to ``out_dir``."""
    sources = [check_memory_source(s) for s in memory_sources]
    get_model(backbone)  # an unknown name stops here, not after the regenerator has trained
    if regen_epochs is not None and not is_count(regen_epochs, 1):
        raise ConfigError(f"regen_epochs must be an integer >= 1 (or None for the YAML's), got {regen_epochs!r}.")
    config_dict = dict(config_dict or {})
    results = []
    if baseline:
        results.append(run_recbole_rag(backbone, dataset, config_file_list, config_dict))
    regen_overrides = {k: v for k, v in config_dict.items() if k != "epochs"}
    if regen_epochs is not None:
        regen_overrides["epochs"] = regen_epochs
    if baseline and results[0]["saved_model_file"] and not regen_overrides.get("regen_item_embedding"):
        regen_overrides["regen_item_embedding"] = results[0]["saved_model_file"]  # as the reference
    folder = regenerate(dataset, config_file_list, regen_overrides)
    name, files, overrides = regenerated_run(folder, config_file_list, config_dict)
    trained = run_recbole_rag(backbone, name, files, overrides)
    trained["model"] = f"{backbone} on {name}"
    results.append(trained)
    if sources and not trained["saved_model_file"]:
        raise ConfigError("RAFT needs the backbone's checkpoint: run the pipeline with saving on.")
    for source in sources:
        raft = run_recbole_rag(
            "RaSeRec",
            name,
            files,
            {
                **overrides,
                "pretrained_path": trained["saved_model_file"],
                # our encoder loads DuoRec / SASRec weights; any other model is RAFT's backbone itself
                "backbone": "DuoRec" if backbone in BACKBONE_MODELS else backbone,
                "memory_source": source,
                "personalise": False,  # DR4SR+ trains the backbone stage only
                # a pattern bank stays patterns only: no validation pairs are added before testing
                "memory_update": source == "pairs" and overrides.get("memory_update", True),
            },
        )
        raft["model"] = f"RaSeRec@{backbone} on {name} ({source})"
        results.append(raft)
    return results, write_comparison(results, f"{dataset}-regen-{backbone}", out_dir)


def main(argv=None):
    return command(lambda: cli(argv))


def cli(argv):
    """``recbole-rag pipeline ...``: raises what ``main`` prints as one line."""
    parser = CommandParser(
        prog="recbole-rag pipeline",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        epilog="Any other --key=value overrides a setting of every stage.",
    )
    parser.add_argument("--backbone", default="SASRec", help="model trained on the regenerated data")
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--memory_sources", default="pairs,patterns", help="RAFT runs: pairs, patterns, both or ''")
    parser.add_argument("--baseline", default="True", choices=["True", "False"], help="also train on the original data")
    parser.add_argument("--regen_epochs", type=int, default=None, help="regenerator epochs (default: its YAML)")
    parser.add_argument("--config_files", default="", help="space-separated YAML files")
    parser.add_argument("--out_dir", default="saved", help="where the table goes (default saved/)")
    args, rest = parser.parse_known_args(argv)
    sources = [s.strip() for s in args.memory_sources.split(",") if s.strip()]
    results, table = run_pipeline(
        args.backbone,
        args.dataset,
        sources,
        args.baseline == "True",
        args.regen_epochs,
        args.config_files.split() or None,
        parse_overrides(rest),
        args.out_dir,
    )
    print(table)
    print(f"\nwritten to {results[0]['table_file']} and beside it the .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
