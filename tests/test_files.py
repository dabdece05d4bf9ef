"""ganfast._files.write_atomically: all or nothing, and otherwise as writing in place would be."""

import os
import stat

import pytest

from ganfast._files import write_atomically


def _write(text):
    return lambda tmp: tmp.write_text(text)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_umask_mode_and_an_existing_one_keeps_its_own(tmp_path):
    umask = os.umask(0o027)
    try:
        write_atomically(tmp_path / "new.txt", lambda tmp: (tmp.write_text("x"), os.chmod(tmp, 0o600)))
        assert _mode(tmp_path / "new.txt") == 0o640  # whatever the writer left
        for mode in (0o600, 0o755):
            (tmp_path / "old.txt").write_text("old")
            os.chmod(tmp_path / "old.txt", mode)
            write_atomically(tmp_path / "old.txt", _write("new"))
            assert (tmp_path / "old.txt").read_text() == "new" and _mode(tmp_path / "old.txt") == mode
    finally:
        os.umask(umask)


def test_a_symlink_keeps_pointing_at_its_target_which_is_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "README.md"
    target.write_text("old")
    link = tmp_path / "README.md"
    link.symlink_to(target)
    write_atomically(link, _write("new"))
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["README.md"]


def test_a_failed_write_keeps_the_last_version_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "stats.npz"
    path.write_text("complete")

    def fails(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fails)
    assert path.read_text() == "complete" and [p.name for p in tmp_path.iterdir()] == ["stats.npz"]


def test_a_file_that_may_not_be_written_is_refused_and_left_alone(tmp_path, monkeypatch):
    path = tmp_path / "README.md"
    path.write_text("read-only")
    os.chmod(path, 0o444)
    # root may write anything: ask the answer an ordinary user gets
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == str(path) else real_access(p, m))
    with pytest.raises(PermissionError, match="README.md"):
        write_atomically(path, _write("new"))
    assert path.read_text() == "read-only" and _mode(path) == 0o444


def test_a_name_at_the_length_limit_still_works(tmp_path):
    path = tmp_path / ("s" * 250 + ".npz")
    write_atomically(path, _write("x"))
    assert path.read_text() == "x" and len(list(tmp_path.iterdir())) == 1
