import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.backend_bases import KeyEvent, MouseButton, MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hqsam import HQSamPredictor
from hqsam.tour import EVERYTHING_SETTINGS, PromptTour, everything_settings, segment_everything, use_widget_backend


@pytest.fixture()
def tour(toy_model, image):
    figure = Figure(figsize=(9, 3))
    FigureCanvasAgg(figure)
    gt = np.zeros(image.shape[:2], dtype=bool)
    gt[50:120, 80:200] = True
    tour = PromptTour(HQSamPredictor(toy_model), image, gt=gt, figure=figure)
    figure.canvas.draw()  # fixes the axes' transforms, as showing the figure would
    return tour


def _mouse(tour, name, xy, button=MouseButton.LEFT, axes="prompts"):
    x, y = tour.axes[axes].transData.transform(xy)
    event = MouseEvent(name, tour.figure.canvas, x, y, button=button)
    tour.figure.canvas.callbacks.process(name, event)


def _click(tour, xy, button=MouseButton.LEFT, axes="prompts"):
    _mouse(tour, "button_press_event", xy, button, axes)
    _mouse(tour, "button_release_event", xy, button, axes)


def _key(tour, key):
    tour.figure.canvas.callbacks.process("key_press_event", KeyEvent("key_press_event", tour.figure.canvas, key))


def _direct(toy_model, image, **prompts):
    predictor = HQSamPredictor(toy_model)
    predictor.set_image(image)
    sam_masks, sam_scores, _ = predictor.predict_sam(**prompts)
    hq_masks, _, _ = predictor.predict(**prompts, hq_token_only=True)
    return sam_masks[int(np.argmax(sam_scores))], hq_masks[0]


def test_no_prompt_no_masks(tour):
    assert tour.masks == {}
    assert tour.axes["SAM"].get_title() == "SAM: add a prompt"


def test_clicks_add_positive_and_negative_points_and_masks_equal_the_predictor(tour, toy_model, image):
    _click(tour, (150, 80))
    assert tour.points == [(150.0, 80.0, 1)]
    sam, hq = _direct(toy_model, image, point_coords=np.array([[150, 80]]), point_labels=np.array([1]),
                      multimask_output=True)
    np.testing.assert_array_equal(tour.masks["SAM"], sam)
    np.testing.assert_array_equal(tour.masks["HQ-SAM"], hq)
    _click(tour, (40, 30), button=MouseButton.RIGHT)
    assert tour.points[-1] == (40.0, 30.0, 0)
    sam, hq = _direct(toy_model, image, point_coords=np.array([[150, 80], [40, 30]]), point_labels=np.array([1, 0]),
                      multimask_output=False)
    np.testing.assert_array_equal(tour.masks["SAM"], sam)
    np.testing.assert_array_equal(tour.masks["HQ-SAM"], hq)
    assert tour.axes["HQ-SAM"].get_title().startswith("HQ-SAM: IoU ")


def test_drag_sets_a_box_in_either_direction(tour, toy_model, image):
    _mouse(tour, "button_press_event", (200, 120))
    _mouse(tour, "motion_notify_event", (120, 90))
    assert tour._preview.get_visible()
    _mouse(tour, "button_release_event", (80, 50))
    np.testing.assert_allclose(tour.box, [80, 50, 200, 120], atol=1e-6)
    assert tour.points == [] and not tour._preview.get_visible()
    sam, hq = _direct(toy_model, image, box=tour.box, multimask_output=False)
    np.testing.assert_array_equal(tour.masks["SAM"], sam)
    np.testing.assert_array_equal(tour.masks["HQ-SAM"], hq)


def test_clicks_elsewhere_are_ignored_and_keys_undo_and_clear(tour):
    _click(tour, (10, 10), axes="SAM")
    assert tour.points == []
    _click(tour, (100, 100))
    _click(tour, (120, 100))
    _key(tour, "u")
    assert tour.points == [(100.0, 100.0, 1)]
    tour.set_box([10, 10, 60, 60])
    _key(tour, "c")
    assert tour.points == [] and tour.box is None and tour.masks == {}


def test_typed_prompts_and_their_errors(tour, toy_model, image):
    tour.apply_text("20, 30, 220, 150", "100 90 1; 30, 40, 0")
    assert tour.points == [(100.0, 90.0, 1), (30.0, 40.0, 0)]
    np.testing.assert_array_equal(tour.box, [20, 30, 220, 150])
    sam, hq = _direct(toy_model, image, point_coords=np.array([[100, 90], [30, 40]]), point_labels=np.array([1, 0]),
                      box=np.array([20, 30, 220, 150]), multimask_output=False)
    np.testing.assert_array_equal(tour.masks["HQ-SAM"], hq)
    for box_text, points_text, message in [
        ("20, 30, 220", "", "a box is 4 numbers"),
        ("220, 30, 20, 150", "", "x0 < x1"),
        ("", "10, 10, 2", r"label is 1 \(positive\) or 0"),
        ("", "900, 10, 1", "outside the 300 x 200 image"),
        ("", "ten, 10, 1", "a point is 3 numbers"),
    ]:
        with pytest.raises(ValueError, match=message):
            tour.apply_text(box_text, points_text)
        assert tour.points == [(100.0, 90.0, 1), (30.0, 40.0, 0)]  # unchanged
        np.testing.assert_array_equal(tour.box, [20, 30, 220, 150])


def test_controls_apply_typed_prompts_and_show_errors(tour):
    pytest.importorskip("ipywidgets")
    box = tour.controls()
    (box_text, points_text), (apply, undo, clear), status = box.children[0].children, box.children[1].children, box.children[2]
    box_text.value = "20, 30, 220, 150"
    apply.click()
    np.testing.assert_array_equal(tour.box, [20, 30, 220, 150])
    assert status.value == "0 point(s), box [20.0, 30.0, 220.0, 150.0]"
    points_text.value = "100, 90, 5"
    apply.click()
    assert status.value.startswith("not applied: a point's label is 1")
    clear.click()
    assert tour.box is None


def test_bad_inputs(toy_model, image):
    predictor = HQSamPredictor(toy_model)
    with pytest.raises(ValueError, match="H x W x 3 image"):
        PromptTour(predictor, image[..., 0], figure=Figure())
    with pytest.raises(ValueError, match="does not match the image"):
        PromptTour(predictor, image, gt=np.zeros((5, 5), bool), figure=Figure())


def test_without_a_kernel_the_widget_backend_is_declined_with_a_note(capsys):
    backend = matplotlib.get_backend()
    use_widget_backend()
    assert capsys.readouterr().out.startswith("no interactive matplotlib backend (")
    assert matplotlib.get_backend() == backend


def test_segment_everything_settings_by_name(toy_model, image):
    assert [everything_settings("toy", True), everything_settings("toy", False), everything_settings("vit_l", False)] \
        == ["quick", "toy", "meta"]
    records = segment_everything(toy_model, image, "quick")
    points = {tuple(record["point_coords"][0]) for record in records}
    assert records and len(points) <= EVERYTHING_SETTINGS["quick"]["points_per_side"] ** 2
    with pytest.raises(ValueError, match="settings must be one of"):
        segment_everything(toy_model, image, "fast")
