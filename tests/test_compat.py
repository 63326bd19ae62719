import numpy as np
import pandas
import torch

from recbole_rag import Config
from recbole_rag.data import load_dataset


def test_numpy2_aliases_that_recbole_reads_exist():
    for alias in ("float_", "complex_", "unicode_", "bool8"):
        assert hasattr(np, alias), alias


def test_anomaly_detection_is_off_after_recbole_models_are_imported(tiny):
    import recbole.model.sequential_recommender.sine  # noqa: F401  (the module that turns it on)

    Config("SASRec", "tiny", config_dict=tiny)
    assert not torch.is_anomaly_enabled()


def test_pandas_is_below_3_and_missing_float_is_filled(tiny):
    assert int(pandas.__version__.split(".")[0]) < 3
    config = Config("SASRec", "tiny", config_dict={**tiny, "load_col": None, "normalize_all": False})
    dataset = load_dataset(config)
    price = dataset.item_feat["price"]
    assert not np.isnan(price.to_numpy(dtype=float)).any()  # item i3 has no price in the file: filled with the mean
