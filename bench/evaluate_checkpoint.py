"""Test a saved checkpoint with RecBole's evaluator under the standard protocol, e.g. the best
epoch of a run stopped before its budget ended:

    python bench/evaluate_checkpoint.py --model=SRACL --dataset=ml-100k --checkpoint=saved/SRACL-....pth

Extra ``--key=value`` settings are those of the run that saved it (data_path, backbone, ...).
Models whose trainer prepares state before training (SRA-CL's semantic tables) get it prepared
first, from the same cached files.
"""

import argparse

from recbole.data import data_preparation
from recbole.utils import dict2str, init_seed

from recbole_rag import Config, get_model, get_trainer
from recbole_rag.cli import parse_overrides
from recbole_rag.data import load_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--checkpoint", required=True)
    args, rest = parser.parse_known_args(argv)
    config = Config(args.model, args.dataset, config_dict=parse_overrides(rest))
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, load_dataset(config))
    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if hasattr(trainer, "prepare_semantics"):
        trainer.prepare_semantics(train.dataset)
    for name, data in (("valid", valid), ("test", test)):
        result = trainer.evaluate(data, model_file=args.checkpoint)
        print(f"{name}: {dict2str(result)}")


if __name__ == "__main__":
    main()
