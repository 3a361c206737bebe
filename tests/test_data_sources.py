import hashlib
import io
import json
import shutil
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from hqsam.data.coco_source import CocoInstanceSource
from hqsam.data.archives import COCO_ARCHIVES, marker_path
from hqsam.cli import main as hqsam_main
from hqsam.data.hqseg44k import download_coco, download_hqseg44k
from hqsam.data.layout import HQSEG44K_LAYOUT, TOY_LAYOUT
from hqsam.data.sources import (
    FolderSource,
    missing_sources,
    read_image,
    read_layout,
    read_mask,
    validation_report,
)

RNG = np.random.default_rng(0)


def random_image(height: int = 12, width: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def random_mask(height: int = 12, width: int = 16) -> np.ndarray:
    mask = RNG.random((height, width)) > 0.5
    mask[0, 0] = True
    return mask


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_pair(image_dir: Path, mask_dir: Path, stem: str, mask: np.ndarray, scale: int = 255) -> None:
    write(image_dir / f"{stem}.jpg", random_image(*mask.shape))
    write(mask_dir / f"{stem}.png", mask.astype(np.uint8) * scale)


def test_pairs_by_stem_and_reports_unpaired_files(tmp_path):
    masks = {stem: random_mask() for stem in ("b", "a")}
    for stem, mask in masks.items():
        write_pair(tmp_path / "im", tmp_path / "gt", stem, mask)
    write(tmp_path / "im" / "c.jpg", random_image())
    write(tmp_path / "gt" / "d.png", random_mask().astype(np.uint8) * 255)

    for validate in (True, False):
        source = FolderSource("S", tmp_path / "im", tmp_path / "gt", validate=validate)
        assert source.stems == ["a", "b"]
        report = source.report
        assert (report.found_images, report.found_masks, report.paired, report.usable) == (3, 3, 2, 2)
        assert report.unpaired_images == ["c"] and report.unpaired_masks == ["d"]
        assert report.validated is validate
        assert "c" in str(report) and "d" in str(report)
    sample = source[0]
    assert sample.name == "S/a"
    assert sample.image.shape == (12, 16, 3) and sample.image.dtype == np.uint8
    assert sample.mask.dtype == np.bool_
    np.testing.assert_array_equal(sample.mask, masks["a"])


def test_images_and_masks_in_the_same_folder(tmp_path):
    folder = tmp_path / "cascade_psp" / "ecssd"
    masks = {stem: random_mask() for stem in ("x", "y")}
    for stem, mask in masks.items():
        write_pair(folder, folder, stem, mask)
    source = FolderSource("ECSSD", folder, folder)
    assert source.stems == ["x", "y"] and source.report.unpaired_images == [] == source.report.unpaired_masks
    np.testing.assert_array_equal(source[1].mask, masks["y"])


def test_mask_conventions_binarise_to_the_same_mask(tmp_path):
    mask = random_mask()
    gray = mask.astype(np.uint8)
    files = {
        "0/255": write(tmp_path / "m255.png", gray * 255),
        "0/1": write(tmp_path / "m01.png", gray),
        "rgb": write(tmp_path / "rgb.png", np.repeat(gray[:, :, None] * 255, 3, axis=2)),
        "rgba": write(tmp_path / "rgba.png", np.dstack([gray * 255, gray * 255, gray * 255, np.full_like(gray, 255)])),
        "1-bit": tmp_path / "bit.png",
    }
    Image.fromarray(mask).convert("1").save(files["1-bit"])
    expected_convention = {"0/255": "0/255", "0/1": "0/1", "rgb": "0/255", "rgba": "0/255", "1-bit": "0/255"}
    for kind, path in files.items():
        read, convention = read_mask(path)
        assert read.dtype == np.bool_
        np.testing.assert_array_equal(read, mask, err_msg=kind)
        assert convention == expected_convention[kind], kind

    image_dir = tmp_path / "im"
    write_pair(image_dir, tmp_path / "gt", "p", mask, scale=255)
    write_pair(image_dir, tmp_path / "gt", "q", mask, scale=1)
    write_pair(image_dir, tmp_path / "gt", "r", mask, scale=255)
    source = FolderSource("S", image_dir, tmp_path / "gt")
    assert source.report.conventions == {"0/255": 2, "0/1": 1}
    np.testing.assert_array_equal(source[0].mask, source[1].mask)


def test_anti_aliased_mask_thresholds_above_128(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    mask, convention = read_mask(write(tmp_path / "soft.png", gray))
    assert convention == "0/255"
    assert not mask[gray == 128].any() and mask[gray == 129].all()
    assert mask.sum() == 255 - 128
    faint, convention = read_mask(write(tmp_path / "faint.png", np.minimum(gray, 128)))
    assert convention == "empty" and not faint.any()


def test_read_image_converts_grayscale_and_rgba(tmp_path):
    gray = random_image()[:, :, 0]
    rgb = read_image(write(tmp_path / "g.png", gray))
    assert rgb.shape == (12, 16, 3) and (rgb == gray[:, :, None]).all()
    rgba = np.dstack([random_image(), np.zeros((12, 16), np.uint8)])
    np.testing.assert_array_equal(read_image(write(tmp_path / "a.png", rgba)), rgba[:, :, :3])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")


def test_empty_unreadable_and_mismatched_pairs_are_skipped_and_named(tmp_path):
    im, gt = tmp_path / "im", tmp_path / "gt"
    good = random_mask()
    write_pair(im, gt, "good", good)
    write_pair(im, gt, "empty", np.zeros((12, 16), bool))
    write_pair(im, gt, "badimage", random_mask())
    (im / "badimage.jpg").write_bytes(b"\x00garbage" * 10)
    write_pair(im, gt, "badmask", random_mask())
    (gt / "badmask.png").write_bytes(b"\x89PNG garbage")
    write(im / "small.jpg", random_image(6, 8))
    write(gt / "small.png", random_mask().astype(np.uint8) * 255)

    source = FolderSource("S", im, gt, expected=5)
    report = source.report
    assert source.stems == ["good"] and len(source) == 1
    np.testing.assert_array_equal(source[0].mask, good)
    assert (report.paired, report.usable, report.skipped) == (5, 1, 4)
    assert report.empty_masks == ["empty"]
    assert sorted(Path(file).name for file, _ in report.unreadable) == ["badimage.jpg", "badmask.png", "small.png"]
    assert report.conventions == {"0/255": 1, "empty": 1}
    text = str(report)
    for name in ("empty", "badimage.jpg", "badmask.png", "small.png", "4 skipped"):
        assert name in text
    row = report.row()
    assert (row["skipped"], row["unreadable"], row["empty_masks"], row["expected_ok"]) == (4, 3, 1, True)

    unvalidated = FolderSource("S", im, gt, validate=False)
    assert len(unvalidated) == 5 and unvalidated.report.conventions == {}
    with pytest.raises(ValueError, match="badimage.jpg"):
        unvalidated[unvalidated.stems.index("badimage")]


def test_report_counts_against_expected(tmp_path):
    for stem in ("a", "b", "c"):
        write_pair(tmp_path / "im", tmp_path / "gt", stem, random_mask())
    exact = FolderSource("Exact", tmp_path / "im", tmp_path / "gt", expected=3, split="val")
    short = FolderSource("Short", tmp_path / "im", tmp_path / "gt", expected=5)
    free = FolderSource("Free", tmp_path / "im", tmp_path / "gt")
    assert (exact.report.expected_ok, short.report.expected_ok, free.report.expected_ok) == (True, False, None)
    assert "expected 5 images, found 3" in str(short.report) and "WARNING" not in str(exact.report)

    frame = validation_report([exact, short, free])
    assert list(frame["name"]) == ["Exact", "Short", "Free"]
    assert list(frame["split"]) == ["val", "train", "train"]
    assert list(frame["usable"]) == [len(exact), len(short), len(free)]
    assert frame.loc[1].to_dict() == short.report.row()


def test_missing_folder_raises_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        FolderSource("S", tmp_path / "nope", tmp_path)


def make_hqseg44k_tree(root: Path, present=("DIS5K-TR", "ECSSD", "DIS5K-VD")) -> None:
    for spec in HQSEG44K_LAYOUT:
        if spec.name in present:
            for stem in ("one", "two"):
                write_pair(root / spec.image_dir, root / spec.mask_dir, stem, random_mask())


def test_read_layout_on_a_partial_hqseg44k_tree(tmp_path):
    make_hqseg44k_tree(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        read_layout(tmp_path, HQSEG44K_LAYOUT)
    message = str(error.value)
    assert "hqsam download-data" in message and "8 source(s) missing" in message
    absent = [spec.name for spec in HQSEG44K_LAYOUT if spec.name not in ("DIS5K-TR", "ECSSD", "DIS5K-VD")]
    assert all(name in message for name in absent)
    assert [spec.name for spec in missing_sources(tmp_path, HQSEG44K_LAYOUT)] == absent
    assert [spec.name for spec in missing_sources(tmp_path, HQSEG44K_LAYOUT, "val")] == absent[-3:]

    present = tuple(spec for spec in HQSEG44K_LAYOUT if spec not in missing_sources(tmp_path, HQSEG44K_LAYOUT))
    sources = read_layout(tmp_path, present)
    assert [(s.split, s.name, len(s)) for s in sources] == [("train", "DIS5K-TR", 2), ("train", "ECSSD", 2),
                                                             ("val", "DIS5K-VD", 2)]
    assert [s.report.expected for s in sources] == [3000, 1000, 470]
    assert [s.name for s in read_layout(tmp_path, present, split="val")] == ["DIS5K-VD"]
    with pytest.raises(ValueError, match="split 'test'"):
        read_layout(tmp_path, present, split="test")
    with pytest.raises(FileNotFoundError, match="layout.py"):
        read_layout(tmp_path, TOY_LAYOUT)


def polygon(x0: float, y0: float, x1: float, y1: float) -> list:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture()
def coco_files(tmp_path):
    image_dir = tmp_path / "images"
    write(image_dir / "one.jpg", random_image(20, 30))
    write(image_dir / "two.jpg", random_image(24, 16))
    write(image_dir / "lonely.jpg", random_image(8, 8))
    crowd = {"size": [20, 30], "counts": [100, 50, 450]}
    dataset = {
        "images": [
            {"id": 1, "file_name": "one.jpg", "height": 20, "width": 30},
            {"id": 2, "file_name": "two.jpg", "height": 24, "width": 16},
            {"id": 3, "file_name": "gone.jpg", "height": 10, "width": 10},
            {"id": 4, "file_name": "lonely.jpg", "height": 8, "width": 8},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": polygon(2, 3, 20, 15)},
            {"id": 12, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": polygon(4, 4, 9, 20)},
            {"id": 13, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": crowd},
            {"id": 14, "image_id": 3, "category_id": 1, "iscrowd": 0, "segmentation": polygon(1, 1, 5, 5)},
            {"id": 15, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": [[5, 5, 10, 5, 15, 5]]},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    annotation_file = tmp_path / "instances.json"
    annotation_file.write_text(json.dumps(dataset))
    return image_dir, annotation_file


def test_coco_instances_match_pycocotools_and_report_skips(coco_files):
    image_dir, annotation_file = coco_files
    source = CocoInstanceSource(image_dir, annotation_file)
    oracle = COCO(str(annotation_file))
    assert source.annotation_ids == [11, 12] and source.image_ids == [1, 2] and len(source) == 2
    for index, annotation_id in enumerate(source.annotation_ids):
        sample = source[index]
        expected = oracle.annToMask(oracle.anns[annotation_id]).astype(bool)
        assert expected.any()
        np.testing.assert_array_equal(sample.mask, expected)
        record = oracle.imgs[source.image_ids[index]]
        assert sample.image.shape == (record["height"], record["width"], 3)
        assert sample.name == f"coco/{Path(record['file_name']).stem}#{annotation_id}"
    report = source.report
    assert (report.found_images, report.found_masks, report.paired, report.usable) == (4, 5, 3, 2)
    assert report.excluded == [("annotation 13", "crowd")]
    assert report.unpaired_masks == ["14"] and report.empty_masks == ["15"] and report.unpaired_images == ["lonely.jpg"]
    assert report.conventions == {} and report.unreadable == []
    assert "annotation 13 (crowd)" in str(report) and "14" in str(report)

    smaller = int(oracle.annToMask(oracle.anns[12]).sum())
    assert smaller < oracle.annToMask(oracle.anns[11]).sum()
    strict = CocoInstanceSource(image_dir, annotation_file, min_area=smaller + 1)
    assert strict.annotation_ids == [11] and strict.report.empty_masks == ["12", "15"]


def test_coco_unreadable_image_is_reported(coco_files):
    image_dir, annotation_file = coco_files
    (image_dir / "two.jpg").write_bytes(b"garbage")
    source = CocoInstanceSource(image_dir, annotation_file)
    assert source.annotation_ids == [11]
    assert [Path(file).name for file, _ in source.report.unreadable] == ["two.jpg"]
    assert source.report.skipped == 2  # annotations 12 and 15 of the unreadable image
    unvalidated = CocoInstanceSource(image_dir, annotation_file, validate=False)
    assert unvalidated.annotation_ids == [11, 12]
    with pytest.raises(ValueError, match="two.jpg"):
        unvalidated[1]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoInstanceSource(image_dir, annotation_file.with_name("missing.json"))


@pytest.fixture()
def server(monkeypatch):
    """A local HTTP server serving `files` (name -> bytes) and recording every request path."""
    for variable in ("HQSAM_MIRROR", "HQSAM_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    files, requests = {}, []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", files=files, requests=requests)
    httpd.shutdown()
    httpd.server_close()


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def make_zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def dis5k_zip() -> bytes:
    members = {}
    for folder in ("DIS-TR", "DIS-VD"):
        for stem in ("a", "b"):
            members[f"DIS5K/{folder}/im/{stem}.jpg"] = png_bytes(random_image(), "JPEG")
            members[f"DIS5K/{folder}/gt/{stem}.png"] = png_bytes(random_mask().astype(np.uint8) * 255)
    return make_zip(members)


def snapshot(root: Path) -> dict:
    return {str(path): path.stat().st_mtime_ns for path in sorted(root.rglob("*"))}


def test_download_extracts_once(server, tmp_path):
    archive = dis5k_zip()
    server.files["DIS5K.zip"] = archive
    root, downloads = tmp_path / "root", tmp_path / "downloads"
    (root / ".extracting-DIS5K-leftover").mkdir(parents=True)  # an interrupted earlier run

    def run():
        return download_hqseg44k(root, ["DIS5K"], base_url=server.url, progress=False, downloads_dir=downloads)

    def zips():
        return [path for path in server.requests if path.endswith(".zip")]  # the mirror's SHA256SUMS aside

    assert run() == ["DIS5K"]
    assert zips() == ["/DIS5K.zip"]
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        for member in zipped.namelist():
            assert (root / member).read_bytes() == zipped.read(member)
    marker = json.loads(marker_path(root, "DIS5K").read_text())
    assert marker["sha256"] == hashlib.sha256(archive).hexdigest() and marker["entries"] == ["DIS5K"]
    assert sorted(path.name for path in root.iterdir()) == [".extracted-DIS5K.json", "DIS5K"]

    before, requests = snapshot(root), list(server.requests)
    assert run() == [] and server.requests == requests and snapshot(root) == before

    (root / "DIS5K" / "stale.txt").write_text("from an older release")
    marker_path(root, "DIS5K").write_text(json.dumps({"sha256": "0" * 64}))  # marker of another archive
    assert run() == ["DIS5K"] and zips() == ["/DIS5K.zip"]  # the downloaded archive is reused
    assert not (root / "DIS5K" / "stale.txt").exists()  # the older tree was replaced, not merged

    (downloads / "DIS5K.zip").unlink()
    before, requests = snapshot(root), list(server.requests)
    assert run() == [] and server.requests == requests and snapshot(root) == before

    shutil.rmtree(root / "DIS5K")  # a deleted tree is downloaded and extracted again
    assert run() == ["DIS5K"] and zips() == ["/DIS5K.zip"] * 2
    assert (root / "DIS5K" / "DIS-VD" / "gt" / "b.png").is_file()


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil.txt", "DIS5K/../../evil.txt"])
def test_zip_with_escaping_member_is_refused(server, tmp_path, evil):
    server.files["DIS5K.zip"] = make_zip({"DIS5K/ok.txt": b"ok", evil: b"evil"})
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="outside"):
        download_hqseg44k(root, ["DIS5K"], base_url=server.url, progress=False, downloads_dir=tmp_path / "dl")
    assert not (tmp_path / "evil.txt").exists()
    assert not root.exists() or list(root.iterdir()) == []


def test_download_data_command(server, tmp_path, capsys):
    server.files["DIS5K.zip"] = dis5k_zip()
    common = ["--dir", str(tmp_path / "root"), "--downloads", str(tmp_path / "dl"), "--mirror", server.url,
              "--no-progress"]

    assert hqsam_main(["download-data", *common, "--only", "DIS5K"]) == 1  # the other archives' sources are missing: reported, not a crash
    out, err = capsys.readouterr()
    assert "DIS5K-TR" in out and "DIS5K-VD" in out
    for spec in HQSEG44K_LAYOUT:
        if not spec.name.startswith("DIS5K"):
            assert f"missing: {spec.split}/{spec.name}" in err

    assert hqsam_main(["download-data", *common, "--only", "cascade_psp"]) == 1
    assert "error:" in capsys.readouterr().err and "/cascade_psp.zip" in server.requests
    with pytest.raises(SystemExit):
        hqsam_main(["download-data", "--only", "coco_val2017"])


def with_folders(members: dict) -> dict:
    """`members` preceded by a directory entry for every folder they are in, as `zip -r` writes them."""
    folders = {name[: index + 1] for name in members for index, char in enumerate(name) if char == "/"}
    return {**{folder: b"" for folder in sorted(folders)}, **members}


def hqseg44k_zip(name: str, wrapper: str, extra: dict = None) -> bytes:
    """Archive `name` holding two pairs per source of HQSEG44K_LAYOUT under it, its folders under `wrapper`."""
    members = {}
    for spec in HQSEG44K_LAYOUT:
        if spec.image_dir.startswith(f"{name}/"):
            for stem in ("a", "b"):
                members[f"{wrapper}{spec.image_dir[len(name) + 1:]}/{stem}.jpg"] = png_bytes(random_image(), "JPEG")
                members[f"{wrapper}{spec.mask_dir[len(name) + 1:]}/{stem}.png"] = png_bytes(
                    random_mask().astype(np.uint8) * 255
                )
    return make_zip({**with_folders(members), **(extra or {})})


FORMS = {
    "as released": {"DIS5K": "DIS5K/", "cascade_psp": "", "thin_object_detection": ""},
    "all wrapped": {name: f"{name}/" for name in ("DIS5K", "cascade_psp", "thin_object_detection")},
    "none wrapped": {"DIS5K": "", "cascade_psp": "", "thin_object_detection": ""},
    "extra wrapper": {"DIS5K": "data/DIS5K/", "cascade_psp": "cascade_psp_v2/", "thin_object_detection": "release/"},
}


@pytest.mark.parametrize("form", FORMS)
def test_download_data_finds_all_sources_whichever_form_the_archives_have(server, tmp_path, capsys, form):
    for name, wrapper in FORMS[form].items():
        server.files[f"{name}.zip"] = hqseg44k_zip(name, wrapper)
    root = tmp_path / "root"
    assert hqsam_main(["download-data", "--dir", str(root), "--downloads", str(tmp_path / "dl"),
                       "--mirror", server.url, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "missing:" not in err and all(spec.name in out for spec in HQSEG44K_LAYOUT)
    assert [len(source) for source in read_layout(root, HQSEG44K_LAYOUT)] == [2] * len(HQSEG44K_LAYOUT)
    archives = ["DIS5K", "cascade_psp", "thin_object_detection"]
    assert sorted(path.name for path in root.iterdir()) == sorted(
        archives + [marker_path(root, name).name for name in archives]
    )  # wrappers stripped, nothing at the root but the archives' folders

    shutil.rmtree(root / "cascade_psp" / "ecssd")  # an expected folder deleted by hand is extracted again
    assert download_hqseg44k(root, base_url=server.url, progress=False, downloads_dir=tmp_path / "dl") == [
        "cascade_psp"
    ]
    assert len(list((root / "cascade_psp" / "ecssd").iterdir())) == 4


@pytest.mark.parametrize("members", [
    {"images/a.jpg": b"x", "masks/a.png": b"x"},
    {"cascade_psp/DUTS-TE/a.jpg": b"x", "cascade_psp/fss_all/a.jpg": b"x"},  # three folders absent
])
def test_archive_in_no_known_form_is_refused_before_writing(server, tmp_path, members):
    server.files["cascade_psp.zip"] = make_zip(with_folders(members))
    root = tmp_path / "root"
    with pytest.raises(ValueError) as error:
        download_hqseg44k(root, ["cascade_psp"], base_url=server.url, progress=False, downloads_dir=tmp_path / "dl")
    message = str(error.value)
    tops = sorted({name.split("/")[0] for name in members})
    for part in ["cascade_psp.zip", "DUTS-TE, DUTS-TR, MSRA_10K, ecssd, fss_all", ", ".join(tops)]:
        assert part in message
    assert not root.exists()


def test_macos_metadata_is_skipped_and_counted(server, tmp_path, capsys):
    metadata = {"__MACOSX/": b"", "__MACOSX/cascade_psp_v2/": b"", "__MACOSX/cascade_psp_v2/._ecssd": b"\0"}
    server.files["cascade_psp.zip"] = hqseg44k_zip("cascade_psp", "cascade_psp_v2/", metadata)
    root = tmp_path / "root"
    assert download_hqseg44k(root, ["cascade_psp"], base_url=server.url, progress=False,
                             downloads_dir=tmp_path / "dl") == ["cascade_psp"]
    assert "skipped 3 macOS metadata member(s) under __MACOSX/" in capsys.readouterr().err
    assert not list(root.rglob("*MACOSX*")) and not list(root.rglob("._*"))
    assert sorted(path.name for path in (root / "cascade_psp").iterdir()) == [
        "DUTS-TE", "DUTS-TR", "MSRA_10K", "ecssd", "fss_all"
    ]


def test_download_coco_extracts_val2017_and_its_annotations(server, tmp_path, coco_files):
    image_dir, annotation_file = coco_files
    images = {f"val2017/{path.name}": path.read_bytes() for path in sorted(image_dir.iterdir())}
    server.files["val2017.zip"] = make_zip(with_folders(images))
    server.files["annotations_trainval2017.zip"] = make_zip(with_folders({
        "annotations/instances_val2017.json": annotation_file.read_bytes(),
        "annotations/captions_val2017.json": b"{}",
    }))
    root, downloads = tmp_path / "coco", tmp_path / "dl"
    assert download_coco(root, base_url=server.url, progress=False, downloads_dir=downloads) == list(COCO_ARCHIVES)
    assert sorted(path.name for path in (root / "val2017").iterdir()) == ["lonely.jpg", "one.jpg", "two.jpg"]
    assert (root / "annotations" / "captions_val2017.json").read_bytes() == b"{}"
    source = CocoInstanceSource(root / "val2017", root / "annotations" / "instances_val2017.json")
    assert source.annotation_ids == [11, 12]
    assert download_coco(root, base_url=server.url, progress=False, downloads_dir=downloads) == []
