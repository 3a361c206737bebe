"""The official checkpoints and datasets, and a downloader that survives interrupted transfers.

Design:

* Resume. A transfer writes to `<dest>.part`. A later run finds that file and asks only for the missing bytes
  (HTTP `Range: bytes=N-`). A server that answers 200 instead of 206 gets a fresh start from byte zero; a 416
  whose `Content-Range` says the part is already whole counts as done. Failed transfers keep their part file.
* Verification. Once the transfer ends, the SHA-256 of the whole file is checked against a digest: the
  published one, the 6-digit prefix that Meta puts in SAM filenames (the torch.hub convention), or, for files
  with no published digest, the one recorded the first time the file was downloaded into that directory
  (trust on first use, kept in `<directory>/hqsam-sha256.json`). A file that fails the check is deleted, never
  kept under its real name.
* Atomic rename. A verified part file is fsynced and moved onto `dest` with `os.replace`, so `dest` either does
  not exist or is complete; a `dest` that already exists and verifies is returned without using the network.
"""

import argparse
import hashlib
import http.client
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple, Union

from tqdm import tqdm

from .io import atomic_write

PathLike = Union[str, Path]

DIGESTS_FILE = "hqsam-sha256.json"
USER_AGENT = "hqsam-downloader/1"
TIMEOUT = 60.0
CHUNK_SIZE = 1 << 20
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


class DownloadError(RuntimeError):
    """A transfer that failed or a file whose digest does not match."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: where it lives and what its SHA-256 (or the published prefix of it) must be."""

    name: str
    url: str
    sha256: Optional[str] = None
    sha256_prefix: Optional[str] = None
    size_hint: Optional[str] = None
    kind: Literal["checkpoint", "dataset"] = "checkpoint"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


_SAM = "https://dl.fbaipublicfiles.com/segment_anything"
_HQ = "https://huggingface.co/lkeab/hq-sam/resolve/main"
_HQSEG = "https://huggingface.co/sam-hq-team/sam-hq-training/resolve/main/data"
_COCO = "http://images.cocodataset.org"

REGISTRY: Dict[str, RemoteFile] = {
    entry.name: entry
    for entry in (
        RemoteFile("sam_vit_b", f"{_SAM}/sam_vit_b_01ec64.pth", sha256_prefix="01ec64", size_hint="375 MB"),
        RemoteFile("sam_vit_l", f"{_SAM}/sam_vit_l_0b3195.pth", sha256_prefix="0b3195", size_hint="1.2 GB"),
        RemoteFile("sam_vit_h", f"{_SAM}/sam_vit_h_4b8939.pth", sha256_prefix="4b8939", size_hint="2.6 GB"),
        RemoteFile("sam_hq_vit_b", f"{_HQ}/sam_hq_vit_b.pth", size_hint="379 MB"),
        RemoteFile("sam_hq_vit_l", f"{_HQ}/sam_hq_vit_l.pth", size_hint="1.2 GB"),
        RemoteFile("sam_hq_vit_h", f"{_HQ}/sam_hq_vit_h.pth", size_hint="2.6 GB"),
        RemoteFile("sam_hq_vit_tiny", f"{_HQ}/sam_hq_vit_tiny.pth", size_hint="43 MB"),
        RemoteFile("DIS5K", f"{_HQSEG}/DIS5K.zip", size_hint="3.5 GB", kind="dataset"),
        RemoteFile("cascade_psp", f"{_HQSEG}/cascade_psp.zip", size_hint="1.4 GB", kind="dataset"),
        RemoteFile("thin_object_detection", f"{_HQSEG}/thin_object_detection.zip", size_hint="2.5 GB", kind="dataset"),
        RemoteFile("coco_val2017", f"{_COCO}/zips/val2017.zip", size_hint="778 MB", kind="dataset"),
        RemoteFile(
            "coco_annotations_trainval2017",
            f"{_COCO}/annotations/annotations_trainval2017.zip",
            size_hint="241 MB",
            kind="dataset",
        ),
    )
}


def sha256_file(path: PathLike, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(digest: str, sha256: Optional[str], sha256_prefix: Optional[str]) -> Optional[str]:
    """What was expected, if `digest` fails `sha256` or `sha256_prefix`; None if it passes."""
    if sha256 is not None and digest != sha256.lower():
        return sha256.lower()
    if sha256_prefix is not None and not digest.startswith(sha256_prefix.lower()):
        return f"{sha256_prefix.lower()}... (published prefix)"
    return None


def _offline_hint(url: str, dest: Path) -> str:
    return f"without network, fetch {url} by other means and put it at {dest}"


def _start(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _range_start_total(content_range: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """(first byte, total size) from `Content-Range: bytes A-B/TOTAL` or `bytes */TOTAL`; None where absent."""
    if not content_range or not content_range.startswith("bytes "):
        return None, None
    span, _, total = content_range[len("bytes ") :].partition("/")
    start = span.split("-")[0]
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


def _restart(part: Path, why: str) -> None:
    print(f"{part}: {why}; starting again from zero", file=sys.stderr)
    part.unlink()


def _transfer(url: str, part: Path, *, progress: bool, timeout: float, chunk_size: int) -> None:
    """Bring `part` up to the whole remote file, resuming from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _start(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        error.close()
        if _range_start_total(error.headers.get("Content-Range"))[1] == offset:
            return  # the part file already holds every byte
        _restart(part, "the server refused to resume")
        return _transfer(url, part, progress=progress, timeout=timeout, chunk_size=chunk_size)
    length = response.headers.get("Content-Length")
    total = int(length) if length is not None and length.isdigit() else None
    if offset and response.status == 206:
        start, range_total = _range_start_total(response.headers.get("Content-Range"))
        if start != offset:
            response.close()
            _restart(part, "the server resumed at the wrong byte")
            return _transfer(url, part, progress=progress, timeout=timeout, chunk_size=chunk_size)
        total = range_total if range_total is not None else (None if total is None else offset + total)
    elif offset:
        _restart(part, "the server does not support resuming")
        offset = 0
    with response, open(part, "ab" if offset else "wb") as file, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[: -len(".part")],
        disable=not progress,
    ) as bar:
        try:
            while chunk := response.read(chunk_size):
                file.write(chunk)
                bar.update(len(chunk))
        finally:
            file.flush()
            os.fsync(file.fileno())
        size = file.tell()
    if total is not None and size != total:
        raise http.client.IncompleteRead(b"", total - size)


def _fetch(
    url: str,
    dest: Path,
    *,
    sha256: Optional[str],
    sha256_prefix: Optional[str],
    progress: bool,
    timeout: float,
    chunk_size: int,
    mismatch_hint: str = "run the command again to download it afresh",
) -> str:
    """Make `dest` a verified copy of `url` (reusing a `dest` that verifies); return its SHA-256."""
    if dest.is_file():
        digest = sha256_file(dest)
        if _mismatch(digest, sha256, sha256_prefix) is None:
            return digest
        print(f"{dest} exists but does not match its expected SHA-256; removed, downloading it again", file=sys.stderr)
        dest.unlink()  # never leave a bad file under the real name, even if the new download fails
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _transfer(url, part, progress=progress, timeout=timeout, chunk_size=chunk_size)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"HTTP {error.code} {error.reason} for {url}; {_offline_hint(url, dest)}") from None
    except NETWORK_ERRORS as error:
        kept = part.stat().st_size if part.exists() else 0
        if isinstance(error, http.client.IncompleteRead):
            reason = f"connection closed with {error.expected} bytes still to come"
        elif isinstance(error, urllib.error.URLError):
            reason = str(error.reason)
        else:
            reason = str(error) or type(error).__name__
        raise DownloadError(
            f"download of {url} failed ({reason}); {kept} bytes kept in {part}, so running again resumes there; "
            f"{_offline_hint(url, dest)}"
        ) from None
    digest = sha256_file(part)
    expected = _mismatch(digest, sha256, sha256_prefix)
    if expected is not None:
        part.unlink()
        raise DownloadError(
            f"SHA-256 mismatch for {url}: expected {expected}, got {digest}; the bad file was removed, "
            f"{mismatch_hint}"
        )
    os.replace(part, dest)
    return digest


def download_url(
    url: str,
    dest: PathLike,
    *,
    sha256: Optional[str] = None,
    sha256_prefix: Optional[str] = None,
    progress: bool = True,
    timeout: float = TIMEOUT,
    chunk_size: int = CHUNK_SIZE,
) -> Path:
    """Download `url` to `dest`, resuming a `.part` file left by an earlier run, verifying the digest if given."""
    dest = Path(dest)
    _fetch(
        url, dest, sha256=sha256, sha256_prefix=sha256_prefix, progress=progress, timeout=timeout,
        chunk_size=chunk_size,
    )
    return dest


def _entry(name: str) -> RemoteFile:
    if name not in REGISTRY:
        raise ValueError(f"unknown file {name!r}; valid names: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def default_directory(kind: str) -> Path:
    """`$HQSAM_HOME` if set, else `./checkpoints` for checkpoints and `./data/downloads` for datasets."""
    home = os.environ.get("HQSAM_HOME")
    if home:
        return Path(home)
    return Path("checkpoints") if kind == "checkpoint" else Path("data/downloads")


def _read_digests(directory: Path) -> Dict[str, str]:
    path = directory / DIGESTS_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DownloadError(f"{path} is not valid JSON ({error}); fix or delete it") from None


def _record_digest(directory: Path, filename: str, digest: str) -> None:
    """Add `filename -> digest` to the directory's digest file, replacing it atomically."""
    digests = {**_read_digests(directory), filename: digest}
    with atomic_write(directory / DIGESTS_FILE, "w") as file:
        json.dump(digests, file, indent=2, sort_keys=True)
        file.write("\n")


def download(
    name: str, directory: Optional[PathLike] = None, *, base_url: Optional[str] = None, progress: bool = True
) -> Path:
    """Download the registry file `name` into `directory` (see `default_directory`) and return its path.

    `base_url` (else `$HQSAM_MIRROR`) replaces the address up to the filename, for mirrors. A file with no
    published SHA-256 is checked against the digest recorded at its first download there, or records it.
    """
    entry = _entry(name)
    directory = Path(directory) if directory is not None else default_directory(entry.kind)
    mirror = base_url or os.environ.get("HQSAM_MIRROR")
    url = f"{mirror.rstrip('/')}/{entry.filename}" if mirror else entry.url
    recorded = _read_digests(directory).get(entry.filename)
    hint = "run the command again to download it afresh"
    if entry.sha256 is None and recorded is not None:
        hint = (
            f"the expected digest was recorded in {directory / DIGESTS_FILE} at the first download; if the new "
            "file is legitimate, delete its entry there and run the command again"
        )
    digest = _fetch(
        url, directory / entry.filename, sha256=entry.sha256 or recorded, sha256_prefix=entry.sha256_prefix,
        progress=progress, timeout=TIMEOUT, chunk_size=CHUNK_SIZE, mismatch_hint=hint,
    )
    if entry.sha256 is None and recorded is None:
        _record_digest(directory, entry.filename, digest)
    return directory / entry.filename


def verify(name: str, directory: Optional[PathLike] = None) -> Path:
    """Check a downloaded registry file against its published or recorded digest; return its path.

    A file with neither (never downloaded through `download`) passes on existence alone.
    """
    entry = _entry(name)
    directory = Path(directory) if directory is not None else default_directory(entry.kind)
    path = directory / entry.filename
    if not path.is_file():
        raise DownloadError(f"{path} does not exist; run `hqsam download {name}`")
    digest = sha256_file(path)
    expected = _mismatch(digest, entry.sha256 or _read_digests(directory).get(entry.filename), entry.sha256_prefix)
    if expected is not None:
        raise DownloadError(f"SHA-256 mismatch for {path}: expected {expected}, got {digest}")
    return path


def _list_registry() -> None:
    width = max(len(name) for name in REGISTRY)
    for entry in REGISTRY.values():
        print(f"{entry.name:<{width}}  {entry.kind:<10}  {entry.size_hint or '?':>7}  {entry.url}")


def _run_download_command(args: argparse.Namespace) -> int:
    if args.list:
        _list_registry()
        return 0
    if not args.names:
        print("error: name at least one file to download (`hqsam download --list` shows them)", file=sys.stderr)
        return 2
    try:
        for name in args.names:
            _entry(name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        for name in args.names:
            print(download(name, args.dir, base_url=args.mirror, progress=args.progress))
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def add_download_command(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Register `download NAME [NAME ...] [--dir DIR] [--mirror URL] [--no-progress]` and `download --list`."""
    parser = subparsers.add_parser(
        "download",
        help="download official checkpoints and datasets",
        description="Download official checkpoints and datasets (resumable, SHA-256 verified).",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="registry names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the available files and exit")
    parser.add_argument(
        "--dir", type=Path, default=None,
        help="destination directory (default: $HQSAM_HOME, else ./checkpoints or ./data/downloads)",
    )
    parser.add_argument("--mirror", default=None, help="base URL that replaces the official one (or $HQSAM_MIRROR)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=_run_download_command)
    return parser
