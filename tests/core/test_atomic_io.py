import os

import pytest

from ic_anogan.core import atomic_io


def test_write_text_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    atomic_io.write_text(str(path), "one")
    atomic_io.write_text(str(path), "two")
    assert path.read_text() == "two"
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mode):
    """Not mkstemp's private 0600: TF Serving and TensorBoard may run as other users."""
    previous = os.umask(umask)
    try:
        atomic_io.write_text(str(tmp_path / "a.txt"), "x")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == mode


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_io.replace_file(str(path)) as temp:
            with open(temp, "w") as f:
                f.write("half")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_new_directory_is_all_or_nothing(tmp_path):
    target = tmp_path / "v1"
    with pytest.raises(RuntimeError):
        with atomic_io.new_directory(str(target)) as temp:
            open(os.path.join(temp, "x"), "w").close()
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []
    with atomic_io.new_directory(str(target)) as temp:
        open(os.path.join(temp, "x"), "w").close()
    assert os.listdir(target) == ["x"]
    with pytest.raises(FileExistsError, match="v1: exists already"):
        with atomic_io.new_directory(str(target)):
            pass
