import pytest

from recbole_rag import Config
from recbole_rag.data import load_dataset
from recbole_rag.errors import DatasetError


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tiny, tmp_path):
    config = Config("SASRec", "amazon-toys-games", config_dict={**tiny, "data_path": str(tmp_path / "nowhere")})
    with pytest.raises(DatasetError) as err:
        load_dataset(config)
    message = str(err.value)
    assert "amazon-toys-games" in message
    assert str(tmp_path / "nowhere" / "amazon-toys-games") in message
    assert "amazon-toys-games.inter" in message
    assert "python -m recbole_rag.data.convert" in message


def test_atomic_file_without_typed_header(tiny, tmp_path):
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    inter.write_text("user_id\titem_id\ttimestamp\nu1\ti1\t1\n")
    with pytest.raises(DatasetError, match="header column 1 is 'user_id'"):
        load_dataset(Config("SASRec", "tiny", config_dict=tiny))


def test_inter_file_without_the_time_field(tiny, tmp_path):
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    inter.write_text("user_id:token\titem_id:token\nu1\ti1\n")
    with pytest.raises(DatasetError, match="lacks timestamp"):
        load_dataset(Config("SASRec", "tiny", config_dict=tiny))


def test_dataset_empty_after_filtering(tiny):
    config = Config("SASRec", "tiny", config_dict={**tiny, "user_inter_num_interval": "[1000,inf)"})
    with pytest.raises(DatasetError, match="empty after filtering.*user_inter_num_interval"):
        load_dataset(config)


def test_ml100k_loads_offline_from_recbole_wheel():
    dataset = load_dataset(Config("SASRec", "ml-100k", config_dict={"state": "ERROR"}))
    assert dataset.user_num - 1 == 943 and dataset.inter_num > 90_000
    assert "rating" not in dataset.inter_feat.columns
