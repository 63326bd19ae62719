"""Bad or unusual input across the public entry points: one row per case, each giving one clear
line (an error or a warning) instead of a traceback or a silently wrong run."""

import os
import warnings

import pytest
import torch

from recbole_rag import Config, run_recbole_rag
from recbole_rag.cli import main
from recbole_rag.config import UnknownSettingWarning
from recbole_rag.data import load_dataset
from recbole_rag.data.checks import DatasetWarning
from recbole_rag.errors import CheckpointError, ConfigError, DatasetError, is_count


def _rows(text):
    return text.splitlines()[1:]


# (case, how the tiny .inter file's text changes, error class or warning class, words of the message)
INTER_CASES = [
    (
        "time declared a token",
        lambda t: t.replace("timestamp:float", "timestamp:token"),
        DatasetError,
        "must be 'timestamp:float'",
    ),
    (
        "item id declared a float",
        lambda t: t.replace("item_id:token", "item_id:float"),
        DatasetError,
        "must be 'item_id:token'",
    ),
    (
        "a time that is no number",
        lambda t: t.replace("\t3\n", "\tsoon\n", 1),
        DatasetError,
        "line 4: column 'timestamp' is float but holds 'soon'",
    ),
    (
        "an empty time (it would sort last and become the test item)",
        lambda t: t.replace("\t3\n", "\t\n", 1),
        DatasetError,
        "line 4: column 'timestamp' is empty or missing",
    ),
    (
        "a row without its time",
        lambda t: t.replace("\t3\n", "\n", 1),
        DatasetError,
        "line 4: column 'timestamp' is empty or missing",
    ),
    (
        "an infinite time",
        lambda t: t.replace("\t3\n", "\tinf\n", 1),
        DatasetError,
        "line 4: column 'timestamp' is 'inf'",
    ),
    (
        "an empty item id",
        lambda t: "\n".join(t.splitlines()[:3] + ["u1\t\t99"] + t.splitlines()[3:]) + "\n",
        DatasetError,
        "line 4: column 'item_id' is empty or missing",
    ),
    ("every row twice", lambda t: t + "\n".join(_rows(t)) + "\n", DatasetWarning, "repeats 507 interactions exactly"),
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


@pytest.mark.parametrize(
    "model, settings",
    [
        ("RaSeRec", {"retrieval_k": 3, "rm_dup_inter": "first", "unknown_settings": "warn", "gpu_id": "0"}),
        ("SASRec", {"nproc": 1, "offset": 0, "ip": "127.0.0.1", "port": 5678, "alias_of_item_id": None}),
        ("SRACL", {"epochs": 1}),
    ],
)
def test_known_settings_of_every_kind_stay_quiet(tiny, model, settings):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownSettingWarning)
        Config(model, "tiny", config_dict={**tiny, **settings})


def test_cli_prints_an_unknown_setting_as_one_line(tiny, capsys):
    code = main(
        [
            "--model=SASRec",
            "--dataset=tiny",
            "--datset=tiny",
            "--unknown_settings=error",
            *(f"--{k}={v}" for k, v in tiny.items()),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [err] and "did you mean 'dataset'" in err


def test_compare_writes_its_table_beside_the_checkpoints_not_into_results(tiny, tmp_path, capsys):
    args = [f"--{k}={v}" for k, v in {**tiny, "epochs": 1}.items()]
    assert main(["--compare=SASRec", "--dataset=tiny", *args]) == 0
    assert (tmp_path / "saved" / "tiny-compare.md").is_file() and not (tmp_path / "results").exists()
    assert main(["--compare=SASRec", "--model=GRU4Rec", "--dataset=tiny", *args]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda tiny: Config("SASRec", "tiny", "nowhere.yaml", tiny), "Config file 'nowhere.yaml' does not exist"),
        (lambda tiny: __import__("recbole_rag").compare("SASRec,SASRec", "tiny", None, tiny), "listed twice"),
    ],
)
def test_python_api_mistakes(tiny, call, message):
    with pytest.raises(ConfigError, match=message):
        call(tiny)


def test_cli_after_zero_epochs_says_nothing_was_validated(tiny, capsys):
    assert main(["--model=SASRec", "--dataset=tiny", *(f"--{k}={v}" for k, v in {**tiny, "epochs": 0}.items())]) == 0
    assert "best valid: none (no epoch was validated)" in capsys.readouterr().out


def _truncated_checkpoint(tmp_path):
    torch.save({"config": {"model": "SASRec"}, "state_dict": {"w": torch.zeros(4096)}}, tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    return str(tmp_path / "cut.pth")


# (model, settings given a tmp folder, error class, words): RaSeRec's settings are all checked
# before stage 1, so nothing is trained (and no checkpoint written) before the error.
RUN_CASES = [
    ("RaSeRec", lambda tmp: {"memory_index": "lsh"}, ConfigError, "memory index_type must be one of"),
    ("RaSeRec", lambda tmp: {"memory_metric": "l1"}, ConfigError, "memory metric must be one of"),
    ("RaSeRec", lambda tmp: {"retrieval_k": 5000}, ConfigError, "retrieval_k=5000 is larger than the memory bank"),
    ("RaSeRec", lambda tmp: {"memory_index": "ivf", "memory_nlist": 4096}, ConfigError, "memory_nlist=4096 needs"),
    ("SASRec", lambda tmp: {"pretrained_path": str(_text_file(tmp))}, CheckpointError, "is not a whole checkpoint"),
    ("RaSeRec", lambda tmp: {"pretrained_path": str(_text_file(tmp))}, CheckpointError, "is not a whole checkpoint"),
    ("SASRec", lambda tmp: {"resume_path": _truncated_checkpoint(tmp)}, CheckpointError, "is not a whole checkpoint"),
]


def _text_file(tmp_path):
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    return tmp_path / "notes.pth"


@pytest.mark.parametrize("model, settings, expected, words", RUN_CASES, ids=[f"{c[0]}-{c[3][:24]}" for c in RUN_CASES])
def test_bad_run_setting_fails_before_training(tiny, tmp_path, model, settings, expected, words):
    with pytest.raises(expected, match=words):
        run_recbole_rag(model, "tiny", config_dict={**tiny, "retrieval_k": 3, **settings(tmp_path)})
    assert not list((tmp_path / "saved").glob("*.pth"))


def test_an_error_after_stage_1_names_the_file_to_restart_from(tiny, tmp_path):
    (tmp_path / "bank.npz").write_text("not a bank")
    with pytest.raises(CheckpointError) as err:
        run_recbole_rag(
            "RaSeRec",
            "tiny",
            config_dict={**tiny, "retrieval_k": 3, "epochs": 1, "memory_path": str(tmp_path / "bank.npz")},
        )
    message = str(err.value)
    assert "is not a memory bank saved by MemoryBank.save" in message
    restart = message.split("pretrained_path=")[1]
    assert os.path.isfile(restart) and "pretrain" in restart


def test_header_only_inter_file_says_it_holds_no_interactions(tiny, tmp_path):
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    inter.write_text(inter.read_text().splitlines()[0] + "\n")
    with pytest.raises(DatasetError, match="has a header but no interactions"):
        load_dataset(Config("SASRec", "tiny", config_dict=tiny))


def test_converted_file_is_readable_by_others_as_any_new_file(tmp_path):
    from recbole_rag.data.convert import convert

    source = tmp_path / "ratings.csv"
    source.write_text("u1,i1,5,1\nu1,i2,4,2\n")
    out = convert("amazon-csv", str(source), "mine", str(tmp_path / "out"))["path"]
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert os.stat(out).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


# (command line, words of its one error line): every command runs through one handler
CLI_CASES = [
    (["nope"], "Unknown command 'nope': one of run, compare, recommend"),
    (["compare", "--dataset=tiny"], "compare needs the models first"),
    (["convert", "--download=x", "--format=y"], "--download takes no --format"),
    (["pipeline", "--dataset=tiny", "--memory_sources=nope"], "memory_source"),
    (["distributed", "--nproc=1"], "nproc must be an integer >= 2"),
    (["run", "--model=Nope"], "Unknown model 'Nope'"),
    (["--model=SASRec", "--dataset=tiny", "stray"], "Cannot read argument 'stray'"),
    # what argparse itself refuses: a mistyped value, a missing option, an unknown choice or option
    (["recommend", "--checkpoint=x.pth", "--users=u1", "--k=abc"], "argument --k: invalid int value: 'abc'"),
    (["recommend", "--users=u1"], "required: --checkpoint"),
    (["evaluate"], "required: --checkpoint"),
    (["distributed", "--nproc=x"], "argument --nproc: invalid int value"),
    (["pipeline", "--baseline=maybe"], "invalid choice: 'maybe'"),
    (["convert", "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("argv, words", CLI_CASES, ids=[" ".join(c[0])[:30] for c in CLI_CASES])
def test_every_command_reports_bad_input_as_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1


def test_a_dataset_name_is_no_setting(tiny):
    with pytest.warns(UnknownSettingWarning, match="'amazon-beauty'"):  # a dataset name is no setting
        Config("SASRec", "tiny", config_dict={**tiny, "amazon-beauty": 1})


def test_a_file_recbole_does_not_load_is_not_checked(tiny, tmp_path):
    item = tmp_path / "data" / "tiny" / "tiny.item"
    item.write_text(item.read_text().replace("\t5.0\n", "\tcheap\n"))
    load_dataset(Config("SASRec", "tiny", config_dict=tiny))  # load_col names only the .inter file
    with pytest.raises(DatasetError, match="column 'price' is float but holds 'cheap'"):
        load_dataset(Config("SASRec", "tiny", config_dict={**tiny, "load_col": {"inter": "*", "item": "*"}}))


def test_is_count_takes_integers_from_the_least_and_refuses_bools():
    assert is_count(0) and is_count(3, 3) and not is_count(2, 3)
    assert not any(is_count(v) for v in (True, False, 1.0, "1", None))
