"""Atomic writes: the old file or the new one, never half; the permissions of a plain open()."""

import os
import stat

import pytest

from lmforge.atomic import write_atomic


def test_written_file_has_plain_permissions_and_no_temporaries(tmp_path):
    mask = os.umask(0o022)
    try:
        path = tmp_path / "a.json"
        write_atomic(path, "{}")
    finally:
        os.umask(mask)
    assert path.read_text() == "{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    write_atomic(path, "old")
    with pytest.raises(TypeError):
        write_atomic(path, 123)  # not text or bytes: fails before the rename
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
