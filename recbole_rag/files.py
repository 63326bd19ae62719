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


def claim_path(path):
    """``path``, or ``<stem>-<n><ext>`` when that is taken, created empty with O_EXCL: two
    processes that name files by the same clock second never end up writing the same one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    stem, ext = os.path.splitext(path)
    candidate, n = path, 1
    while True:
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return candidate
        except FileExistsError:
            candidate, n = f"{stem}-{n}{ext}", n + 1
