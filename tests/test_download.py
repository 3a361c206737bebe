"""The downloader against a real local HTTP server: resume, servers that ignore ranges, corrupted files, trust on
first use, no network, and the `hqsam download` command."""

import hashlib
import json
import random
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from hqsam import download as dl
from hqsam.cli import main
from hqsam.download import DIGESTS_FILE, REGISTRY, DownloadError, download, download_url, verify

NAME = "sam_hq_vit_tiny"  # no published digest: checked by trust on first use
FILENAME = REGISTRY[NAME].filename
BODY = random.Random(0).randbytes(50_000)
CUT = 20_000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """A local server of `BODY` at `/<FILENAME>`, with switches that make it misbehave."""

    url: str
    cut_after: Optional[int] = None  # send the full Content-Length, write this many body bytes, then close
    ignore_range: bool = False  # answer 200 with the whole file even when asked for a range
    corrupt: bool = False  # serve `BODY` with its first byte flipped
    ranges: List[Optional[str]] = field(default_factory=list)  # the Range header of every request, None if absent

    @property
    def body(self) -> bytes:
        return bytes([BODY[0] ^ 0xFF]) + BODY[1:] if self.corrupt else BODY


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        config: FileServer = self.server.config
        requested = self.headers.get("Range")
        config.ranges.append(requested)
        if self.path == f"/moved/{FILENAME}":  # like Hugging Face's `resolve` URLs, which redirect to a CDN
            self.send_response(302)
            self.send_header("Location", f"/{FILENAME}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != f"/{FILENAME}":
            self.send_error(404)
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
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:][: config.cut_after])  # HTTP/1.0: the connection closes after this

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


@pytest.mark.parametrize("check", ["sha256", "sha256_prefix"])
def test_published_digest_rejects_corrupted_file(server, tmp_path, check):
    server.corrupt = True
    dest = tmp_path / FILENAME
    expected = sha256(BODY) if check == "sha256" else sha256(BODY)[:6]
    with pytest.raises(DownloadError, match=f"SHA-256 mismatch .*expected {expected}.*got {sha256(server.body)}"):
        download_url(f"{server.url}/{FILENAME}", dest, progress=False, **{check: expected})
    assert not dest.exists()
    assert not part_of(dest).exists()


def test_recorded_digest_rejects_changed_file(server, tmp_path):
    dest = download(NAME, tmp_path, base_url=server.url, progress=False)
    dest.unlink()
    server.corrupt = True
    with pytest.raises(DownloadError, match=f"expected {sha256(BODY)}.*recorded in .*{DIGESTS_FILE}"):
        download(NAME, tmp_path, base_url=server.url, progress=False)
    assert not dest.exists()
    assert not part_of(dest).exists()
    assert json.loads((tmp_path / DIGESTS_FILE).read_text()) == {FILENAME: sha256(BODY)}


def test_verified_dest_skips_network(server, tmp_path):
    download(NAME, tmp_path, base_url=server.url, progress=False)
    assert download(NAME, tmp_path, base_url=server.url, progress=False) == tmp_path / FILENAME
    assert len(server.ranges) == 1

    other = tmp_path / "other.pth"
    other.write_bytes(BODY)
    download_url(f"{server.url}/{FILENAME}", other, sha256=sha256(BODY), progress=False)
    assert len(server.ranges) == 1


def test_dest_failing_its_digest_is_downloaded_again(server, tmp_path, capsys):
    dest = tmp_path / FILENAME
    dest.write_bytes(b"not the file")
    download_url(f"{server.url}/{FILENAME}", dest, sha256=sha256(BODY), progress=False)
    assert dest.read_bytes() == BODY
    assert server.ranges == [None]
    assert "does not match its expected SHA-256" in capsys.readouterr().err


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


def test_verify_good_tampered_and_missing(server, tmp_path):
    dest = download(NAME, tmp_path, base_url=server.url, progress=False)
    assert verify(NAME, tmp_path) == dest
    dest.write_bytes(BODY[:-1])
    with pytest.raises(DownloadError, match=f"SHA-256 mismatch for {re.escape(str(dest))}"):
        verify(NAME, tmp_path)
    dest.unlink()
    with pytest.raises(DownloadError, match="does not exist"):
        verify(NAME, tmp_path)
