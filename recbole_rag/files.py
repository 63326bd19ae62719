"""Files written whole or not at all."""

import os
import tempfile
from contextlib import contextmanager

from recbole_rag.errors import ConfigError


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


def check_writable_folder(folder, setting):
    """A one-line ConfigError, before any training, unless files can be written in ``folder``
    (created if missing): not a file, not under a file, not read-only."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-", delete=True)
        probe.close()
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{setting} '{folder}' is a file or lies under one: point {setting} at a folder.") from None
    except OSError as err:
        raise ConfigError(
            f"{setting} '{folder}' cannot be written ({err.strerror}): point {setting} elsewhere."
        ) from None
