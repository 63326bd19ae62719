"""The examples a user copies first run as written (on tiny data) and show what they claim."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_block(doc, heading):
    """The first ```python block after ``heading`` in ``doc`` (a path under the repository)."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        text = f.read()
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {heading!r} in {doc}"
    return match.group(1)


def test_readmes_python_quick_start_runs(tiny):
    code = python_block("README.md", "## Quick start")
    assert '"ml-100k"' in code and "config_dict={" in code  # what the substitution below relies on
    code = code.replace('"ml-100k"', '"tiny"').replace("config_dict={", "config_dict={**TINY, ")
    namespace = {"TINY": tiny}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result["model"] == "RaSeRec" and 0 <= result["test_result"]["ndcg@10"] <= 1


def test_the_dynamic_memory_example_raises_the_added_items_score(raserec_run, capsys):
    code = python_block("docs/inference.md", "## New interactions without retraining")
    tokens = {
        '"saved/RaSeRec-amazon-beauty-raft-....pth"': "CHECKPOINT",
        "B001": "i5",
        "B002": "i6",
        "B003": "i20",
    }  # i5 -> i6 -> i20: a pair the bank has not seen
    for doc_text, ours in tokens.items():
        assert doc_text in code
        code = code.replace(doc_text, ours)
    namespace = {"CHECKPOINT": raserec_run["saved_model_file"]}
    exec(compile(code, "docs/inference.md", "exec"), namespace)
    assert namespace["after"] > namespace["before"]
    assert "score of i20 after ['i5', 'i6']: " in capsys.readouterr().out
    assert os.path.isfile("saved/bank-updated.npz")


@pytest.mark.parametrize(
    "command", ["run", "compare", "significance", "recommend", "evaluate", "pipeline", "convert", "distributed"]
)
def test_every_commands_help_exits_zero(command, capsys):
    from recbole_rag.cli import COMMANDS, main

    assert command in COMMANDS
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and f"recbole-rag {command}" in capsys.readouterr().out
