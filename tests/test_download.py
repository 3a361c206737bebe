"""The downloader against a real local HTTP server: resume, servers that ignore ranges, corrupted files, pinned
digests, Hugging Face's digest headers, mirrors with SHA256SUMS, trust on first use, files moved aside, no network,
and the `hqsam download` command."""

import dataclasses
import hashlib
import json
import random
import re
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from hqsam import download as dl
from hqsam.cli import main
from hqsam.data.hqseg44k import download_hqseg44k
from hqsam.download import (
    DIGESTS_FILE, REGISTRY, DownloadError, RemoteFile, download, download_url, read_sha256sums, verify,
    write_sha256sums,
)

NAME = "sam_hq_vit_tiny"  # no published digest: checked by trust on first use
FILENAME = REGISTRY[NAME].filename
PINNED = "sam_vit_b"  # digest and size pinned in the registry
PINNED_FILENAME = REGISTRY[PINNED].filename
SERVED = (FILENAME, PINNED_FILENAME, REGISTRY["DIS5K"].filename)  # each serves `BODY`
BODY = random.Random(0).randbytes(50_000)
CUT = 20_000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """A local server of `BODY` at `/<name>` for each of `SERVED`, with switches that make it misbehave.

    `/moved/<path>` redirects to `/cdn/<path>`, like Hugging Face's `resolve` URLs; `linked` headers go on that
    redirect, and on direct (not `/cdn/`) answers."""

    url: str
    cut_after: Optional[int] = None  # send the full Content-Length, write this many body bytes, then close
    ignore_range: bool = False  # answer 200 with the whole file even when asked for a range
    corrupt: bool = False  # serve `BODY` with its first byte flipped
    linked: Optional[Tuple[str, str]] = None  # the X-Linked-Etag and X-Linked-Size headers to send
    sums: Optional[str] = None  # the body of /SHA256SUMS; None: answer `sums_error`
    sums_error: int = 404
    ranges: List[Optional[str]] = field(default_factory=list)  # the Range header of each request but SHA256SUMS
    paths: List[str] = field(default_factory=list)  # the path of every request

    @property
    def body(self) -> bytes:
        return bytes([BODY[0] ^ 0xFF]) + BODY[1:] if self.corrupt else BODY


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        config: FileServer = self.server.config
        requested = self.headers.get("Range")
        config.paths.append(self.path)
        if not self.path.endswith("/SHA256SUMS"):
            config.ranges.append(requested)
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", "/cdn/" + self.path.removeprefix("/moved/"))
            self.send_linked()
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = self.path.removeprefix("/cdn/").removeprefix("/")
        if name == "SHA256SUMS" and config.sums is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(config.sums.encode())))
            self.end_headers()
            self.wfile.write(config.sums.encode())
            return
        if name not in SERVED:
            self.send_error(config.sums_error if name == "SHA256SUMS" else 404)
            return
        body, start = config.body, 0
        if requested is not None and not config.ignore_range:
            start = int(requested.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        if not self.path.startswith("/cdn/"):
            self.send_linked()
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:][: config.cut_after])  # HTTP/1.0: the connection closes after this

    def send_linked(self) -> None:
        if self.server.config.linked is not None:
            etag, size = self.server.config.linked
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", size)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No proxy, mirror or home from the environment, and a short timeout so a broken test fails fast."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.delenv("HQSAM_MIRROR", raising=False)
    monkeypatch.delenv("HQSAM_HOME", raising=False)
    monkeypatch.setattr(dl, "TIMEOUT", 5.0)


@pytest.fixture()
def server() -> Iterator[FileServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.config = FileServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd.config
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{FILENAME}"


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def aside(dest: Path, data: bytes) -> Path:
    """Where a failing `dest` holding `data` is moved."""
    return dest.with_name(f"{dest.name}.bad-{sha256(data)[:12]}")


def pin(monkeypatch, sha256_hex: str, size: int) -> None:
    """Pin `PINNED`'s registry entry to this digest and size."""
    monkeypatch.setitem(REGISTRY, PINNED, dataclasses.replace(REGISTRY[PINNED], sha256=sha256_hex, size=size))


@pytest.mark.parametrize("mirror_from", ["argument", "environment"])
def test_plain_download_records_digest(server, tmp_path, monkeypatch, mirror_from):
    if mirror_from == "environment":
        monkeypatch.setenv("HQSAM_MIRROR", server.url + "/")
    base_url = server.url if mirror_from == "argument" else None
    dest = download(NAME, tmp_path, base_url=base_url, progress=False)
    assert dest == tmp_path / FILENAME
    assert dest.read_bytes() == BODY
    assert not part_of(dest).exists()
    assert json.loads((tmp_path / DIGESTS_FILE).read_text()) == {FILENAME: sha256(BODY)}
    assert server.ranges == [None]
    assert server.paths == ["/SHA256SUMS", f"/{FILENAME}"]  # the mirror has none (404): trust on first use


def test_interrupted_transfer_resumes(server, tmp_path):
    """Cut twice (the second time while resuming), then complete."""
    server.cut_after = CUT
    part = part_of(tmp_path / FILENAME)
    for kept in (CUT, 2 * CUT):
        with pytest.raises(DownloadError, match=f"{kept} bytes kept in .*running again resumes"):
            download(NAME, tmp_path, base_url=server.url, progress=False)
        assert part.read_bytes() == BODY[:kept]
    assert not (tmp_path / FILENAME).exists()
    assert not (tmp_path / DIGESTS_FILE).exists()

    server.cut_after = None
    dest = download(NAME, tmp_path, base_url=server.url, progress=False)
    assert server.ranges == [None, f"bytes={CUT}-", f"bytes={2 * CUT}-"]
    assert dest.read_bytes() == BODY
    assert not part.exists()
    assert json.loads((tmp_path / DIGESTS_FILE).read_text()) == {FILENAME: sha256(BODY)}


def test_resume_follows_redirect(server, tmp_path):
    server.cut_after = CUT
    with pytest.raises(DownloadError):
        download(NAME, tmp_path, base_url=f"{server.url}/moved", progress=False)
    server.cut_after = None
    dest = download(NAME, tmp_path, base_url=f"{server.url}/moved", progress=False)
    assert server.ranges == [None, None, f"bytes={CUT}-", f"bytes={CUT}-"]
    assert dest.read_bytes() == BODY


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, capsys):
    server.cut_after = CUT
    with pytest.raises(DownloadError):
        download(NAME, tmp_path, base_url=server.url, progress=False)
    server.cut_after, server.ignore_range = None, True
    dest = download(NAME, tmp_path, base_url=server.url, progress=False)
    assert server.ranges == [None, f"bytes={CUT}-"]
    assert dest.read_bytes() == BODY
    assert "does not support resuming" in capsys.readouterr().err


@pytest.mark.parametrize(
    "part_bytes, requests",
    [(BODY, 1), (BODY + b"stale tail", 2)],
    ids=["part-already-whole", "part-longer-than-file"],
)
def test_416_whole_part_is_done_longer_part_restarts(server, tmp_path, part_bytes, requests):
    dest = tmp_path / FILENAME
    part_of(dest).write_bytes(part_bytes)
    download_url(f"{server.url}/{FILENAME}", dest, sha256=sha256(BODY), progress=False)
    assert dest.read_bytes() == BODY
    assert server.ranges[0] == f"bytes={len(part_bytes)}-"
    assert len(server.ranges) == requests
    assert not part_of(dest).exists()


@pytest.mark.parametrize(
    "given, message",
    [
        ({"sha256": sha256(BODY)}, "SHA-256 mismatch .*expected " + sha256(BODY)),
        ({"size": len(BODY) + 1}, f"size mismatch .*expected {len(BODY) + 1} bytes .*got {len(BODY)}"),
    ],
    ids=["sha256", "size"],
)
def test_given_digest_or_size_rejects_wrong_file(server, tmp_path, given, message):
    server.corrupt = True
    dest = tmp_path / FILENAME
    with pytest.raises(DownloadError, match=f"{message}.*moved aside to {re.escape(str(aside(dest, server.body)))}"):
        download_url(f"{server.url}/{FILENAME}", dest, progress=False, **given)
    assert not dest.exists()
    assert not part_of(dest).exists()
    assert aside(dest, server.body).read_bytes() == server.body


def test_recorded_digest_rejects_changed_file(server, tmp_path):
    dest = download(NAME, tmp_path, base_url=server.url, progress=False)
    dest.unlink()
    server.corrupt = True
    with pytest.raises(DownloadError, match=f"expected {sha256(BODY)}.*recorded in .*{DIGESTS_FILE}"):
        download(NAME, tmp_path, base_url=server.url, progress=False)
    assert not dest.exists()
    assert not part_of(dest).exists()
    assert aside(dest, server.body).read_bytes() == server.body
    assert json.loads((tmp_path / DIGESTS_FILE).read_text()) == {FILENAME: sha256(BODY)}


def test_verified_dest_skips_network(server, tmp_path):
    download(NAME, tmp_path, base_url=server.url, progress=False)
    assert download(NAME, tmp_path, base_url=server.url, progress=False) == tmp_path / FILENAME
    assert len(server.ranges) == 1

    other = tmp_path / "other.pth"
    other.write_bytes(BODY)
    download_url(f"{server.url}/{FILENAME}", other, sha256=sha256(BODY), progress=False)
    assert len(server.ranges) == 1


@pytest.mark.parametrize("through", ["download_url", "download"])
def test_hand_placed_wrong_file_is_moved_aside_not_deleted(server, tmp_path, capsys, monkeypatch, through):
    mine = b"my own fine-tuned weights"
    dest = tmp_path / PINNED_FILENAME
    dest.write_bytes(mine)
    if through == "download":
        pin(monkeypatch, sha256(BODY), len(BODY))
        assert download(PINNED, tmp_path, base_url=server.url, progress=False) == dest
    else:
        download_url(f"{server.url}/{PINNED_FILENAME}", dest, sha256=sha256(BODY), progress=False)
    assert dest.read_bytes() == BODY
    assert aside(dest, mine).read_bytes() == mine
    assert server.ranges == [None]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"moved aside to {aside(dest, mine)}" in err[0] and "mismatch" in err[0]


def test_broken_digests_file_is_an_error(server, tmp_path):
    (tmp_path / DIGESTS_FILE).write_text("{not json")
    with pytest.raises(DownloadError, match=f"{DIGESTS_FILE} is not valid JSON.*fix or delete it"):
        download(NAME, tmp_path, base_url=server.url, progress=False)
    assert server.ranges == []


def test_no_network_names_url_and_destination(tmp_path):
    url, dest = closed_port_url(), tmp_path / FILENAME
    with pytest.raises(DownloadError) as info:
        download_url(url, dest, progress=False)
    assert url in str(info.value)
    assert f"put it at {dest}" in str(info.value)
    assert not dest.exists()


def test_cli_list_prints_every_name(capsys):
    assert main(["download", "--list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(REGISTRY)


@pytest.mark.parametrize(
    "argv, named", [(["nope"], ["'nope'", *REGISTRY]), ([], ["--list"])], ids=["unknown-name", "no-name"]
)
def test_cli_bad_names_exit_2(capsys, argv, named):
    assert main(["download", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert all(word in err for word in named)


def test_cli_downloads_into_dir(server, tmp_path, capsys):
    assert main(["download", NAME, "--dir", str(tmp_path), "--mirror", server.url, "--no-progress"]) == 0
    assert (tmp_path / FILENAME).read_bytes() == BODY
    assert capsys.readouterr().out.strip() == str(tmp_path / FILENAME)


def test_cli_failed_download_exits_1(server, tmp_path, capsys):
    """`sam_hq_vit_b.pth` is not on the server: HTTP 404."""
    assert main(["download", "sam_hq_vit_b", "--dir", str(tmp_path), "--mirror", server.url, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 404") and f"{server.url}/sam_hq_vit_b.pth" in err
    assert not any(tmp_path.iterdir())


def test_verify_checks_the_pinned_size_and_digest(tmp_path, monkeypatch):
    pin(monkeypatch, sha256(BODY), len(BODY))
    dest = tmp_path / PINNED_FILENAME
    dest.write_bytes(BODY)
    assert verify(PINNED, tmp_path) == dest
    dest.write_bytes(BODY + b"!")
    with pytest.raises(DownloadError, match=f"size mismatch .*expected {len(BODY)} bytes .*pinned"):
        verify(PINNED, tmp_path)
    dest.write_bytes(b"!" + BODY[1:])
    with pytest.raises(DownloadError, match=f"SHA-256 mismatch .*expected {sha256(BODY)} .*pinned"):
        verify(PINNED, tmp_path)


def test_verify_good_tampered_and_missing(server, tmp_path):
    dest = download(NAME, tmp_path, base_url=server.url, progress=False)
    assert verify(NAME, tmp_path) == dest
    dest.write_bytes(BODY[:-1])
    with pytest.raises(DownloadError, match=f"SHA-256 mismatch for {re.escape(str(dest))}"):
        verify(NAME, tmp_path)
    dest.unlink()
    with pytest.raises(DownloadError, match="does not exist"):
        verify(NAME, tmp_path)


def test_registry_pins_real_sha256_and_size_of_sam_checkpoints():
    """The hex in Meta's filenames is the start of the MD5: the registry pins the whole SHA-256 and the size."""
    pinned = {
        "sam_vit_b": (375042383, "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        "sam_vit_l": (1249524607, "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        "sam_vit_h": (2564550879, "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    }
    for name, (size, digest) in pinned.items():
        entry = REGISTRY[name]
        assert (entry.size, entry.sha256) == (size, digest)
        assert not digest.startswith(re.search(r"_([0-9a-f]{6})\.pth$", entry.filename)[1])
    assert "sha256_prefix" not in {f.name for f in dataclasses.fields(RemoteFile)}
    assert all(e.sha256 is None or re.fullmatch("[0-9a-f]{64}", e.sha256) for e in REGISTRY.values())


def test_pinned_digest_passes_though_not_starting_with_the_filename_hex(server, tmp_path, monkeypatch):
    assert not sha256(BODY).startswith(PINNED_FILENAME.removesuffix(".pth").rsplit("_", 1)[1])
    pin(monkeypatch, sha256(BODY), len(BODY))
    dest = download(PINNED, tmp_path, base_url=server.url, progress=False)
    assert dest.read_bytes() == BODY
    assert not (tmp_path / DIGESTS_FILE).exists()  # a pinned file needs no record
    assert verify(PINNED, tmp_path) == dest


def test_pinned_size_mismatch_is_refused(server, tmp_path, monkeypatch):
    pin(monkeypatch, sha256(BODY), len(BODY) + 1)
    with pytest.raises(DownloadError, match=f"size mismatch .*expected {len(BODY) + 1} bytes .*pinned"):
        download(PINNED, tmp_path, base_url=server.url, progress=False)
    assert not (tmp_path / PINNED_FILENAME).exists()
    assert aside(tmp_path / PINNED_FILENAME, BODY).read_bytes() == BODY


@pytest.mark.parametrize("etag", [f'"{sha256(BODY)}"', f'W/"{sha256(BODY)}"'], ids=["strong", "weak"])
@pytest.mark.parametrize("hop", ["redirect", "final"])
def test_hugging_face_headers_verify_and_record(server, tmp_path, etag, hop):
    server.linked = (etag, str(len(BODY)))
    base_url = f"{server.url}/moved" if hop == "redirect" else server.url
    dest = download(NAME, tmp_path, base_url=base_url, progress=False)
    assert dest.read_bytes() == BODY
    assert json.loads((tmp_path / DIGESTS_FILE).read_text()) == {FILENAME: sha256(BODY)}


@pytest.mark.parametrize(
    "linked, message",
    [
        ((f'"{sha256(b"another file")}"', str(len(BODY))), f"SHA-256 mismatch .*expected {sha256(b'another file')}"),
        ((f'"{sha256(BODY)}"', str(len(BODY) + 1)), f"size mismatch .*expected {len(BODY) + 1} bytes"),
    ],
    ids=["digest", "size"],
)
def test_lying_hugging_face_header_refuses_the_file(server, tmp_path, linked, message):
    server.linked = linked
    with pytest.raises(DownloadError, match=f"{message} \\(sent by the server in X-Linked-Etag"):
        download(NAME, tmp_path, base_url=f"{server.url}/moved", progress=False)
    assert not (tmp_path / FILENAME).exists()
    assert aside(tmp_path / FILENAME, BODY).read_bytes() == BODY
    assert not (tmp_path / DIGESTS_FILE).exists()


def test_header_contradicting_the_pinned_digest_names_both(server, tmp_path, monkeypatch):
    pin(monkeypatch, sha256(BODY), len(BODY))
    server.linked = (f'"{sha256(b"another file")}"', str(len(BODY)))
    with pytest.raises(DownloadError) as info:
        download(PINNED, tmp_path, base_url=f"{server.url}/moved", progress=False)
    assert sha256(BODY) in str(info.value) and sha256(b"another file") in str(info.value)
    assert "X-Linked-Etag" in str(info.value) and "pinned" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded


@pytest.mark.parametrize("separator", ["  ", " *"], ids=["text", "binary"])
def test_mirror_sha256sums_replaces_the_pinned_digest(server, tmp_path, separator):
    """A rehearsal mirror's own file for `sam_vit_b` (the registry pins Meta's real digest and size)."""
    server.sums = f"{sha256(b'other')}  other.pth\n{sha256(BODY)}{separator}{PINNED_FILENAME}\n"
    dest = download(PINNED, tmp_path, base_url=server.url, progress=False)
    assert dest.read_bytes() == BODY
    assert server.paths == ["/SHA256SUMS", f"/{PINNED_FILENAME}"]


@pytest.mark.parametrize("through", ["download", "download_hqseg44k"])
def test_mirror_listing_another_digest_refuses_the_file(server, tmp_path, through):
    filename = REGISTRY["DIS5K"].filename
    server.sums = f"{sha256(b'the real archive')}  {filename}\n"
    with pytest.raises(DownloadError, match=f"SHA-256 mismatch .*listed in {server.url}/SHA256SUMS"):
        if through == "download":
            download("DIS5K", tmp_path, base_url=server.url, progress=False)
        else:  # the extractor gets the error and extracts nothing
            download_hqseg44k(tmp_path / "root", ["DIS5K"], base_url=server.url, progress=False, downloads_dir=tmp_path)
    assert not (tmp_path / filename).exists()
    assert aside(tmp_path / filename, BODY).read_bytes() == BODY
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("sums", [None, f"{sha256(BODY)}  {FILENAME}\n"], ids=["no-SHA256SUMS", "not-listed"])
def test_file_the_mirror_does_not_list_keeps_the_pinned_digest(server, tmp_path, sums):
    server.sums = sums
    with pytest.raises(DownloadError, match=f"size mismatch .*expected {REGISTRY[PINNED].size} bytes .*pinned"):
        download(PINNED, tmp_path, base_url=server.url, progress=False)
    assert aside(tmp_path / PINNED_FILENAME, BODY).read_bytes() == BODY


@pytest.mark.parametrize(
    "sums, sums_error, message",
    [
        (f"{sha256(BODY)}  {FILENAME}\nnot a checksum\n", 404, "SHA256SUMS is malformed: line 2 is not"),
        (None, 500, "HTTP 500 .*SHA256SUMS"),
    ],
    ids=["malformed", "server-error"],
)
def test_mirror_sha256sums_that_cannot_be_read_is_an_error(server, tmp_path, sums, sums_error, message):
    server.sums, server.sums_error = sums, sums_error
    with pytest.raises(DownloadError, match=message):
        download(NAME, tmp_path, base_url=server.url, progress=False)
    assert server.ranges == []
    assert list(tmp_path.iterdir()) == []


def test_read_sha256sums_names_the_bad_line():
    good = f"{sha256(BODY)}  a.pth"
    parsed = read_sha256sums(f"{good}\n\n{sha256(b'b').upper()} *b.zip\n")
    assert parsed == {"a.pth": sha256(BODY), "b.zip": sha256(b"b")}
    with pytest.raises(ValueError, match="line 3 is not"):
        read_sha256sums(f"{good}\n{good}\n{sha256(BODY)[:-1]}  c.pth\n")


def test_write_sha256sums_round_trips_with_sha256sum(tmp_path):
    files = {"sam_vit_b_01ec64.pth": BODY, "DIS5K.zip": b"zip", "a file.pth": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    path = write_sha256sums(tmp_path, files)
    assert path == tmp_path / "SHA256SUMS"
    assert [line.split("  ", 1)[1] for line in path.read_text().splitlines()] == sorted(files)
    checked = subprocess.run(["sha256sum", "-c", "--strict", path.name], cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = subprocess.run(["sha256sum", "-b", *files], cwd=tmp_path, capture_output=True, text=True, check=True)
    expected = {name: sha256(data) for name, data in files.items()}
    assert read_sha256sums(path.read_text()) == read_sha256sums(listed.stdout) == expected
