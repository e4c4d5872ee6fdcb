"""kdscale.fileio.atomic_path: a file lands whole or not at all, and `exclusive` never replaces one."""
import pytest

from kdscale.fileio import atomic_path


def test_atomic_path_replaces_or_with_exclusive_keeps_the_first_file(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("one")
    with atomic_path(target) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two"
    with atomic_path(target, exclusive=True) as tmp:  # another process's file is already there: kept
        tmp.write_text("three")
    assert target.read_text() == "two"
    fresh = tmp_path / "sub" / "fresh.txt"
    with atomic_path(fresh, exclusive=True) as tmp:
        tmp.write_text("four")
    assert fresh.read_text() == "four"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "sub" / "failed.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["file.txt", "fresh.txt"]  # no temporary left
