"""Keywords that copy files into and out of guests through the QEMU guest agent."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ConfigurationError, GuestFileError
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.qga.files import DEFAULT_TIMEOUT, GuestFiles, TransferProgress, TransferResult


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "file"


def guest_basename(guest_path: str) -> str:
    """The last component of a Linux or Windows guest path (``/tmp/a.log`` and ``C:\\x\\a.log`` give ``a.log``)."""
    name = re.split(r"[\\/]", guest_path.rstrip("/\\"))[-1]
    return _safe(name)


class FilesKeywords:
    """Upload and download guest files (qemu-ga ``guest-file-*``: 96 KiB per write, 1 MiB per read)."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    def _files(self, vm: str) -> GuestFiles:
        def report(progress: TransferProgress) -> None:
            logger.info(str(progress))

        return GuestFiles(self.ctx.agent(vm), progress=report)

    def _timeout(self, timeout: timedelta | None) -> float:
        """A transfer's timeout: the given one, else 5 minutes (both times the library's timeout scale)."""
        return self.ctx.seconds(timeout if timeout is not None else timedelta(seconds=DEFAULT_TIMEOUT))

    @keyword("Upload File To Guest")
    def upload_file_to_guest(
        self,
        vm: str,
        local_path: str,
        guest_path: str,
        mode: str | None = None,
        timeout: timedelta | None = None,
        checksum: bool = False,
    ) -> TransferResult:
        """Copies the local file ``local_path`` to ``guest_path`` in ``vm``, replacing it; returns the result.

        The file goes through the QEMU guest agent (libvirt, so remote hosts work, and Linux and Windows
        guests) in chunks of 96 KiB, so big files work (libvirt breaks the guest agent's channel on bigger
        commands). Afterwards the size of the guest file is compared with the local one.

        Arguments:
        - ``local_path``: the file on the machine running the tests.
        - ``guest_path``: full path in the guest; its directory must exist.
        - ``mode``: octal permissions set with ``chmod`` afterwards, e.g. ``0755`` (Linux guests).
        - ``timeout``: for the whole transfer (default 5 minutes, times ``timeout_scale``). On timeout the
          keyword fails saying how much was copied; the guest file is left incomplete.
        - ``checksum``: also compare the guest's ``sha256sum`` with the local file's (Linux guests).

        Fails clearly when the guest path's directory does not exist, when the guest agent may not write
        there, or when the guest agent does not respond. The result has ``size``, ``seconds``, ``chunks``
        and ``sha256`` (of the local file).

        | =Keyword / Assignment= | =Argument=           | =Argument= | =Argument=         | =Argument=    | =Argument= |
        | Upload File To Guest   | atp-lab-01           | tool.sh    | /opt/tool.sh       | mode=0755     |            |
        | ${result} =            | Upload File To Guest | atp-lab-01 | ${CURDIR}/data.bin | /tmp/data.bin | timeout=9m |
        | Log                    | ${result.sha256}     |            |                    |               |            |
        """
        source = Path(local_path)
        logger.info(f"Uploading '{source}' to '{guest_path}' in VM '{vm}'.")
        result = self._files(vm).upload(
            source, guest_path, mode=mode, timeout=self._timeout(timeout), checksum=checksum
        )
        logger.info(str(result) + (" Guest checksum verified." if result.checksum_verified else ""))
        return result

    @keyword("Download File From Guest")
    def download_file_from_guest(
        self,
        vm: str,
        guest_path: str,
        local_path: str | None = None,
        timeout: timedelta | None = None,
    ) -> str:
        """Copies ``guest_path`` from ``vm`` to a local file and returns the local file's path.

        ``local_path`` defaults to ``${OUTPUT DIR}/guest-files/<vm>/<file name>``; when it is an existing
        directory (or ends with ``/``) the guest file's name is added. Parent directories are created. The
        file is written under a temporary name first, so a failed download never leaves a truncated file.

        The file is read in chunks of at most 1 MiB through the QEMU guest agent, so big files work.
        ``timeout`` is for the whole transfer (default 5 minutes, times ``timeout_scale``). Fails clearly
        when the guest file does not exist, cannot be read, or the guest agent does not respond.

        | =Keyword / Assignment=   | =Argument=               | =Argument= | =Argument=      | =Argument=          |
        | ${path} =                | Download File From Guest | atp-lab-01 | /var/log/syslog |                     |
        | ${path} =                | Download File From Guest | atp-lab-01 | /tmp/data.bin   | ${TEMPDIR}/data.bin |
        | File Should Not Be Empty | ${path}                  |            |                 |                     |
        """
        target = self._local_target(vm, guest_path, local_path)
        logger.info(f"Downloading '{guest_path}' from VM '{vm}' to '{target}'.")
        result = self._files(vm).download_to(guest_path, target, timeout=self._timeout(timeout))
        logger.info(str(result))
        return str(target)

    def _local_target(self, vm: str, guest_path: str, local_path: str | None) -> Path:
        if not guest_path.strip():
            raise ConfigurationError("Download File From Guest needs a guest file path.")
        name = guest_basename(guest_path)
        if local_path is None or not str(local_path).strip():
            return self.ctx.output_dir() / "guest-files" / _safe(vm) / name
        text = str(local_path)
        target = Path(text)
        if not target.is_absolute():
            target = self.ctx.output_dir() / target
        if text.endswith(("/", "\\")) or target.is_dir():
            target = target / name
        return target

    @keyword("Guest File Should Exist")
    def guest_file_should_exist(self, vm: str, guest_path: str, timeout: timedelta | None = None) -> None:
        """Fails unless ``guest_path`` exists in ``vm`` and the guest agent can open it for reading.

        ``timeout`` bounds the guest agent's answer (default: the library timeout); a guest agent that does
        not answer fails too, naming the VM.

        | =Keyword= | =Argument= | =Argument= |
        | Guest File Should Exist | atp-lab-01 | /tmp/data.bin |
        """
        if not GuestFiles(self.ctx.agent(vm)).exists(guest_path, timeout=self.ctx.seconds(timeout)):
            raise GuestFileError(f"Guest file '{guest_path}' does not exist in VM '{vm}'.")
        logger.info(f"Guest file '{guest_path}' exists in VM '{vm}'.")

    @keyword("Guest File Should Not Exist")
    def guest_file_should_not_exist(self, vm: str, guest_path: str, timeout: timedelta | None = None) -> None:
        """Fails if ``guest_path`` exists in ``vm``.

        ``timeout`` bounds the guest agent's answer (default: the library timeout); a guest agent that does
        not answer fails too, naming the VM.

        | =Keyword= | =Argument= | =Argument= |
        | Guest File Should Not Exist | atp-lab-01 | /tmp/stale.lock |
        """
        if GuestFiles(self.ctx.agent(vm)).exists(guest_path, timeout=self.ctx.seconds(timeout)):
            raise GuestFileError(f"Guest file '{guest_path}' exists in VM '{vm}' but should not.")
        logger.info(f"Guest file '{guest_path}' does not exist in VM '{vm}'.")
