"""What the notebooks call: `setup`, the first cell of every one (its papermill parameters checked, the profile's
files from `hqsam.profiles`, the device), and each stage's steps that take more than one library call: making or
downloading the inputs (01), training in this kernel or under torchrun (02), the evaluation's settings and COCO
inputs (04), the masks the qualitative figures compare (03, 05) and Table 10's rows (05).

Quick mode (CI: `HQSAM_QUICK=1`, or a notebook's `quick` parameter) changes sizes here, and only here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from . import provenance
from .data import LAYOUTS, read_layout, validation_report
from .data.hqseg44k import download_coco, download_hqseg44k
from .decoding import MODELS
from .download import download
from .eval.hq_benchmark import protocol_masks
from .eval.speed import backbone_sizes
from .figures import pick_by_gain
from .io import atomic_write
from .modeling import HQSam
from .profiles import PAPER_BACKBONES, Profile, get_profile, resolve_device
from .report import paired_bootstrap
from .seeding import use_deterministic_algorithms
from .toy import generate_toy_coco, generate_toy_world, loss_log_path, released_toy_sam
from .toy.release import read_record
from .train import fit, load_config

PathLike = Union[str, Path]

# Quick mode's sizes: every notebook in a few minutes on 2 CPU cores.
QUICK_TOY_DATA = {"num_train": 60, "num_val": 6, "num_coco": 6}
QUICK_TRAINING = ("epochs=2", "lr_drop_epoch=1", "batch_size=4", "max_val_images=3", "loss_points=256")
QUICK_EVALUATION = {"max_images": 3, "trials": 1, "speed_repeats": 2}
QUICK_GRID_DATASETS = 2
SPEED_COLUMNS = ("fps", "params_total_mb", "params_learnable_mb", "peak_memory_gb")


class Setup(NamedTuple):
    quick: bool  # the notebook's `quick` parameter, or HQSAM_QUICK=1 in the environment
    device: str  # "auto" resolved
    paths: Profile  # the profile's settings and files


def setup(profile: str, device: str = "auto", root: PathLike = "..", quick: bool = False,
          model_type: Optional[str] = None) -> Setup:
    """A notebook's first call: stops it at once on a bad profile, backbone or device, before anything is written.

    `quick` is also set by HQSAM_QUICK=1 in the environment: that is how `make test` runs the notebooks under
    nbval, which cannot pass parameters. Quick runs keep their files under ROOT/.quick (`hqsam.profiles`)."""
    quick = bool(quick) or os.environ.get("HQSAM_QUICK") == "1"
    paths = get_profile(profile, Path(root), quick, model_type)
    use_deterministic_algorithms()
    return Setup(quick, resolve_device(device), paths)


def data_report(paths: Profile, sources: Sequence) -> pd.DataFrame:
    """The data validation report of `sources` (`hqsam.data.validation_report`), saved with its provenance as
    results/<profile>/data_report.csv."""
    report = validation_report(sources)
    made = provenance.describe("data_report", {"sources": provenance.data_identity(sources)}, {}, "hqsam.data.sources")
    provenance.save_csv(report, paths.results / "data_report.csv", made, index=False)
    return report


def claim_results(paths: Profile, made: dict) -> Path:
    """Make the profile's results folder hold only results that can be read with those of `made` (the same
    weights, data, precision, device and image limit): notebook 04 owns it, so anything else there is removed,
    each file named (`hqsam.provenance.claim_folder`)."""
    return provenance.claim_folder(paths.results, made, own=(), force=True)


def save_speed(paths: Profile, speed: Dict[str, Dict[str, float]], model: HQSam, repeats: int, warmup: int) -> Path:
    """`hqsam.eval.measure_speed`'s result as results/<profile>/speed.json, with its provenance (the weights and
    the device; the repetitions)."""
    made = provenance.describe("speed", {"model": provenance.model_identity(model), "device": model.device.type},
                               {"repeats": repeats, "warmup": warmup}, "hqsam.eval.speed")
    path = paths.results / "speed.json"
    with atomic_write(path, "w") as file:
        json.dump(speed, file, indent=2)
    provenance.write_provenance(path, made)
    return path


def prepare_data(paths: Profile, quick: bool = False, mirror: Optional[str] = None, num_train: int = 600,
                 num_val: int = 40, num_coco: int = 40) -> list:
    """Make or download the profile's inputs, and return every source the data validation report reads.

    toy: the toy world (`num_train` training images, `num_val` per validation set) and its COCO-format set
    (`num_coco` images), quick mode's sizes being QUICK_TOY_DATA; the released toy SAM is checked by its digest
    (`hqsam.toy.released_toy_sam`). paper: SAM's and HQ-SAM's checkpoints, HQSeg-44K and COCO val2017, from the
    official addresses or `mirror` (a base URL).

    Returns:
      list: the layout's sources (`hqsam.data.read_layout`).
    """
    layout = LAYOUTS[paths.layout]
    if paths.name == "paper":
        for name in paths.checkpoint_names:
            download(name, paths.checkpoints, base_url=mirror)
        download_hqseg44k(paths.data_root, base_url=mirror, downloads_dir=paths.downloads)
        download_coco(paths.coco_root, base_url=mirror, downloads_dir=paths.downloads)
        return read_layout(paths.data_root, layout)
    sizes = QUICK_TOY_DATA if quick else dict(num_train=num_train, num_val=num_val, num_coco=num_coco)
    generate_toy_world(paths.data_root, num_train=sizes["num_train"], num_val=sizes["num_val"])
    generate_toy_coco(paths.data_root, num_images=sizes["num_coco"])
    released_toy_sam(paths.sam_checkpoint)
    return read_layout(paths.data_root, layout)


def toy_sam_losses(paths: Profile) -> Tuple[dict, pd.DataFrame]:
    """The released toy SAM's record (`hqsam.toy.release`) and its per-step training losses, indexed by step."""
    return read_record(paths.sam_checkpoint), pd.read_csv(loss_log_path(paths.sam_checkpoint)).set_index("step")


def training_overrides(
    paths: Profile, device: str, quick: bool = False, epochs: Optional[int] = None, precision: Optional[str] = None,
    overrides: Sequence[str] = (),
) -> List[str]:
    """The config overrides (`hqsam.train.load_config`) a notebook trains with, later ones winning: the profile's
    backbone, data, frozen SAM and output folder, `device`, no progress bars; `precision` and `epochs` when given;
    quick mode's short schedule (QUICK_TRAINING); then `overrides`."""
    chosen = [f"model_type={paths.model_type}", f"data_root={paths.data_root}",
              f"sam_checkpoint={paths.sam_checkpoint}", f"output_dir={paths.train_dir}", f"device={device}",
              "progress=false"]
    if precision is not None:
        chosen.append(f"precision={precision}")
    if epochs is not None:
        chosen.append(f"epochs={epochs}")
    if quick:
        chosen += QUICK_TRAINING
    return chosen + list(overrides)


def train_hqsam(
    paths: Profile, device: str, quick: bool = False, ngpus: int = 1, epochs: Optional[int] = None,
    precision: Optional[str] = None, overrides: Sequence[str] = (),
) -> None:
    """Train HQ-SAM with the profile's recipe (hqsam/configs/<profile>.yaml) and `training_overrides` into the
    profile's training folder, which this notebook owns: a saved run of the same provenance is resumed, one of
    other settings replaced (and named). The paper profile on `ngpus` > 1 GPUs runs as `hqsam train` under
    torchrun, its output streamed here; otherwise in this process. RuntimeError if torchrun fails."""
    overrides = training_overrides(paths, device, quick, epochs, precision, overrides)
    if paths.name == "paper" and ngpus > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ngpus}",
                   "-m", "hqsam", "train", "--config", paths.name, "--resume", "--force", *overrides]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
            for line in run.stdout:
                print(line, end="")
        if run.returncode:
            raise RuntimeError(f"torchrun exited with {run.returncode}")
        return
    result = fit(load_config(paths.name, overrides), resume=True, force=True)
    print(f"{result.steps} steps in {result.seconds:.0f} s; checkpoint {result.checkpoint}")


class EvaluationSettings(NamedTuple):
    max_images: Optional[int]  # per dataset; None: all
    trials: Optional[int]  # random point draws per image (Figure 5)
    speed_repeats: Optional[int]  # timed passes per model
    precision: str  # the frozen encoder's, fp32 or bf16


def evaluation_settings(
    paths: Profile, quick: bool = False, max_images: Optional[int] = None, trials: Optional[int] = 3,
    speed_repeats: Optional[int] = 5, precision: Optional[str] = None,
) -> EvaluationSettings:
    """What notebook 04 evaluates with: the given counts, or quick mode's (QUICK_EVALUATION), each a positive
    integer or None (no limit); `precision`, or by default the profile's training recipe's: one setting for
    training and evaluation."""
    counts = QUICK_EVALUATION if quick else dict(max_images=max_images, trials=trials, speed_repeats=speed_repeats)
    _check_counts(**counts)
    return EvaluationSettings(**counts, precision=precision or load_config(paths.name).precision)


def coco_inputs(paths: Profile, detections: Optional[PathLike] = None,
                oracle: bool = False) -> Tuple[Path, Path, Optional[Path]]:
    """`hqsam.eval.coco.evaluate_coco`'s images, annotations and detector boxes: `detections` (a COCO results
    JSON) if given, else the profile's; None with `oracle` (prompts from the GT boxes)."""
    if oracle:
        return paths.coco_images, paths.coco_annotations, None
    return paths.coco_images, paths.coco_annotations, Path(detections) if detections else paths.coco_detections


def speed_table(speed: Dict[str, Dict[str, float]]) -> pd.DataFrame:
    """`hqsam.eval.measure_speed`'s result as one row per model: speed, sizes and peak memory (SPEED_COLUMNS)."""
    return pd.DataFrame({name: {column: speed[name][column] for column in SPEED_COLUMNS} for name in MODELS}).T


def grid_samples(paths: Profile, rows: pd.DataFrame, quick: bool = False,
                 count: Optional[int] = None) -> Tuple[list, pd.DataFrame]:
    """The qualitative grid's rows: `hqsam.figures.pick_by_gain` of the HQ benchmark's per-image rows (`rows`,
    notebook 04's hq_rows.csv) for their first `count` datasets (None: all; QUICK_GRID_DATASETS in quick mode), up
    to 3 images each, and the profile's validation samples they name, in their order.

    Returns:
      (samples, picks): the samples, and `pick_by_gain`'s table of them (`hqsam.figures.qualitative_grid`'s
        `picks`). ValueError names any picked image the validation data lack (rerun notebook 04).
    """
    _check_counts(grid_datasets=count)
    datasets = list(dict.fromkeys(rows["dataset"]))[: QUICK_GRID_DATASETS if quick else count]
    picks = pick_by_gain(rows, datasets=datasets)
    sources = read_layout(paths.data_root, LAYOUTS[paths.layout], split="val")
    found = {f"{source.name}/{stem}": (source, index) for source in sources for index, stem in enumerate(source.stems)}
    unknown = [image for image in picks["image"] if image not in found]
    if unknown:
        raise ValueError(f"the results name images the validation data lack: {unknown}; rerun notebook 04")
    return [source[index] for source, index in map(found.get, picks["image"])], picks


def gt_box_masks(model: HQSam, samples: Sequence) -> Tuple[List[Dict[str, np.ndarray]], List[np.ndarray]]:
    """SAM's and HQ-SAM's masks for each sample as the HQ benchmark makes and scores them
    (`hqsam.eval.hq_benchmark.protocol_masks`: the GT tight box, HQ-SAM's mask from the HQ token alone), so the
    qualitative grid's scores are the benchmark's, and the box prompts in the image's own pixels.

    Returns:
      (masks, boxes): per sample a {"SAM": H x W bool, "HQ-SAM": H x W bool} mapping, and its x0, y0, x1, y1 box
        (the protocol's box, drawn on its S x S resize, scaled back to the image).
    """
    masks, boxes = protocol_masks(model, samples)
    size = model.image_encoder.img_size
    scales = [np.array([w, h, w, h], dtype=np.float32) / size for h, w in (s.mask.shape for s in samples)]
    return masks, [box.numpy() * scale for box, scale in zip(boxes, scales)]


RESULTS = {"hq_rows": "hq_rows.csv", "hq_summary": "hq_summary.csv", "noise_rows": "box_noise_rows.csv",
           "noise_summary": "box_noise_summary.csv", "points_rows": "points_rows.csv",
           "points_summary": "points_summary.csv", "coco": "coco/metrics.csv", "speed": "speed.json"}  # notebook 04's


class Results(NamedTuple):
    """Notebook 04's results, as notebook 05 reads them."""

    hq_summary: pd.DataFrame  # indexed by model
    noise_summary: pd.DataFrame  # by (model, noise_scale)
    points_summary: pd.DataFrame  # by (model, pos_points, neg_points)
    coco: pd.DataFrame  # by model: AP, ..., AP_B
    speed: Dict[str, Dict[str, float]]  # hqsam.eval.measure_speed's
    intervals: Dict[str, pd.DataFrame]  # "hq", "box_noise", "points": hqsam.report.paired_bootstrap of the rows
    hq_rows: pd.DataFrame  # the HQ benchmark's per-image rows (dataset, image, model, iou, biou)
    made: dict  # the provenance they share (hqsam.provenance.combined)


def read_results(paths: Profile) -> Results:
    """Read notebook 04's results from results/<profile>/, checked to come from one model, one dataset, one
    precision, device and image limit (a ValueError names two files that do not, and says to rerun notebook 04),
    with the bootstrap intervals and win counts of their per-image rows, which are saved beside them as
    <name>_bootstrap.csv with the same provenance, and the HQ benchmark's per-image rows (the qualitative grid's
    picks, `grid_samples`)."""
    files = {name: paths.results / file for name, file in RESULTS.items()}
    made = provenance.combined("tables", list(files.values()))
    rows = {name: pd.read_csv(files[f"{name}_rows"]) for name in ("hq", "noise", "points")}
    intervals = {"hq": paired_bootstrap(rows["hq"]), "box_noise": paired_bootstrap(rows["noise"], "noise_scale"),
                 "points": paired_bootstrap(rows["points"], ["pos_points", "neg_points"])}
    for name, table in intervals.items():
        provenance.save_csv(table, paths.results / f"{name}_bootstrap.csv", made)
    return Results(
        pd.read_csv(files["hq_summary"], index_col=0), pd.read_csv(files["noise_summary"], index_col=[0, 1]),
        pd.read_csv(files["points_summary"], index_col=[0, 1, 2]), pd.read_csv(files["coco"], index_col=0),
        json.loads(files["speed"].read_text()), intervals, rows["hq"], made,
    )


def backbone_rows(model_type: str, hq_summary: pd.DataFrame, coco: pd.DataFrame,
                  speed: Dict[str, Dict[str, float]]) -> List[Dict[str, object]]:
    """Table 10's rows (`hqsam.report.compare_backbones`): ours for `model_type`, from notebook 04's results (the
    HQ benchmark's average, COCO AP, speed), then the learnable parameters of every other paper backbone, from
    shapes alone (`hqsam.eval.speed.backbone_sizes`)."""
    rows = [
        {"model": name, "backbone": model_type, "hq4_miou": hq_summary.loc[name, "average mIoU"],
         "hq4_mbiou": hq_summary.loc[name, "average mBIoU"], "coco_ap": coco.loc[name, "AP"],
         "coco_ap_b": coco.loc[name, "AP_B"], "params_learnable_mb": speed[name]["params_learnable_mb"],
         "fps": speed[name]["fps"], "memory_gb": speed[name]["peak_memory_gb"]}
        for name in MODELS
    ]
    return rows + backbone_sizes([other for other in PAPER_BACKBONES if other != model_type])


def _check_counts(**counts: Optional[int]) -> None:
    """Each count (e.g. max_images=20) must be a positive integer, or None (no limit)."""
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
