import pytest

from recbole_rag.files import atomic_path, claim_path


def test_atomic_path_writes_whole_files_or_nothing(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("done")
        assert not target.exists()  # nothing at the target until the block ends
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "done"  # the old file stays, the half one is gone
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_claim_path_never_hands_out_a_taken_name(tmp_path):
    first = claim_path(str(tmp_path / "m" / "run.pth"))
    second = claim_path(str(tmp_path / "m" / "run.pth"))
    assert first.endswith("run.pth") and second.endswith("run-1.pth")
    assert (tmp_path / "m" / "run.pth").exists() and (tmp_path / "m" / "run-1.pth").exists()
