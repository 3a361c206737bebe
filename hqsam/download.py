"""The official checkpoints and datasets, and a downloader that survives interrupted transfers.

Design:

* Resume. A transfer writes to `<dest>.part`. A later run finds that file and asks only for the missing bytes
  (HTTP `Range: bytes=N-`). A server that answers 200 instead of 206 gets a fresh start from byte zero; a 416
  whose `Content-Range` says the part is already whole counts as done. Failed transfers keep their part file.
* Verification. A file's SHA-256 and size are checked against the first of: the `SHA256SUMS` at the root of the
  mirror in use (`base_url`, `--mirror`, `$HQSAM_MIRROR`; `sha256sum`'s format; a 404 means it has none), for
  the files it lists; the digest and size pinned in `REGISTRY` (the hex in SAM's filenames is the start of an
  MD5, not of a SHA-256); the digest recorded the first time the file was downloaded into that directory (trust
  on first use, kept in `<directory>/hqsam-sha256.json`). Hugging Face's `resolve` URLs redirect to a CDN, and
  the redirect (or the final response) carries the LFS file's SHA-256 and size in `X-Linked-Etag` and
  `X-Linked-Size`: the file must match them too, and where they disagree with a digest known beforehand nothing
  is downloaded.
* Move aside, never delete. A file that fails its check, a finished download or a `dest` already there (perhaps
  placed by hand), is renamed `<dest>.bad-<first 12 hex of its SHA-256>` beside it, so it is never kept under its
  real name and never lost. Only a stale part file that the server will not resume is restarted from zero.
* Atomic rename. A verified part file is fsynced and moved onto `dest` with `os.replace`, so `dest` either does
  not exist or is complete; a `dest` that already exists and passes the registry's or the recorded digest is
  returned without using the network (the mirror's `SHA256SUMS` is fetched, once per `download` call, only when
  it does not).
"""

import hashlib
import http.client
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO, Dict, Iterable, List, Literal, Optional, Tuple, Union

from tqdm import tqdm

from .io import atomic_write

PathLike = Union[str, Path]

DIGESTS_FILE = "hqsam-sha256.json"
SUMS_FILE = "SHA256SUMS"
USER_AGENT = "hqsam-downloader/1"
TIMEOUT = 60.0
CHUNK_SIZE = 1 << 20
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)
AFRESH = "run the command again to download it afresh"


class DownloadError(RuntimeError):
    """A transfer that failed or a file whose digest or size does not match."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: where it lives and, where pinned, its SHA-256 and size in bytes."""

    name: str
    url: str
    sha256: Optional[str] = None
    size: Optional[int] = None
    size_hint: Optional[str] = None  # for `--list` where `size` is not pinned
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
        RemoteFile(
            "sam_vit_b", f"{_SAM}/sam_vit_b_01ec64.pth", size=375042383,
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        ),
        RemoteFile(
            "sam_vit_l", f"{_SAM}/sam_vit_l_0b3195.pth", size=1249524607,
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        RemoteFile(
            "sam_vit_h", f"{_SAM}/sam_vit_h_4b8939.pth", size=2564550879,
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
        # MobileSAM (TinyViT), the SAM that Light HQ-SAM (sam_hq_vit_tiny) was trained on; digest and size as
        # other projects that download this file pin them (e.g. micro-sam's vit_t).
        RemoteFile(
            "mobile_sam", "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            size=40728226, sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        ),
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


@dataclass(frozen=True)
class _Expected:
    """What a file must be (None: not known), where that comes from, and what to do if it is not."""

    sha256: Optional[str]
    size: Optional[int]
    source: str
    hint: str = AFRESH


_UNKNOWN = _Expected(None, None, "nothing")


def sha256_file(path: PathLike, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_sha256sums(text: str) -> Dict[str, str]:
    """Filename -> SHA-256 from `sha256sum`'s output (`<64 hex>  NAME`, or `<64 hex> *NAME` in binary mode)."""
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line)
        if match is None:
            raise ValueError(f"line {number} is not `<64 hex digits>  <filename>` as sha256sum writes: {line!r}")
        sums[match[2]] = match[1].lower()
    return sums


def write_sha256sums(folder: PathLike, filenames: Iterable[str]) -> Path:
    """Write `folder/SHA256SUMS` for `filenames` (files in `folder`) as `sha256sum` does, sorted; return its path."""
    path = Path(folder) / SUMS_FILE
    lines = [f"{sha256_file(path.parent / name)}  {name}\n" for name in sorted(filenames)]
    with atomic_write(path, "w") as file:
        file.writelines(lines)
    return path


def _mismatch(what: str, sha256: Optional[str], size: Optional[int], expected: _Expected) -> Optional[str]:
    """Why a file `what` of `sha256` and `size` (None: unknown) fails `expected`; None if it passes."""
    if size is not None and expected.size is not None and size != expected.size:
        return f"size mismatch for {what}: expected {expected.size} bytes ({expected.source}), got {size}"
    if sha256 is not None and expected.sha256 is not None and sha256 != expected.sha256:
        return f"SHA-256 mismatch for {what}: expected {expected.sha256} ({expected.source}), got {sha256}"
    return None


def _passes(path: Path, expected: _Expected) -> bool:
    """True if `path` exists and matches a known digest."""
    return (
        expected.sha256 is not None and path.is_file()
        and _mismatch(str(path), sha256_file(path), path.stat().st_size, expected) is None
    )


def _move_aside(path: Path, dest: Path, digest: str) -> Path:
    """Rename the failing `path` (`dest` or its part file) to `dest.bad-<digest prefix>`, keeping its bytes."""
    bad = dest.with_name(f"{dest.name}.bad-{digest[:12]}")
    os.replace(path, bad)
    return bad


def _offline_hint(url: str, dest: Path) -> str:
    return f"without network, fetch {url} by other means and put it at {dest}"


def _reason(error: Exception) -> str:
    """A network error in a few words."""
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed with {error.expected} bytes still to come"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib's default, keeping each redirect response's headers in `hops`."""

    def __init__(self, hops: List[Message]) -> None:
        self.hops = hops

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> Optional[urllib.request.Request]:
        self.hops.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _start(url: str, offset: int, timeout: float, hops: List[Message]) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    opener = urllib.request.build_opener(_RecordRedirects(hops))
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)


def _server_claim(headers: Iterable[Message]) -> _Expected:
    """The SHA-256 and size that Hugging Face sends of an LFS file, on a redirect or on the final response."""
    sha256 = size = None
    for message in headers:
        etag = (message.get("X-Linked-Etag") or "").removeprefix("W/").strip('"').lower()
        if re.fullmatch("[0-9a-f]{64}", etag):
            sha256 = etag
        linked_size = message.get("X-Linked-Size") or ""
        if linked_size.isdigit():
            size = int(linked_size)
    return _Expected(sha256, size, "sent by the server in X-Linked-Etag/X-Linked-Size")


def _agreeing_claim(url: str, headers: Iterable[Message], known: _Expected) -> _Expected:
    """The server's claim about `url`; a DownloadError naming both if it contradicts what was `known`."""
    claim = _server_claim(headers)
    contradiction = _mismatch(f"the X-Linked-Etag/X-Linked-Size headers of {url}", claim.sha256, claim.size, known)
    if contradiction is not None:
        raise DownloadError(f"{contradiction}; the server offers another file than expected, nothing was downloaded")
    return claim


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


def _transfer(
    url: str, part: Path, known: _Expected, *, progress: bool, timeout: float, chunk_size: int
) -> _Expected:
    """Bring `part` up to the whole remote file, resuming from its current size; return what the server claims."""
    offset = part.stat().st_size if part.exists() else 0
    hops: List[Message] = []
    try:
        response = _start(url, offset, timeout, hops)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        error.close()
        claim = _agreeing_claim(url, [*hops, error.headers], known)
        if _range_start_total(error.headers.get("Content-Range"))[1] == offset:
            return claim  # the part file already holds every byte
        _restart(part, "the server refused to resume")
        return _transfer(url, part, known, progress=progress, timeout=timeout, chunk_size=chunk_size)
    with response:
        claim = _agreeing_claim(url, [*hops, response.headers], known)
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        if offset and response.status == 206:
            start, range_total = _range_start_total(response.headers.get("Content-Range"))
            if start != offset:
                response.close()
                _restart(part, "the server resumed at the wrong byte")
                return _transfer(url, part, known, progress=progress, timeout=timeout, chunk_size=chunk_size)
            total = range_total if range_total is not None else (None if total is None else offset + total)
        elif offset:
            _restart(part, "the server does not support resuming")
            offset = 0
        with open(part, "ab" if offset else "wb") as file, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name[: -len(".part")], disable=not progress,
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
    return claim


def _fetch(url: str, dest: Path, expected: _Expected, *, progress: bool, timeout: float, chunk_size: int) -> str:
    """Make `dest` a verified copy of `url` (reusing a `dest` that verifies); return its SHA-256."""
    if dest.is_file():
        digest = sha256_file(dest)
        failure = _mismatch(str(dest), digest, dest.stat().st_size, expected)
        if failure is None:
            return digest
        print(f"{failure}; moved aside to {_move_aside(dest, dest, digest)}, downloading it again", file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        claim = _transfer(url, part, expected, progress=progress, timeout=timeout, chunk_size=chunk_size)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"HTTP {error.code} {error.reason} for {url}; {_offline_hint(url, dest)}") from None
    except NETWORK_ERRORS as error:
        kept = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"download of {url} failed ({_reason(error)}); {kept} bytes kept in {part}, so running again resumes "
            f"there; {_offline_hint(url, dest)}"
        ) from None
    digest, size = sha256_file(part), part.stat().st_size
    for check in (expected, claim):
        failure = _mismatch(url, digest, size, check)
        if failure is not None:  # the error is the one line that says where the file went
            raise DownloadError(f"{failure}; moved aside to {_move_aside(part, dest, digest)}; {check.hint}")
    os.replace(part, dest)
    return digest


def download_url(
    url: str,
    dest: PathLike,
    *,
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    progress: bool = True,
    timeout: float = TIMEOUT,
    chunk_size: int = CHUNK_SIZE,
) -> Path:
    """Download `url` to `dest`, resuming a `.part` file left by an earlier run, verifying digest and size if given."""
    dest = Path(dest)
    expected = _Expected(sha256 and sha256.lower(), size, "given")
    _fetch(url, dest, expected, progress=progress, timeout=timeout, chunk_size=chunk_size)
    return dest


def registry_entry(name: str) -> RemoteFile:
    """The registry file `name`; ValueError naming the valid names otherwise."""
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
    """Make `filename -> digest` part of the directory's digest file, replacing it atomically if it changes."""
    digests = _read_digests(directory)
    if digests.get(filename) == digest:
        return
    with atomic_write(directory / DIGESTS_FILE, "w") as file:
        json.dump({**digests, filename: digest}, file, indent=2, sort_keys=True)
        file.write("\n")


def _expected(entry: RemoteFile, directory: Path) -> _Expected:
    """The registry's pinned digest and size for `entry`, else the digest recorded at its first download."""
    if entry.sha256 is not None:
        return _Expected(entry.sha256, entry.size, "pinned in hqsam's registry")
    recorded = _read_digests(directory).get(entry.filename)
    if recorded is None:
        return _UNKNOWN
    return _Expected(
        recorded, None, f"recorded in {directory / DIGESTS_FILE} at the first download",
        "if the new file is legitimate, delete its entry there and run the command again",
    )


def _mirror_listing(mirror: str, filename: str) -> Optional[_Expected]:
    """The digest that the mirror's `SHA256SUMS` lists for `filename`; None if it lists none or has no such file."""
    url = f"{mirror}/{SUMS_FILE}"
    try:
        with _start(url, 0, TIMEOUT, []) as response:
            sums = read_sha256sums(response.read().decode())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise DownloadError(f"HTTP {error.code} {error.reason} for {url}; fix the mirror or go without it") from None
    except NETWORK_ERRORS as error:
        raise DownloadError(f"could not fetch {url} ({_reason(error)}); check the mirror's address") from None
    except ValueError as error:  # also a body that is not text
        raise DownloadError(f"{url} is malformed: {error}; fix the mirror or go without it") from None
    if filename not in sums:
        return None
    return _Expected(sums[filename], None, f"listed in {url}", "fix the mirror's SHA256SUMS or go without the mirror")


def download(
    name: str, directory: Optional[PathLike] = None, *, base_url: Optional[str] = None, progress: bool = True
) -> Path:
    """Download the registry file `name` into `directory` (see `default_directory`) and return its path.

    `base_url` (else `$HQSAM_MIRROR`) replaces the address up to the filename, for mirrors; the digests in the
    mirror's `SHA256SUMS` replace the registry's. A file with no pinned digest is checked against the digest
    recorded at its first download there, or records it.
    """
    entry = registry_entry(name)
    directory = Path(directory) if directory is not None else default_directory(entry.kind)
    dest = directory / entry.filename
    expected = _expected(entry, directory)
    if _passes(dest, expected):
        return dest
    mirror = (base_url or os.environ.get("HQSAM_MIRROR") or "").rstrip("/")
    if mirror:
        expected = _mirror_listing(mirror, entry.filename) or expected
    url = f"{mirror}/{entry.filename}" if mirror else entry.url
    digest = _fetch(url, dest, expected, progress=progress, timeout=TIMEOUT, chunk_size=CHUNK_SIZE)
    if entry.sha256 is None:
        _record_digest(directory, entry.filename, digest)
    return dest


def verify(name: str, directory: Optional[PathLike] = None) -> Path:
    """Check a downloaded registry file against its pinned digest and size, or its recorded digest; return its path.

    A file with neither (never downloaded through `download`) passes on existence alone.
    """
    entry = registry_entry(name)
    directory = Path(directory) if directory is not None else default_directory(entry.kind)
    path = directory / entry.filename
    if not path.is_file():
        raise DownloadError(f"{path} does not exist; run `hqsam download {name}`")
    failure = _mismatch(str(path), sha256_file(path), path.stat().st_size, _expected(entry, directory))
    if failure is not None:
        raise DownloadError(failure)
    return path
