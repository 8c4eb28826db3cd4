"""The state directory's durable files (the journal and the video index share them): an atomic rewrite."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shim.jobs.files import replace_atomically
from shim.jobs.video_index import FILE_NAME, VideoIndex


def test_a_rewrite_replaces_the_file_whole_and_for_its_owner_only(tmp_path: Path) -> None:
    """The new content replaces the old at once, the file is readable by its owner only (it holds credential
    hashes) and no temp file is left; a failed write leaves the old file as it was."""
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"old\n")
    replace_atomically(str(path), b"new\n")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["journal.jsonl"]
    with pytest.raises(TypeError):
        replace_atomically(str(path), "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"new\n" and sorted(os.listdir(tmp_path)) == ["journal.jsonl"]


def test_the_video_index_is_its_owners_only_too(tmp_path: Path) -> None:
    """The video index, compacted at start-up as the journal is, is written the same way (it used to get the
    umask's mode, and no fsync of its directory)."""
    index = VideoIndex(str(tmp_path), horizon=3600.0, now=0.0)
    index.close()
    assert stat.S_IMODE((tmp_path / FILE_NAME).stat().st_mode) == 0o600
