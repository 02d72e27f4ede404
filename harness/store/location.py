"""Where studies live: a local folder, or a URI on object storage with a local working copy.

``--storage`` and the spec's ``storage`` take a folder or any URI that pyarrow's
filesystems open (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///path``,
``hdfs://...``), and, through fsspec where it is installed, the schemes fsspec knows.
Credentials come from where the provider's own tools look (``AWS_*`` variables, ``~/.aws``,
``GOOGLE_APPLICATION_CREDENTIALS``...): a URI that carries keys is refused, so that no key
reaches a spec, ``study.json`` or Tune's saved state.

A study on object storage is worked on in a local mirror under the cache folder
(``$HARNESS_CACHE``, else ``~/.cache/compression-harness``): the driver writes its tables
there as it does in a local study and :meth:`Location.push` uploads what changed; readers
:meth:`Location.pull` what changed since their last read. Tune's trial folders and
checkpoints go straight to the URI (Tune's own ``storage_filesystem``), from every node.
"""
from __future__ import annotations

import os
import posixpath
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow.fs as pafs

from harness.errors import HarnessError

# A study's files its driver does not mirror: Tune's run folders (written to the storage by
# Tune, from every node), the trials' sample grids, earlier runs' results, and the Optuna
# journal (uploaded at each of Tune's snapshots, not at every write).
NOT_MIRRORED = ("tune", "samples", "previous", "optuna.journal")
_PUSHING = threading.RLock()
SECRET_PARAMS = ("access_key", "secret_key", "session_token", "access_token", "credentials", "password")


class StorageError(HarnessError):
    """A storage URI cannot be opened, or its bucket read or written."""


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "compression-harness").expanduser()


def is_uri(text: str | os.PathLike) -> bool:
    return "://" in str(text)


@dataclass
class Location:
    """A storage root: its filesystem, the root's path in it, and the local folder worked in."""

    uri: str  # as users see it, without a trailing slash
    fs: pafs.FileSystem
    base: str  # the root's path in ``fs``
    local: Path  # the root itself when local; its mirror under the cache otherwise
    _pushed: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)  # file -> (size, mtime) uploaded

    @property
    def remote(self) -> bool:
        return not isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """A path under the root, in the filesystem's terms."""
        parts = tuple(p for p in parts if p)
        return posixpath.join(self.base, *parts) if parts else self.base

    def uri_of(self, *parts: str) -> str:
        """A path under the root as users see it (a URI for object storage)."""
        return posixpath.join(self.uri, *parts) if self.remote else str(self.local.joinpath(*parts))

    def child(self, *parts: str) -> "Location":
        """The location of a folder under this one (a study's, for instance)."""
        return Location(self.uri_of(*parts) if self.remote else str(self.local.joinpath(*parts)), self.fs,
                        self.path(*parts), self.local.joinpath(*parts))

    def parent(self) -> "Location":
        if not self.remote:
            return open_location(self.local.parent)
        return Location(posixpath.dirname(self.uri), self.fs, posixpath.dirname(self.base), self.local.parent)

    def exists(self, *parts: str) -> bool:
        return self._info(self.path(*parts)).type != pafs.FileType.NotFound

    def files(self, *parts: str) -> list[pafs.FileInfo]:
        """Every file under a folder, recursively; none when it does not exist."""
        selector = pafs.FileSelector(self.path(*parts), recursive=True, allow_not_found=True)
        return [i for i in self._call(self.fs.get_file_info, selector) if i.type == pafs.FileType.File]

    def read_bytes(self, *parts: str) -> bytes:
        return self.read_file(self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """One object, whole or not at all (object stores show a put once complete; locally, a rename)."""
        path = self.path(*parts)
        if self.remote:
            with self._call(self.fs.open_output_stream, path) as stream:
                stream.write(data)
            return
        local = Path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(local)

    def delete(self, *parts: str) -> None:
        """A file or a folder, gone; nothing when it was not there."""
        info = self._info(self.path(*parts))
        if info.type == pafs.FileType.Directory:
            self._call(self.fs.delete_dir, info.path)
        elif info.type == pafs.FileType.File:
            self._call(self.fs.delete_file, info.path)

    def move(self, source: str, target: str) -> None:
        """A folder or file to another place under the root (on object storage: copied, then deleted)."""
        if not self.remote:
            Path(self.path(target)).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path(source), self.path(target))
            return
        if self._info(self.path(source)).type == pafs.FileType.File:
            self._call(self.fs.copy_file, self.path(source), self.path(target))
        for info in self.files(source):
            rel = posixpath.relpath(info.path, self.path(source))
            self._call(self.fs.copy_file, info.path, self.path(target, rel))
        self.delete(source)

    def read_file(self, fs_path: str) -> bytes:
        """A file named in the filesystem's own terms (a checkpoint path Tune recorded)."""
        with self._call(self.fs.open_input_stream, fs_path) as stream:
            return stream.read()

    # The local working copy of a remote root.

    def pull(self, *parts: str, skip: tuple[str, ...] = ()) -> bool:
        """Bring a remote file or folder's files into the mirror: those that changed since the last
        pull, and remove the mirror's files the remote no longer has. False if it has none."""
        if not self.remote:
            return Path(self.path(*parts)).exists()
        rel = posixpath.join(*parts) if parts else ""
        info = self._info(self.path(rel))
        found = [info] if info.type == pafs.FileType.File else [
            i for i in self.files(rel) if not _skipped(posixpath.relpath(i.path, self.base), skip)]
        wanted = {posixpath.relpath(i.path, self.base): i for i in found}
        for name in self._local_files(rel, skip):
            if name not in wanted:
                (self.local / name).unlink()
                self._pushed.pop(name, None)
        for name, info in wanted.items():
            target = self.local / name
            stamp = (info.size, info.mtime_ns)
            if target.is_file() and _stamp(target) == stamp:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            self._copy(info.path, str(tmp), self.fs, pafs.LocalFileSystem())
            os.utime(tmp, ns=(info.mtime_ns, info.mtime_ns))  # what the next pull compares
            tmp.replace(target)
            self._pushed[name] = stamp
        return bool(wanted)

    def push(self, *parts: str, skip: tuple[str, ...] = ()) -> None:
        """Upload the mirror's files under a folder (or one file) that changed since this process last
        uploaded or pulled them, and delete the remote files the mirror no longer has."""
        if not self.remote:
            return
        rel = posixpath.join(*parts) if parts else ""
        with _PUSHING:  # the writer's uploads run in a thread of their own (Uploader)
            present = set(self._local_files(rel, skip))
            for name in sorted(present):
                try:
                    stamp = _stamp(self.local / name)
                    if self._pushed.get(name) != stamp:
                        self._copy(str(self.local / name), self.path(name), pafs.LocalFileSystem(), self.fs)
                        self._pushed[name] = stamp
                except (FileNotFoundError, StorageError):
                    if (self.local / name).exists():
                        raise
                    present.discard(name)  # merged or compacted away meanwhile: the next push deletes it
            for name in [n for n in self._pushed if _under(n, rel) and n not in present and not _skipped(n, skip)]:
                self.delete(name)
                del self._pushed[name]

    def _local_files(self, rel: str, skip: tuple[str, ...]) -> Iterator[str]:
        top = self.local / rel
        if top.is_file():
            yield rel
            return
        for folder, _, names in os.walk(top):
            for name in names:
                path = posixpath.relpath(os.path.join(folder, name), self.local)
                if not name.startswith(".") and not _skipped(path, skip):
                    yield path

    # Errors: one line naming the URI and the provider's own words.

    def _info(self, path: str) -> pafs.FileInfo:
        return self._call(self.fs.get_file_info, path)

    def _copy(self, source: str, target: str, source_fs: pafs.FileSystem, target_fs: pafs.FileSystem) -> None:
        self._call(pafs.copy_files, source, target, source_fs, target_fs)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            raise StorageError(f"storage {self.uri}: {provider_words(exc)}") from None


class Uploader:
    """Pushes a study's mirror from a thread of its own, so that a results flush never waits on
    the network: requests that arrive while a push runs are served by the next one, which
    uploads whatever changed by then. A failure is raised at the next request or :meth:`drain`."""

    def __init__(self, location: Location, skip: tuple[str, ...]) -> None:
        self.location, self.skip = location, skip
        self.error: StorageError | None = None
        self._wanted = threading.Condition()
        self._pending = self._busy = False
        threading.Thread(target=self._run, name="harness-uploader", daemon=True).start()

    def request(self) -> None:
        self._raise()
        with self._wanted:
            self._pending = True
            self._wanted.notify()

    def drain(self) -> None:
        """Wait until everything requested so far is uploaded."""
        self.request()
        with self._wanted:
            self._wanted.wait_for(lambda: not self._pending and not self._busy)
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            with self._wanted:
                self._wanted.wait_for(lambda: self._pending)
                self._pending, self._busy = False, True
            try:
                self.location.push(skip=self.skip)
            except StorageError as error:
                self.error = error
            with self._wanted:
                self._busy = False
                self._wanted.notify_all()


def open_location(text: str | os.PathLike) -> Location:
    """A storage root from a folder or URI, or one line saying why it cannot be opened. Opening
    does not touch the storage: :func:`harness.store.lock.probe_storage` does."""
    text = str(text)
    if not is_uri(text) or text.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(text).path) if is_uri(text) else text)
        path = path.expanduser().resolve()
        return Location(str(path), pafs.LocalFileSystem(), str(path), path)
    check_uri(text)
    parsed = urllib.parse.urlparse(text)
    try:
        fs, base = pafs.FileSystem.from_uri(text)
    except (pafs.ArrowInvalid, ValueError) as exc:
        fs, base = _fsspec(text, exc)
    except OSError as exc:
        raise StorageError(f"storage {text}: {provider_words(exc)}") from None
    uri = f"{parsed.scheme}://{parsed.netloc}{parsed.path}".rstrip("/")
    mirror = cache_root() / "storage" / parsed.scheme / parsed.netloc / parsed.path.strip("/")
    return Location(uri, fs, base.rstrip("/"), mirror)


def check_uri(text: str) -> None:
    """The form of a storage URI, without opening it: a bucket, and no credentials in it."""
    if not is_uri(text) or text.startswith("file://"):
        return
    parsed = urllib.parse.urlparse(text)
    query = urllib.parse.parse_qs(parsed.query)
    if secret := [k for k in query if k.lower() in SECRET_PARAMS] or ([parsed.password] if parsed.password else []):
        raise StorageError(f"storage {parsed.scheme}://{parsed.hostname}{parsed.path}: the URI carries "
                           f"credentials ({', '.join('password' if s == parsed.password else s for s in secret)}); "
                           f"give them the way the provider's tools read them (environment, config files), "
                           f"never in a URI or spec")
    if not parsed.scheme.isalnum() or not parsed.netloc:
        raise StorageError(f"storage {text}: not a storage URI (expected SCHEME://BUCKET/PREFIX, "
                           f"e.g. s3://my-bucket/studies)")


def _fsspec(text: str, cause: Exception) -> tuple[pafs.FileSystem, str]:
    """A scheme pyarrow does not know, through fsspec when it is installed and knows it."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise StorageError(f"storage {text}: pyarrow cannot open it ({cause}); for other schemes install "
                           f"fsspec and the scheme's package") from None
    try:
        fs, base = url_to_fs(text)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"storage {text}: neither pyarrow nor fsspec {fsspec.__version__} can open it "
                           f"({str(exc).splitlines()[0]})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), base


def open_study(text: str | os.PathLike) -> Location:
    """A study folder to read (report, leaderboard, export, remeasure): on object storage, its
    files are pulled into the local mirror first, only those that changed since the last read."""
    study = open_location(text)
    if study.remote and not study.pull(skip=NOT_MIRRORED):
        raise StorageError(f"{study.uri}: no study there (no file under it)")
    return study


def provider_words(exc: BaseException) -> str:
    """The storage provider's message, without the request ids and the C++ call chain."""
    text = " ".join(str(exc).split())
    for marker in (" (Request ID", ". Detail:", " Detail:", ": No response body"):
        text = text.split(marker)[0]
    if any(sign in text for sign in ("ACCESS_DENIED", "INVALID_ACCESS_KEY", "SIGNATURE_DOES_NOT_MATCH", "403")):
        text += " (the credentials were refused: check the keys the provider's tools read, e.g. AWS_ACCESS_KEY_ID)"
    return text


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _under(name: str, folder: str) -> bool:
    return folder in ("", ".") or name == folder or name.startswith(folder.rstrip("/") + "/")


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    """Whether a file is in a skipped folder (or is a skipped file) at any depth."""
    return any(part in skip for part in name.split("/"))
