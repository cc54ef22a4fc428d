"""infergate.util.files.write_private: owner-only, whole-file replacement."""

from __future__ import annotations

import stat
from pathlib import Path

from infergate.util.files import write_private


def test_write_private_is_owner_only_and_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("an old, longer secret\n")
    path.chmod(0o644)
    write_private(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the old file's mode is not kept
    write_private(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]  # no temporary file left
