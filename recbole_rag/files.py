"""Files written whole or not at all."""
import os
from contextlib import contextmanager


@contextmanager
def atomic_path(path, suffix=""):
    """A temporary path beside ``path`` to write to: moved onto ``path`` when the block ends
    without error, removed otherwise, so no reader ever sees a half-written file. ``suffix`` keeps
    the extension writers that go by it need (np.savez, savefig)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp_path = f"{path}.tmp-{os.getpid()}{suffix}"
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
