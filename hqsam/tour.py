"""Interactive prompting for the tour notebook: click to add points, drag or type a box, SAM and HQ-SAM side by side.

Mouse and keys go through matplotlib's event API, so any interactive backend works: in Jupyter that is ipympl
(`%matplotlib widget`). Under the static inline backend the same object is driven by the ipywidgets text boxes
of `PromptTour.controls()`, and tests drive it with synthetic events; `use_widget_backend` switches to ipympl
when it is there.

  left click: positive point    right click: negative point    left drag: box
  key "u": remove the last point    key "c": clear all prompts

`segment_everything` is the tour's last stop: every mask of the image, from HQSamAutomaticMaskGenerator.
"""

import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from matplotlib.backend_bases import KeyEvent, MouseButton, MouseEvent
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .automatic_mask_generator import HQSamAutomaticMaskGenerator
from .figures import BOX_COLOUR, GT_COLOUR, MODEL_COLOURS, overlay, show_image
from .metrics import boundary_iou, mask_iou
from .modeling import HQSam

DRAG_PIXELS = 5  # a press and release further apart than this (screen pixels) is a box, closer is a click
STATIC_CANVASES = ("matplotlib.backend_bases", "matplotlib.backends.backend_agg", "matplotlib_inline.backend_inline")
POINT_STYLE = {1: dict(marker="*", color="#00ff00"), 0: dict(marker="X", color="#ff0000")}
# "Segment everything"'s settings by name (HQSamAutomaticMaskGenerator's arguments). Meta's thresholds (predicted IoU
# 0.88, stability 0.95) keep nothing on the toy world, where the toy SAM's predicted IoUs stay below ~0.4: the toy gets
# those benchmarks/amg_candidates.py measures with, and a point about every 10 px. "quick" checks the path, not the
# masks (CI; the paper profile's rehearsal, random weights at real image sizes).
EVERYTHING_SETTINGS: Dict[str, Dict[str, float]] = {
    "meta": {},
    "toy": dict(points_per_side=16, pred_iou_thresh=0.1, stability_score_thresh=0.5),
    "quick": dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0),
}


def use_widget_backend() -> None:
    """Switch matplotlib to ipympl's widget backend (`%matplotlib widget`), so that a PromptTour's figure takes
    clicks and drags; without a Jupyter kernel or ipympl, say so and stay static (type the prompts instead)."""
    try:
        from IPython import get_ipython

        get_ipython().run_line_magic("matplotlib", "widget")
    except Exception as error:  # no kernel (None has no run_line_magic), or no ipympl
        print(f"no interactive matplotlib backend ({error}); type prompts instead")


def everything_settings(model_type: str, quick: bool) -> str:
    """The name of the settings (EVERYTHING_SETTINGS) the tour uses unless told: "quick" in a quick run, "toy" for
    the toy model type, else Meta's."""
    return "quick" if quick else "toy" if model_type == "toy" else "meta"


def segment_everything(model: HQSam, image: np.ndarray, settings: str) -> List[Dict[str, Any]]:
    """HQSamAutomaticMaskGenerator's records (binary masks) for an H x W x 3 uint8 image, with the named settings
    (EVERYTHING_SETTINGS)."""
    if settings not in EVERYTHING_SETTINGS:
        raise ValueError(f"settings must be one of {sorted(EVERYTHING_SETTINGS)}, got {settings!r}")
    return HQSamAutomaticMaskGenerator(model, **EVERYTHING_SETTINGS[settings]).generate(image)


class PromptTour:
    """Prompts on one image and the masks SAM and HQ-SAM give for them, from one image embedding.

    Arguments:
      predictor (HQSamPredictor): the model; `set_image(image)` is called here.
      image: H x W x 3 uint8 RGB.
      gt: optional H x W bool mask; when given, each mask's title shows its IoU and boundary IoU (%).
      figure: where to draw (three axes: prompts, SAM, HQ-SAM); None makes one with pyplot, so that an
        interactive backend (ipympl) gives it a canvas that receives clicks.
      hq_token_only: HQ-SAM's mask from the HQ token alone (the paper's HQ-benchmark setting).
    """

    def __init__(self, predictor, image: np.ndarray, gt: Optional[np.ndarray] = None,
                 figure: Optional[Figure] = None, hq_token_only: bool = True) -> None:
        self.predictor = predictor
        self.image = np.asarray(image)
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"PromptTour needs an H x W x 3 image, got shape {self.image.shape}")
        self.gt = None if gt is None else np.asarray(gt, dtype=bool)
        if self.gt is not None and self.gt.shape != self.image.shape[:2]:
            raise ValueError(f"gt mask {self.gt.shape} does not match the image {self.image.shape[:2]}")
        self.hq_token_only = hq_token_only
        self.points: List[Tuple[float, float, int]] = []  # x, y, label (1 positive, 0 negative)
        self.box: Optional[np.ndarray] = None  # x0, y0, x1, y1 in pixels
        self.masks: Dict[str, np.ndarray] = {}
        predictor.set_image(self.image)
        if figure is None:
            import matplotlib.pyplot as plt

            figure = plt.figure(figsize=(12, 4.2), layout="constrained")
        self.figure = figure
        self.axes = dict(zip(("prompts", "SAM", "HQ-SAM"), figure.subplots(1, 3)))
        self._press: Optional[MouseEvent] = None
        self._preview = Rectangle((0, 0), 0, 0, fill=False, edgecolor=BOX_COLOUR, linestyle="--", visible=False)
        canvas = figure.canvas
        canvas.mpl_connect("button_press_event", self._on_press)
        canvas.mpl_connect("motion_notify_event", self._on_motion)
        canvas.mpl_connect("button_release_event", self._on_release)
        canvas.mpl_connect("key_press_event", self._on_key)
        self._status = None  # the controls' status line, once made
        self.update()

    # ------------------------------------------------------------------------------------------------ prompts

    def add_point(self, x: float, y: float, positive: bool = True) -> None:
        self._check_point(x, y)
        self.points.append((float(x), float(y), int(bool(positive))))
        self.update()

    def set_box(self, box: Optional[np.ndarray]) -> None:
        """Set the box (x0, y0, x1, y1 in pixels, x0 < x1, y0 < y1, clipped to the image) or remove it (None)."""
        self.box = None if box is None else self._checked_box(box)
        self.update()

    def _check_point(self, x: float, y: float) -> None:
        height, width = self.image.shape[:2]
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"point ({x:g}, {y:g}) is outside the {width} x {height} image")

    def _checked_box(self, box) -> np.ndarray:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.size != 4 or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"a box is x0, y0, x1, y1 with x0 < x1 and y0 < y1, got {box.tolist()}")
        height, width = self.image.shape[:2]
        return np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])

    def undo(self) -> None:
        """Remove the last point (the box stays)."""
        if self.points:
            self.points.pop()
            self.update()

    def clear(self) -> None:
        self.points, self.box = [], None
        self.update()

    # ------------------------------------------------------------------------------------------------ masks

    def predict(self) -> Dict[str, np.ndarray]:
        """SAM's and HQ-SAM's H x W bool masks for the current prompts ({} when there are none).

        One point and no box is ambiguous, so SAM's mask is then the best of its three by predicted IoU (the
        predictor's multimask rule); otherwise both use the single-mask output."""
        if not self.points and self.box is None:
            return {}
        coords = np.array([p[:2] for p in self.points]) if self.points else None
        labels = np.array([p[2] for p in self.points]) if self.points else None
        multimask = self.box is None and len(self.points) == 1
        prompts = dict(point_coords=coords, point_labels=labels, box=self.box, multimask_output=multimask)
        sam_masks, sam_scores, _ = self.predictor.predict_sam(**prompts)
        hq_masks, _, _ = self.predictor.predict(**prompts, hq_token_only=self.hq_token_only)
        return {"SAM": sam_masks[int(np.argmax(sam_scores))], "HQ-SAM": hq_masks[0]}

    def update(self) -> None:
        """Predict for the current prompts and redraw."""
        self.masks = self.predict()
        prompts = self.axes["prompts"]
        prompts.clear()
        show_image(prompts, self.image, "prompts: click = point, drag = box")
        prompts.add_patch(self._preview)
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            prompts.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=BOX_COLOUR, linewidth=2))
        for x, y, label in self.points:
            prompts.plot(x, y, markersize=12, markeredgecolor="white", linestyle="none", **POINT_STYLE[label])
        for name in ("SAM", "HQ-SAM"):
            ax = self.axes[name]
            ax.clear()
            mask = self.masks.get(name)
            if mask is None:
                show_image(ax, self.image, f"{name}: add a prompt")
                continue
            title = name
            if self.gt is not None:
                title += f": IoU {100 * mask_iou(self.gt, mask):.1f}, BIoU {100 * boundary_iou(self.gt, mask):.1f}"
            show_image(ax, overlay(self.image, mask, MODEL_COLOURS[name]), title)
            if self.gt is not None and self.gt.any() and not self.gt.all():
                ax.contour(self.gt.astype(float), levels=[0.5], colors=[GT_COLOUR], linewidths=1)
        self.figure.canvas.draw_idle()

    # ------------------------------------------------------------------------------------------------ mouse

    def _on_press(self, event: MouseEvent) -> None:
        if event.inaxes is self.axes["prompts"] and event.button in (MouseButton.LEFT, MouseButton.RIGHT):
            self._press = event

    def _on_motion(self, event: MouseEvent) -> None:
        press = self._press
        if press is None or press.button != MouseButton.LEFT or event.inaxes is not self.axes["prompts"]:
            return
        self._preview.set_bounds(press.xdata, press.ydata, event.xdata - press.xdata, event.ydata - press.ydata)
        self._preview.set_visible(True)
        self.figure.canvas.draw_idle()

    def _on_release(self, event: MouseEvent) -> None:
        press, self._press = self._press, None
        self._preview.set_visible(False)
        if press is None or event.inaxes is not self.axes["prompts"]:
            return
        dragged = max(abs(event.x - press.x), abs(event.y - press.y)) > DRAG_PIXELS
        height, width = self.image.shape[:2]
        if dragged and press.button == MouseButton.LEFT:
            xs, ys = sorted((press.xdata, event.xdata)), sorted((press.ydata, event.ydata))
            self._report(self.set_box, [xs[0], ys[0], xs[1], ys[1]])
        elif not dragged:
            x = min(max(round(press.xdata), 0), width - 1)
            y = min(max(round(press.ydata), 0), height - 1)
            self._report(self.add_point, x, y, press.button == MouseButton.LEFT)

    def _on_key(self, event: KeyEvent) -> None:
        if event.key == "u":
            self.undo()
        elif event.key == "c":
            self.clear()

    # ------------------------------------------------------------------------------------------------ typing

    def apply_text(self, box_text: str, points_text: str) -> None:
        """Set the prompts from text: box "x0, y0, x1, y1" (empty: none); points "x, y, label; ..." with label 1
        (positive) or 0 (negative), empty: none. Raises ValueError, prompts unchanged, on anything else."""
        box = _parse_numbers(box_text, "box", 4)
        points = []
        for part in filter(None, (p.strip() for p in points_text.split(";"))):
            x, y, label = _parse_numbers(part, "point", 3)
            if label not in (0, 1):
                raise ValueError(f"a point's label is 1 (positive) or 0 (negative), got {label:g} in {part!r}")
            points.append((x, y, int(label)))
        for x, y, _ in points:
            self._check_point(x, y)
        self.box = None if box is None else self._checked_box(box)
        self.points = points
        self.update()

    def controls(self):
        """ipywidgets: box and points text boxes with Apply / Undo / Clear, and a status line for errors. On a
        non-interactive backend the figure is shown in an Output widget and redrawn after each change."""
        import ipywidgets as widgets
        from IPython.display import display

        box_text = widgets.Text(description="box", placeholder="x0, y0, x1, y1")
        points_text = widgets.Text(description="points", placeholder="x, y, label; ... (label 1 = positive, 0 = negative)")
        buttons = {name: widgets.Button(description=name) for name in ("Apply", "Undo", "Clear")}
        self._status = widgets.Label()
        interactive = type(self.figure.canvas).__module__ not in STATIC_CANVASES
        output = widgets.Output()
        if not interactive:  # shown in `output` only, not again by the inline backend at the cell's end
            import matplotlib.pyplot as plt

            plt.close(self.figure)

        def redraw() -> None:
            if not interactive:
                output.clear_output(wait=True)
                with output:
                    display(self.figure)

        def apply(_) -> None:
            self._report(self.apply_text, box_text.value, points_text.value)
            redraw()

        def act(method):
            def run(_) -> None:
                method()
                redraw()
            return run

        buttons["Apply"].on_click(apply)
        buttons["Undo"].on_click(act(self.undo))
        buttons["Clear"].on_click(act(self.clear))
        redraw()
        return widgets.VBox([widgets.HBox([box_text, points_text]), widgets.HBox(list(buttons.values())),
                             self._status] + ([] if interactive else [output]))

    def _report(self, action, *args) -> None:
        """Run a prompt change from the UI: a bad prompt shows its message instead of raising in a callback."""
        try:
            action(*args)
            message = f"{len(self.points)} point(s), box {None if self.box is None else np.round(self.box).tolist()}"
        except ValueError as error:
            message = f"not applied: {error}"
        if self._status is not None:
            self._status.value = message


def _parse_numbers(text: str, what: str, count: int) -> Optional[List[float]]:
    text = text.strip()
    if not text:
        return None
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or not np.isfinite(values).all():
        raise ValueError(f"a {what} is {count} numbers separated by commas, got {text!r}")
    return values
