"""Writing files safely and reading them checked: the layer every other module writes through.

Every writer goes through :func:`atomic_write`, so an interrupted or failed write never
leaves a partial file at the target path; :func:`check_output` refuses an unusable output
path before any work is done. Bad files raise :class:`densepac.errors.InputError` with a
one-line message naming the file and the fix. OpenCV may also log its own decoder warnings
to stderr; applications that want a quiet stderr (the CLI) lower ``cv2.utils.logging`` at
start-up, a library must not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from densepac.errors import InputError, InputTypeError

PathLike = Union[str, "os.PathLike[str]"]


def _check_target(path: Path, overwrite: bool) -> None:
    """Raise InputError when ``path`` cannot be (re)written."""
    parent = path.parent
    if not parent.is_dir():
        raise InputError(
            f"cannot write {path}: directory {parent} does not exist; create it first or choose another output path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot write {path}: directory {parent} is not writable; fix its "
            "permissions or choose another output path"
        )
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory; give a file name instead")
    if path.exists() and not overwrite:
        raise InputError(
            f"{path} already exists; choose another output path or allow overwriting (overwrite=True, --overwrite)"
        )


def check_output(
    path: PathLike,
    extensions: Sequence[str] | None = None,
    kind: str = "output",
    overwrite: bool = True,
) -> Path:
    """Raise InputError now if ``path`` could not be written later; return it as a Path.

    Checks, in this order: ``path`` is not a directory, its extension is one of
    ``extensions`` (when given), its directory exists and is writable, and it does not exist
    unless ``overwrite``. Commands call this for every output before any slow work, so a
    bad output path fails at once and never after another output has been written.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"cannot write {p}: it is a directory; give a file name instead")
    if extensions is not None:
        require_extension(p, extensions, kind)
    _check_target(p, overwrite)
    return p


@contextlib.contextmanager
def remove_on_failure(paths: Sequence[PathLike]) -> Iterator[None]:
    """Inside ``with``, a failure removes ``paths`` (outputs of the same command already written).

    A command that writes several outputs either leaves all of them or none.
    """
    try:
        yield
    except BaseException:
        for path in paths:
            Path(path).unlink(missing_ok=True)
        raise


def check_output_folder(path: PathLike, flag: str, parents: bool = True) -> Path:
    """``path`` as a folder that exists or can be created and written; ``flag`` names the option.

    Refuses a file in the way, and a missing or read-only place to create it; with
    ``parents=False`` the folder's parent must already exist.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p} is a file; give a folder path (it is created if missing)")
    if not parents and not p.is_dir() and not p.parent.is_dir():
        raise InputError(f"{p.parent} does not exist; create it or choose another {flag} folder")
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {p}: {parent} is a file, so the folder cannot be created; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {p}: {parent} is not writable; fix its permissions or choose another folder")
    return p


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a completed rename survives a crash (POSIX only)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems (network mounts) refuse fsync on directories; the data is
        # already safe in the file, so this is best effort.
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    The temporary name is ``.<stem>.tmp<random><suffix>`` in the same directory, so writers
    that pick a format from the extension still work and the final ``os.replace`` stays on
    one filesystem (atomic). The file is fsynced before the rename. On any exception the
    temporary file is removed and the target is left untouched.

    Raises InputError when the parent directory is missing or not writable, when ``path``
    is a directory, or when ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    _check_target(target, overwrite)
    # Created with O_EXCL and mode 0o666 so the final file gets the user's umask, unlike
    # tempfile.mkstemp's private 0o600.
    while True:
        tmp = target.with_name(f".{target.stem}.tmp{secrets.token_hex(4)}{target.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(
                f"cannot write {target}: {exc.strerror}; check the directory's permissions and free space"
            ) from exc
        os.close(fd)
        break
    try:
        yield tmp
        # Reopened read-write because Windows refuses fsync on read-only handles.
        with open(tmp, "r+b") as handle:
            os.fsync(handle.fileno())
        if not overwrite and target.exists():
            # Something created the target while we were writing.
            raise InputError(
                f"{target} appeared while it was being written; choose another output "
                "path or allow overwriting (overwrite=True, --overwrite)"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def write_bytes(path: Path, payload: bytes, overwrite: bool) -> None:
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(payload)


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def require_extension(path: Path, extensions: Sequence[str], kind: str) -> str:
    suffix = _suffix(path)
    if suffix not in extensions:
        raise InputError(
            f"{path}: unsupported {kind} file extension '{suffix or '(none)'}'; use one of {', '.join(extensions)}"
        )
    return suffix


def check_input_file(path: PathLike, kind: str, extensions: Sequence[str] = ()) -> Path:
    """``path`` as a Path to an existing regular file; anything else is an InputError naming it.

    Refused before anything opens it: a wrong type, a missing file or broken link, a symlink
    loop, a folder, and special files (a named pipe would block the reader forever).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InputTypeError(f"{kind} path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{p}: the symlink loops back on itself; point it at a real {kind} file") from None
        if p.is_symlink():
            raise InputError(f"{p}: the symlink points to a missing file; fix the link or the path") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise InputError(f"{p}: no such {kind} file; check the path") from None
        raise InputError(f"{p}: cannot read the {kind} file ({exc.strerror}); check its permissions") from None
    wanted = f"one {'/'.join(extensions)} file" if extensions else f"a {kind} file"
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p} is a directory, not {_article(kind)} {kind} file; give the path of {wanted} inside it")
    if not stat.S_ISREG(st.st_mode):
        what = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise InputError(f"{p} is {what}, not a regular file; save the {kind} to a file and pass that")
    return p


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def read_bytes(path: PathLike, extensions: Sequence[str], kind: str) -> tuple[Path, str, bytes]:
    """Check that ``path`` is an existing, non-empty regular file with a known extension; read it."""
    p = check_input_file(path, kind, extensions)
    suffix = require_extension(p, extensions, kind)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the {kind} file ({exc.strerror}); check its permissions") from exc
    if not data:
        raise InputError(f"{p}: the {kind} file is empty; re-export or re-download it")
    return p, suffix, data


def corrupt_file_error(path: Path, kind: str, what: str) -> InputError:
    return InputError(
        f"{path}: cannot decode the {kind} file as {what} (truncated or corrupt); re-export or re-download it"
    )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_is_complete(data: bytes) -> bool:
    """Whether a PNG's chunks run whole from the signature to ``IEND``.

    Checked before decoding because libpng reports a truncated file on stderr itself
    ("libpng error: ...") before OpenCV returns, and a library must not write there.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return False
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunk = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if pos > len(data):
            return False
        if chunk == b"IEND":
            return True
    return False


def cv2_decode(path: Path, data: bytes, kind: str, what: str) -> np.ndarray:
    """Decode an image file's bytes with OpenCV (any bit depth and channel count kept)."""
    if data.startswith(_PNG_SIGNATURE) and not png_is_complete(data):
        raise corrupt_file_error(path, kind, what)
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise corrupt_file_error(path, kind, what) from exc
    if arr is None or arr.size == 0:
        raise corrupt_file_error(path, kind, what)
    return arr


def cv2_encode(path: Path, suffix: str, arr: np.ndarray, params: Sequence[int] = ()) -> bytes:
    try:
        ok, buf = cv2.imencode(suffix, arr, list(params))
    except cv2.error as exc:
        raise InputError(
            f"cannot encode {path} as {suffix} ({arr.dtype}, shape {arr.shape}); choose another file format"
        ) from exc
    if not ok:
        raise InputError(f"cannot encode {path} as {suffix}; choose another file format")
    return buf.tobytes()


UINT16_MAX = 65535


def finite_or_zero(arr: np.ndarray) -> np.ndarray:
    """float32 copy of ``arr`` with non-finite values replaced by 0 (missing)."""
    out = np.array(arr, dtype=np.float32, copy=True)
    out[~np.isfinite(out)] = 0.0
    return out
