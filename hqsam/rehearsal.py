"""The rehearsal world: an offline miniature of every input of the paper profile, in the released formats, served
on 127.0.0.1 as a mirror.

`write_rehearsal(folder)` writes, flat as a mirror serves them (`hqsam download --mirror URL` asks for
`URL/<filename>`):

* the three HQSeg-44K zips in the release's folder names, `DIS5K.zip` holding `DIS5K/...` and
  `cascade_psp.zip`, `thin_object_detection.zip` holding their sub-folders at the top (the two forms the
  published archives are recorded to have), with JPEG images at the sizes of the real sources (DIS5K 2048 x
  1536, HRSOD 1920 x 1080, FSS-1000 224 x 224, ...) and 0/255 PNG masks anti-aliased at the edges;
* for each of REHEARSAL_MODELS the SAM that HQ-SAM trains on, in its own format (a plain SAM state dict:
  Meta's `sam_vit_b_01ec64.pth`, MobileSAM's `mobile_sam.pt`), and HQ-SAM's in the release's (`sam_hq_vit_b.pth`,
  `sam_hq_vit_tiny.pth`: the same SAM weights plus the HQ parts), random weights;
* `val2017.zip` (`val2017/<12 digits>.jpg`), `annotations_trainval2017.zip`
  (`annotations/instances_val2017.json`) and a detector's boxes, `focalnet_dino_val2017.json`, in COCO's
  formats (drawn like the toy COCO set);
* `SHA256SUMS`, which makes the mirror trusted for these files (the SAM files' pinned digests are the real ones,
  which random weights cannot match).

`serve(folder)` serves it; `hqsam rehearse DIR` does both and prints the command that runs the paper profile
against it. The images are drawn with the toy world's object generator (`hqsam.toy`), so they are
intricate, not noise; the counts are tiny, the formats and sizes are the real ones.
"""

import contextlib
import functools
import io
import shutil
import tempfile
import threading
import warnings
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageFilter

from .build import build_hqsam, build_sam
from .data.layout import HQSEG44K_LAYOUT
from .download import REGISTRY, write_sha256sums
from .io import atomic_write, build_once
from .profiles import sam_checkpoint_name
from .seeding import keyed_rng
from .toy import draw_toy_object, generate_toy_coco

PathLike = Union[str, Path]

# Source name -> (toy character, (height, width)): each source's look and an image size typical of it.
SOURCE_LOOKS: Dict[str, Tuple[str, Tuple[int, int]]] = {
    "DIS5K-TR": ("dis", (1536, 2048)),
    "DIS5K-VD": ("dis", (1536, 2048)),
    "ThinObject5K-TR": ("thin", (800, 1200)),
    "ThinObject5K-TE": ("thin", (800, 1200)),
    "COIFT": ("coift", (480, 640)),
    "HRSOD": ("hrsod", (1080, 1920)),
    "FSS-1000": ("coift", (224, 224)),
    "DUTS-TR": ("hrsod", (300, 400)),
    "DUTS-TE": ("hrsod", (300, 400)),
    "ECSSD": ("hrsod", (300, 400)),
    "MSRA-10K": ("hrsod", (300, 400)),
}
WRAPPED_ARCHIVES = ("DIS5K",)  # the others hold their sub-folders at the top
DETECTIONS_FILE = "focalnet_dino_val2017.json"
REHEARSAL_MODEL = "vit_b"  # the backbone `hqsam rehearse` suggests running the paper profile with
REHEARSAL_MODELS = (REHEARSAL_MODEL, "vit_tiny")  # whose checkpoints the mirror holds: a ViT, and Light HQ-SAM's


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _png_mask(mask: np.ndarray) -> bytes:
    """0/255 grayscale PNG with anti-aliased edges, as the released masks have them."""
    soft = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.BoxBlur(1))
    buffer = io.BytesIO()
    soft.save(buffer, "PNG")
    return buffer.getvalue()


def _write_hqseg_zips(folder: Path, seed: int, images_per_source: int) -> None:
    members: Dict[str, Dict[str, bytes]] = {}
    for source_id, spec in enumerate(HQSEG44K_LAYOUT):
        character, (height, width) = SOURCE_LOOKS[spec.name]
        archive = spec.image_dir.split("/")[0]
        wrap = archive in WRAPPED_ARCHIVES
        inside = {path: path if wrap else path.split("/", 1)[1] for path in (spec.image_dir, spec.mask_dir)}
        for index in range(images_per_source):
            image, mask = draw_toy_object(keyed_rng(seed, source_id, index), height, width, character)
            stem = f"{spec.name.lower()}_{index:04d}"
            files = members.setdefault(archive, {})
            files[f"{inside[spec.image_dir]}/{stem}{spec.image_ext}"] = _jpeg(image)
            files[f"{inside[spec.mask_dir]}/{stem}{spec.mask_ext}"] = _png_mask(mask)
    for archive, files in members.items():
        with atomic_write(folder / REGISTRY[archive].filename) as file, zipfile.ZipFile(file, "w") as zipped:
            for name, data in sorted(files.items()):
                zipped.writestr(name, data)


def _write_checkpoints(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    for model_type in REHEARSAL_MODELS:
        sam = build_sam(model_type).state_dict()
        with atomic_write(folder / REGISTRY[sam_checkpoint_name(model_type)].filename) as file:
            torch.save(sam, file)  # Meta's and MobileSAM's format: the plain state dict
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random HQ parts are the point here
            hq = build_hqsam(model_type)
        hq.load_state_dict(sam, strict=False)
        with atomic_write(folder / REGISTRY[f"sam_hq_{model_type}"].filename) as file:
            torch.save(hq.state_dict(), file)


def _write_coco(folder: Path, seed: int, num_images: int) -> None:
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        coco = generate_toy_coco(scratch, seed=seed, num_images=num_images)
        with atomic_write(folder / REGISTRY["coco_val2017"].filename) as file, zipfile.ZipFile(file, "w") as zipped:
            for image in sorted((coco / "images").iterdir()):
                zipped.write(image, f"val2017/{image.name}")
        annotations = REGISTRY["coco_annotations_trainval2017"].filename
        with atomic_write(folder / annotations) as file, zipfile.ZipFile(file, "w") as zipped:
            zipped.write(coco / "instances.json", "annotations/instances_val2017.json")
        shutil.copyfile(coco / "detections.json", folder / DETECTIONS_FILE)


def write_rehearsal(
    folder: PathLike, seed: int = 0, images_per_source: int = 2, coco_images: int = 2, overwrite: bool = False
) -> Path:
    """Write the rehearsal mirror into `folder` (see the module docstring); returns it.

    Built in a temporary folder that replaces `folder` in one rename; a second call with the same arguments
    finds the manifest and does nothing.
    """
    params = {"seed": seed, "images_per_source": images_per_source, "coco_images": coco_images,
              "models": list(REHEARSAL_MODELS)}

    def build(staging: Path) -> Dict[str, int]:
        _write_hqseg_zips(staging, seed, images_per_source)
        _write_checkpoints(staging, seed)
        _write_coco(staging, seed, coco_images)
        served = sorted(path.name for path in staging.iterdir())
        write_sha256sums(staging, served)
        return {".": len(served) + 2}  # with SHA256SUMS and the manifest

    folder = Path(folder)
    build_once(folder, params, build, overwrite)
    return folder


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: PathLike, port: int = 0) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (`port` 0: any free one) in a background thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
