"""FilesKeywords (thin): default local paths, timeouts and existence checks over the fake guest file system."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from fakes import FakeTarget
from test_files import FakeGuestFS

from ATPLibrary.errors import GuestFileError, GuestFileNotFoundError
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.keywords.files import FilesKeywords, guest_basename
from ATPLibrary.qga import GuestAgent


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FilesKeywords, FakeGuestFS, Path]:
    fs = FakeGuestFS()
    ctx = LibraryContext(timeout=timedelta(seconds=30))
    monkeypatch.setattr(ctx, "agent", lambda vm: GuestAgent(FakeTarget(vm), agent_command=fs.command))
    out = tmp_path / "out"
    monkeypatch.setattr(ctx, "output_dir", lambda: out)
    return FilesKeywords(ctx), fs, tmp_path


def test_upload_then_download_to_the_default_place(setup: tuple[FilesKeywords, FakeGuestFS, Path]) -> None:
    keywords, fs, tmp_path = setup
    local = tmp_path / "data.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    local.write_bytes(data)
    result = keywords.upload_file_to_guest("desk-7", str(local), "/tmp/data.bin", mode="0600", checksum=True)
    assert result.size == len(data) and result.checksum_verified
    assert fs.modes == {"/tmp/data.bin": 0o600}
    path = keywords.download_file_from_guest("desk-7", "/tmp/data.bin")
    assert path == str(tmp_path / "out" / "guest-files" / "desk-7" / "data.bin")
    assert Path(path).read_bytes() == data


def test_download_into_a_directory_or_a_relative_path(setup: tuple[FilesKeywords, FakeGuestFS, Path]) -> None:
    keywords, fs, tmp_path = setup
    fs.files["/var/log/app.log"] = bytearray(b"log\n")
    assert keywords.download_file_from_guest("desk-7", "/var/log/app.log", str(tmp_path)) == str(tmp_path / "app.log")
    assert keywords.download_file_from_guest("desk-7", "/var/log/app.log", "logs/") == str(
        tmp_path / "out" / "logs" / "app.log"
    )
    assert keywords.download_file_from_guest("desk-7", "/var/log/app.log", str(tmp_path / "x.txt")) == str(
        tmp_path / "x.txt"
    )


def test_download_of_a_missing_file_fails_clearly(setup: tuple[FilesKeywords, FakeGuestFS, Path]) -> None:
    keywords, _, tmp_path = setup
    with pytest.raises(GuestFileNotFoundError, match="'/tmp/none' does not exist"):
        keywords.download_file_from_guest("desk-7", "/tmp/none")
    assert not (tmp_path / "out" / "guest-files" / "desk-7" / "none").exists()


def test_guest_file_should_exist_and_not_exist(setup: tuple[FilesKeywords, FakeGuestFS, Path]) -> None:
    keywords, fs, _ = setup
    fs.files["/tmp/a"] = bytearray(b"x")
    keywords.guest_file_should_exist("desk-7", "/tmp/a")
    keywords.guest_file_should_not_exist("desk-7", "/tmp/b")
    with pytest.raises(GuestFileError, match="'/tmp/b' does not exist in VM 'desk-7'"):
        keywords.guest_file_should_exist("desk-7", "/tmp/b")
    with pytest.raises(GuestFileError, match="should not"):
        keywords.guest_file_should_not_exist("desk-7", "/tmp/a")


def test_transfer_timeout_defaults_to_five_minutes_times_the_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = LibraryContext(timeout=timedelta(seconds=30), timeout_scale=2)
    keywords = FilesKeywords(ctx)
    assert keywords._timeout(None) == 600
    assert keywords._timeout(timedelta(seconds=10)) == 20


@pytest.mark.parametrize(
    ("path", "name"), [("/tmp/a.log", "a.log"), ("C:\\Temp\\b.txt", "b.txt"), ("/var/log/", "log"), ("/", "file")]
)
def test_guest_basename(path: str, name: str) -> None:
    assert guest_basename(path) == name


def test_keyword_names() -> None:
    names = {getattr(m, "robot_name", None) for m in vars(FilesKeywords).values()}
    assert {
        "Upload File To Guest",
        "Download File From Guest",
        "Guest File Should Exist",
        "Guest File Should Not Exist",
    } <= names
