"""Bad or unusual input across the public entry points: one row per case, each giving one clear
line (an error or a warning) instead of a traceback or a silently wrong run."""
import warnings

import pytest

from recbole_rag import Config
from recbole_rag.cli import main
from recbole_rag.config import UnknownSettingWarning
from recbole_rag.data import load_dataset
from recbole_rag.data.checks import DatasetWarning
from recbole_rag.errors import ConfigError, DatasetError


def _rows(text):
    return text.splitlines()[1:]


# (case, how the tiny .inter file's text changes, error class or warning class, words of the message)
INTER_CASES = [
    ("time declared a token", lambda t: t.replace("timestamp:float", "timestamp:token"), DatasetError,
     "must be 'timestamp:float'"),
    ("item id declared a float", lambda t: t.replace("item_id:token", "item_id:float"), DatasetError,
     "must be 'item_id:token'"),
    ("a time that is no number", lambda t: t.replace("\t3\n", "\tsoon\n", 1), DatasetError,
     "line 4: column 'timestamp' is float but holds 'soon'"),
    ("every row twice", lambda t: t + "\n".join(_rows(t)) + "\n", DatasetWarning,
     "repeats 507 interactions exactly"),
]


@pytest.mark.parametrize("case, change, expected, words", INTER_CASES, ids=[c[0] for c in INTER_CASES])
def test_inter_file(tiny, tmp_path, case, change, expected, words):
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    inter.write_text(change(inter.read_text()))
    config = Config("SASRec", "tiny", config_dict=tiny)
    if issubclass(expected, Warning):
        with pytest.warns(expected, match=words):
            load_dataset(config)
    else:
        with pytest.raises(expected, match=words.replace("(", r"\(")):
            load_dataset(config)


def test_duplicates_stay_quiet_once_dropped(tiny, tmp_path):
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    text = inter.read_text()
    inter.write_text(text + "\n".join(_rows(text)) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        dataset = load_dataset(Config("SASRec", "tiny", config_dict={**tiny, "rm_dup_inter": "first"}))
    assert dataset.inter_num == len({tuple(row.split("\t")[:2]) for row in _rows(text)})  # one per user-item pair


def test_inter_file_not_utf8(tiny, tmp_path):
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    inter.write_bytes(inter.read_text().replace("user_id", "us\xe9r_id").encode("latin-1"))
    with pytest.raises(DatasetError, match="is not utf-8 text"):
        load_dataset(Config("SASRec", "tiny", config_dict=tiny))


# (settings, the nearest known key the warning names, or None when there is none)
TYPO_CASES = [
    ({"datset": "tiny"}, "dataset"),
    ({"learnin_rate": 0.01}, "learning_rate"),
    ({"epochz": 3}, "epochs"),
    ({"retreival_k": 3}, "retrieval_k"),
    ({"completely_made_up": 1}, None),
]


@pytest.mark.parametrize("settings, nearest", TYPO_CASES)
def test_unknown_setting_warns_with_the_nearest_key(tiny, settings, nearest):
    with pytest.warns(UnknownSettingWarning) as record:
        Config("SASRec", "tiny", config_dict={**tiny, **settings})
    message = str(record[0].message)
    assert repr(next(iter(settings))) in message
    assert (f"did you mean '{nearest}'" in message) if nearest else "no model or dataset reads it" in message


def test_unknown_setting_in_a_yaml_file_warns_and_can_refuse(tiny, tmp_path):
    user_yaml = tmp_path / "mine.yaml"
    user_yaml.write_text("learnin_rate: 0.01\n")
    with pytest.warns(UnknownSettingWarning, match="'learnin_rate'"):
        Config("SASRec", "tiny", [str(user_yaml)], tiny)
    with pytest.raises(ConfigError, match="unknown setting 'learnin_rate': did you mean 'learning_rate'"):
        Config("SASRec", "tiny", [str(user_yaml)], {**tiny, "unknown_settings": "error"})
    with pytest.raises(ConfigError, match="unknown_settings must be warn, error or ignore"):
        Config("SASRec", "tiny", config_dict={**tiny, "unknown_settings": "loud"})


def test_known_settings_of_every_kind_stay_quiet(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownSettingWarning)
        Config("RaSeRec", "tiny", config_dict={**tiny, "retrieval_k": 3, "rm_dup_inter": "first",
                                               "unknown_settings": "warn", "gpu_id": "0"})
        Config("SRACL", "tiny", config_dict={**tiny, "epochs": 1})


def test_cli_prints_an_unknown_setting_as_one_line(tiny, capsys):
    code = main(["--model=SASRec", "--dataset=tiny", "--datset=tiny", "--unknown_settings=error",
                 *(f"--{k}={v}" for k, v in tiny.items())])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [err] and "did you mean 'dataset'" in err


def test_compare_writes_its_table_beside_the_checkpoints_not_into_results(tiny, tmp_path, capsys):
    args = [f"--{k}={v}" for k, v in {**tiny, "epochs": 1}.items()]
    assert main(["--compare=SASRec", "--dataset=tiny", *args]) == 0
    assert (tmp_path / "saved" / "tiny-compare.md").is_file() and not (tmp_path / "results").exists()
    assert main(["--compare=SASRec", "--model=GRU4Rec", "--dataset=tiny", *args]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("call, message", [
    (lambda tiny: Config("SASRec", "tiny", "nowhere.yaml", tiny), "Config file 'nowhere.yaml' does not exist"),
    (lambda tiny: __import__("recbole_rag").compare("SASRec,SASRec", "tiny", None, tiny), "listed twice"),
])
def test_python_api_mistakes(tiny, call, message):
    with pytest.raises(ConfigError, match=message):
        call(tiny)


def test_cli_after_zero_epochs_says_nothing_was_validated(tiny, capsys):
    assert main(["--model=SASRec", "--dataset=tiny", *(f"--{k}={v}" for k, v in {**tiny, "epochs": 0}.items())]) == 0
    assert "best valid: none (no epoch was validated)" in capsys.readouterr().out
