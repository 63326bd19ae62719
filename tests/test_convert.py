"""recbole_rag.data.convert: each format, each kind of bad input, the CLI, and a RecBole load."""

import gzip
import json
import os
import sys
import urllib.error

import pytest

from recbole_rag.data import convert as conv
from recbole_rag.data.convert import convert, download, main
from recbole_rag.errors import DatasetError

CSV = "u1,i1,5.0,300\nu2,i2,3.0,100\nu1,i2,4.0,100\nu1,i3,1.0,200\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def rows(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def reviews(with_overall=True):
    data = [("u1", "a", 3, 5.0), ("u2", "b", 1, 4.0), ("u1", "b", 2, 1.0)]
    return "".join(
        json.dumps({"reviewerID": u, "asin": i, "unixReviewTime": t, **({"overall": r} if with_overall else {})}) + "\n"
        for u, i, t, r in data
    )


def test_amazon_csv(tmp_path):
    counts = convert("amazon-csv", write(tmp_path / "r.csv", CSV), "beauty", str(tmp_path / "out"))
    path = str(tmp_path / "out" / "beauty" / "beauty.inter")
    assert counts == {"path": path, "interactions": 4, "users": 2, "items": 3}
    header, body = rows(path)
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    # Users in first-seen order; within u1 sorted by time.
    assert body == [
        ["u1", "i2", "4", "100"],
        ["u1", "i3", "1", "200"],
        ["u1", "i1", "5", "300"],
        ["u2", "i2", "3", "100"],
    ]
    assert [f for f in os.listdir(tmp_path / "out" / "beauty")] == ["beauty.inter"]  # no temp file left


@pytest.mark.parametrize(
    "text",
    [
        "u1,i1,300\nu2,i2,100\nu1,i2,100\n",  # no header: user,item,timestamp
        "user_id,item_id,timestamp\nu1,i1,300\nu2,i2,100\nu1,i2,100\n",  # a header
        "Timestamp,Item,User\n300,i1,u1\n100,i2,u2\n100,i2,u1\n",  # a header, columns in another order
    ],
)
def test_a_plain_click_log(tmp_path, text):
    counts = convert("csv", write(tmp_path / "clicks.csv", text), "mine", str(tmp_path))
    assert counts["interactions"] == 3 and counts["users"] == 2
    header, body = rows(tmp_path / "mine" / "mine.inter")
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    assert body == [["u1", "i2", "100"], ["u1", "i1", "300"], ["u2", "i2", "100"]]


def test_a_click_log_with_a_named_rating_column(tmp_path):
    convert("csv", write(tmp_path / "c.csv", "user,item,rating,time\nu1,i1,4,2\nu1,i2,5,1\n"), "r", str(tmp_path))
    header, body = rows(tmp_path / "r" / "r.inter")
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert body == [["u1", "i2", "5", "1"], ["u1", "i1", "4", "2"]]


def test_sort_is_stable_for_equal_timestamps(tmp_path):
    convert("amazon-csv", write(tmp_path / "r.csv", "u,b,1,5\nu,a,1,5\nu,c,1,1\n"), "d", str(tmp_path))
    assert [r[1] for r in rows(tmp_path / "d" / "d.inter")[1]] == ["c", "b", "a"]


@pytest.mark.parametrize("with_overall", [True, False])
@pytest.mark.parametrize("gzipped", [False, True])
def test_amazon_json(tmp_path, with_overall, gzipped):
    text = reviews(with_overall)
    if gzipped:
        src = tmp_path / "reviews.json.gz"
        with gzip.open(src, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        src = tmp_path / "reviews.json"
        write(src, text)
    counts = convert("amazon-json", str(src), "rev", str(tmp_path))
    assert (counts["interactions"], counts["users"], counts["items"]) == (3, 2, 2)
    header, body = rows(counts["path"])
    if with_overall:
        assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
        assert body == [["u1", "b", "1", "2"], ["u1", "a", "5", "3"], ["u2", "b", "4", "1"]]
    else:
        assert header == "user_id:token\titem_id:token\ttimestamp:float"
        assert body == [["u1", "b", "2"], ["u1", "a", "3"], ["u2", "b", "1"]]


def test_sequences(tmp_path):
    counts = convert("sequences", write(tmp_path / "s.txt", "1 10 11 12\n\n2\t12  13\n"), "seq", str(tmp_path))
    assert (counts["interactions"], counts["users"], counts["items"]) == (5, 2, 4)
    header, body = rows(counts["path"])
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    assert body == [["1", "10", "1"], ["1", "11", "2"], ["1", "12", "3"], ["2", "12", "1"], ["2", "13", "2"]]


@pytest.mark.parametrize(
    "fmt, text, line",
    [
        ("amazon-csv", "u1,i1,5.0,1\nu1,i2,5.0\n", 2),  # too few columns
        ("amazon-csv", "u1,i1,5.0,1\nu1,i2,5.0,1\nu1,i3,good,1\n", 3),  # rating not a number
        ("amazon-csv", "user,item,rating,timestamp\nu1,i1,5.0,1\n", 1),  # a header
        ("amazon-csv", "u1,i1,5.0,1\nu1,i\t2,5.0,1\n", 2),  # a tab inside a value
        ("amazon-json", '{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}\n{"reviewerID": "u"\n', 2),
        ("amazon-json", '{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}\n{"reviewerID": "u", "asin": "a"}\n', 2),
        ("amazon-json", '{"reviewerID": "u", "asin": "a", "unixReviewTime": "soon"}\n', 1),
        ("amazon-json", '{"reviewerID": "u\\tv", "asin": "a", "unixReviewTime": 1}\n', 1),
        ("csv", "u1,i1,1\nu1,i2,5.0,1\n", 2),  # a rating column without a header naming it
        ("csv", "u1,i1,1\nu1,i2,soon\n", 2),  # timestamp not a number
        ("csv", "u1,i1,1\n,i2,2\n", 2),  # empty user
        ("csv", "user,product,timestamp\nu1,i1,1\n", 1),  # a header naming a column it cannot place
        ("csv", "user,item,stamp\nu1,i1,1\n", 1),  # a header without a timestamp column
        ("sequences", "u1 a b\nu2 c\nu3\n", 3),  # user without items
        ("sequences", "u1 a b\nu1 c\n", 2),  # same user twice
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, fmt, text, line):
    src = write(tmp_path / "in.txt", text)
    with pytest.raises(DatasetError) as err:
        convert(fmt, src, "d", str(tmp_path))
    assert f"line {line}:" in str(err.value) and src in str(err.value) and "expected" in str(err.value)
    assert not os.path.exists(tmp_path / "d" / "d.inter")


def test_long_line_is_truncated(tmp_path):
    with pytest.raises(DatasetError) as err:
        convert("amazon-csv", write(tmp_path / "r.csv", "x" * 5000 + "\n"), "d", str(tmp_path))
    assert "line 1:" in str(err.value) and len(str(err.value)) < 600


@pytest.mark.parametrize("fmt", sorted(conv.READERS))
def test_empty_input(tmp_path, fmt):
    with pytest.raises(DatasetError, match="no interactions"):
        convert(fmt, write(tmp_path / "empty", "\n"), "d", str(tmp_path))


def test_missing_input_and_unknown_format(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        convert("amazon-csv", str(tmp_path / "nope.csv"), "d", str(tmp_path))
    with pytest.raises(DatasetError, match="csv, amazon-csv, amazon-json, sequences"):
        convert("parquet", write(tmp_path / "r.csv", CSV), "d", str(tmp_path))


def test_never_overwrites_without_force(tmp_path):
    src = write(tmp_path / "r.csv", CSV)
    convert("amazon-csv", src, "d", str(tmp_path))
    target = tmp_path / "d" / "d.inter"
    target.write_text("keep me")
    with pytest.raises(DatasetError, match="--force"):
        convert("amazon-csv", src, "d", str(tmp_path))
    assert target.read_text() == "keep me"
    assert convert("amazon-csv", src, "d", str(tmp_path), force=True)["interactions"] == 4
    assert target.read_text().startswith("user_id:token")


def test_cli(tmp_path, capsys):
    good = write(tmp_path / "r.csv", CSV)
    out = str(tmp_path / "out")
    assert main(["--format", "amazon-csv", "--input", good, "--dataset", "d", "--output_dir", out]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"wrote {os.path.join(out, 'd', 'd.inter')}: 4 interactions, 2 users, 3 items"
    )

    bad = write(tmp_path / "bad.csv", "u1,i1,5.0,1\nu1,i1\n")
    assert main(["--format", "amazon-csv", "--input", bad, "--dataset", "e", "--output_dir", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 2" in err and "Traceback" not in err

    assert main(["--format", "amazon-csv", "--input", good, "--dataset", "d", "--output_dir", out]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["--format", "amazon-csv", "--input", good, "--dataset", "d", "--output_dir", out, "--force"]) == 0

    assert main(["--format", "xml", "--input", good, "--dataset", "d"]) == 2
    assert "amazon-json" in capsys.readouterr().err
    assert main(["--input", good]) == 2
    assert "--download" in capsys.readouterr().err


def test_download_unknown_name(tmp_path, capsys):
    with pytest.raises(DatasetError, match="ml-100k"):
        download("ml-100kk", str(tmp_path))
    assert main(["--download=no-such-dataset", "--output_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_download_network_error_becomes_dataset_error(tmp_path, monkeypatch):
    import recbole.utils.url

    def offline(url, folder):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(recbole.utils.url, "download_url", offline)
    with pytest.raises(DatasetError, match="download.*failed.*convert local files"):
        download("ml-100k", str(tmp_path))
    assert not os.path.exists(tmp_path / "ml-100k")


def test_output_loads_in_recbole(tmp_path, monkeypatch):
    import recbole_rag.compat  # noqa: F401, I001  (numpy 2 shims RecBole's Config needs)
    from recbole.config import Config
    from recbole.data import create_dataset

    monkeypatch.setattr(sys, "argv", ["x"])
    seq = "".join(f"u{u} " + " ".join(f"i{(u + k) % 7}" for k in range(3 + u % 3)) + "\n" for u in range(10))
    counts = convert("sequences", write(tmp_path / "s.txt", seq), "tiny", str(tmp_path / "data"))
    cfg = Config(
        model="SASRec",
        dataset="tiny",
        config_dict={
            "data_path": str(tmp_path / "data"),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "TIME_FIELD": "timestamp",
            "show_progress": False,
            "train_neg_sample_args": None,
            "loss_type": "CE",
            "checkpoint_dir": str(tmp_path / "saved"),
        },
    )
    ds = create_dataset(cfg)
    assert ds.inter_num == counts["interactions"] == sum(3 + u % 3 for u in range(10))
