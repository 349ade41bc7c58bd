import pytest

from s2dit.atomic import atomic_path, remove_stale_temporaries, write_text_atomic


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".tmp-*"))
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_temporary_keeps_the_suffix_and_stale_ones_are_removed(tmp_path):
    with atomic_path(tmp_path / "v.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.name.startswith(".tmp-")
        tmp.write_bytes(b"x")
    (tmp_path / ".tmp-left.mp4").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
