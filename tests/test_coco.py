"""autotimm.metrics.COCO / COCOeval against pycocotools (bbox): exact stats and arrays."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotimm.metrics import COCO, COCOeval

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO as RefCOCO  # noqa: E402
from pycocotools.cocoeval import COCOeval as RefCOCOeval  # noqa: E402


def _quiet(fn: Any, *args: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _ref_gt(dataset: dict[str, Any]) -> RefCOCO:
    gt = RefCOCO()
    gt.dataset = copy.deepcopy(dataset)
    _quiet(gt.createIndex)
    return gt


def _ref_dt(gt: RefCOCO, results: list[dict[str, Any]]) -> RefCOCO:
    if results:
        return _quiet(gt.loadRes, copy.deepcopy(results))
    dt = RefCOCO()  # pycocotools' loadRes cannot take an empty list
    dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"]}
    dt.dataset["annotations"] = []
    _quiet(dt.createIndex)
    return dt


def _ours(dataset: dict[str, Any], results: list[dict[str, Any]]) -> tuple[COCO, COCO]:
    gt = COCO()
    gt.dataset = copy.deepcopy(dataset)
    _quiet(gt.createIndex)
    return gt, _quiet(gt.loadRes, copy.deepcopy(results))


def _configure(ev: Any, cfg: dict[str, Any]) -> None:
    for key, value in cfg.items():
        setattr(ev.params, key, copy.deepcopy(value))


def _run(ev: Any) -> Any:
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return ev


def assert_same(dataset: dict[str, Any], results: list[dict[str, Any]], cfg: dict | None = None):
    cfg = cfg or {}
    ref_gt = _ref_gt(dataset)
    ref = RefCOCOeval(ref_gt, _ref_dt(ref_gt, results), "bbox")
    _configure(ref, cfg)
    _run(ref)
    gt, dt = _ours(dataset, results)
    ours = COCOeval(gt, dt, "bbox")
    _configure(ours, cfg)
    _run(ours)
    np.testing.assert_allclose(ours.stats, ref.stats, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours.stats, ref.stats)
    for key in ("precision", "recall", "scores"):
        assert ours.eval[key].shape == ref.eval[key].shape, key
        np.testing.assert_array_equal(ours.eval[key], ref.eval[key], err_msg=key)
    assert ours.eval["counts"] == ref.eval["counts"]
    return ours, ref


# ----------------------------------------------------------------- generated
_coord = st.one_of(
    st.integers(-20, 120).map(float),
    st.floats(-20, 120, allow_nan=False, width=32),
)
_size = st.one_of(
    st.sampled_from([0.0, 1.0, 32.0, 96.0, 10.0, 40.0]),
    st.integers(0, 100).map(float),
    st.floats(0, 100, allow_nan=False, width=32),
)


@st.composite
def coco_sets(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    n_img = draw(st.integers(1, 5))
    img_ids = draw(st.lists(st.integers(0, 50), min_size=n_img, max_size=n_img, unique=True))
    n_cat = draw(st.integers(1, 4))
    cat_ids = draw(st.lists(st.integers(1, 9), min_size=n_cat, max_size=n_cat, unique=True))
    boxes = st.tuples(_coord, _coord, _size, _size)
    gts: list[dict[str, Any]] = []
    ann_ids = iter(draw(st.permutations(list(range(0, 64)))))
    for img in img_ids:
        for _ in range(draw(st.integers(0, 6))):
            x, y, w, h = draw(boxes)
            area = draw(
                st.one_of(
                    st.just(w * h),
                    st.sampled_from([1024.0, 9216.0, 0.0, 5000.0]),
                    st.floats(0, 20000, allow_nan=False),
                )
            )
            gts.append(
                {
                    "id": next(ann_ids),
                    "image_id": img,
                    "category_id": draw(st.sampled_from(cat_ids)),
                    "bbox": [x, y, w, h],
                    "area": area,
                    "iscrowd": int(draw(st.integers(0, 5)) == 0),
                }
            )
    dts: list[dict[str, Any]] = []
    score = st.one_of(st.sampled_from([0.1, 0.5, 0.9, 1.0]), st.floats(0, 1, width=32))
    for img in img_ids:
        for _ in range(draw(st.integers(0, 8))):
            if gts and draw(st.booleans()):  # near a ground truth box
                g = draw(st.sampled_from(gts))
                jitter = draw(st.lists(st.integers(-3, 3), min_size=4, max_size=4))
                box = [float(v + j) for v, j in zip(g["bbox"], jitter, strict=True)]
                box[2], box[3] = max(box[2], 0.0), max(box[3], 0.0)
                cat = (
                    g["category_id"] if draw(st.integers(0, 4)) else draw(st.sampled_from(cat_ids))
                )
                img_id = g["image_id"]
            else:
                box = list(draw(boxes))
                cat = draw(st.sampled_from([*cat_ids, 99]))  # 99: a category absent from GT
                img_id = img
            dts.append({"image_id": img_id, "category_id": cat, "bbox": box, "score": draw(score)})
    cats = sorted(set(cat_ids) | {99})
    dataset = {
        "images": [{"id": i} for i in img_ids],
        "categories": [{"id": c, "name": str(c)} for c in cats],
        "annotations": gts,
    }
    return dataset, dts


_configs = st.sampled_from(
    [
        {},
        {"maxDets": [1, 2, 3]},
        {"maxDets": [3, 1, 100]},
        {"useCats": 0},
        {"iouThrs": np.array([0.1, 0.5, 0.7, 1.0])},
        {"recThrs": np.array([0.0, 0.25, 0.5, 1.0])},
        {"areaRng": [[0, 1e10], [0, 400], [400, 2500], [2500, 1e10]]},
    ]
)


@settings(max_examples=250)
@given(data=coco_sets(), cfg=_configs)
def test_equals_pycocotools_on_generated_sets(data: tuple, cfg: dict[str, Any]) -> None:
    dataset, results = data
    assert_same(dataset, results, cfg)


def _synthetic(n_img: int, n_cat: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    images = [
        {"id": int(i), "width": 640, "height": 480} for i in rng.permutation(10 * n_img)[:n_img]
    ]
    anns, dts = [], []
    for img in images:
        k = int(rng.integers(0, 15))
        xy = rng.uniform(-10, 600, (k, 2))
        wh = rng.exponential(60, (k, 2))
        cats = rng.integers(1, n_cat + 1, k)
        for j in range(k):
            box = [*xy[j].round(1).tolist(), *wh[j].round(1).tolist()]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": int(cats[j]),
                    "bbox": box,
                    "area": float(box[2] * box[3] * rng.uniform(0.6, 1.0)),
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
            if rng.random() < 0.8:
                noisy = (np.array(box) + rng.normal(0, 4, 4)).round(2).tolist()
                dts.append(
                    {
                        "image_id": img["id"],
                        "category_id": int(cats[j]),
                        "bbox": noisy,
                        "score": round(float(rng.random()), 3),
                    }
                )
        for _ in range(int(rng.integers(0, 40))):
            xy0 = rng.uniform(0, 600, 2)
            dts.append(
                {
                    "image_id": img["id"],
                    "category_id": int(rng.integers(1, n_cat + 1)),
                    "bbox": [*xy0.round(2).tolist(), *rng.exponential(50, 2).round(2).tolist()],
                    "score": round(float(rng.random()), 2),
                }
            )
    cats = [{"id": c, "name": f"c{c}", "supercategory": "s"} for c in range(1, n_cat + 1)]
    return {"images": images, "categories": cats, "annotations": anns}, dts


def test_equals_pycocotools_on_a_medium_synthetic_set() -> None:
    dataset, results = _synthetic(300, 12, seed=1)
    assert_same(dataset, results)


def test_json_files_match_pycocotools(tmp_path: Path) -> None:
    dataset, results = _synthetic(60, 5, seed=2)
    gt_file, dt_file = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_file.write_text(json.dumps(dataset))
    dt_file.write_text(json.dumps(results))
    ref_gt = _quiet(RefCOCO, str(gt_file))
    ref = _run(RefCOCOeval(ref_gt, _quiet(ref_gt.loadRes, str(dt_file)), "bbox"))
    gt = _quiet(COCO, gt_file)
    dt = _quiet(gt.loadRes, str(dt_file))
    ours = _run(COCOeval(gt, dt, "bbox"))
    np.testing.assert_array_equal(ours.stats, ref.stats)
    np.testing.assert_array_equal(ours.eval["precision"], ref.eval["precision"])
    # pycocotools' query API on the same data
    assert gt.getImgIds() == ref_gt.getImgIds()
    assert gt.getCatIds() == ref_gt.getCatIds()
    assert gt.getCatIds(catNms=["c2"]) == ref_gt.getCatIds(catNms=["c2"])
    ids = ref_gt.getImgIds()[:7]
    assert gt.getAnnIds(imgIds=ids[::-1]) == ref_gt.getAnnIds(imgIds=ids[::-1])
    assert gt.getAnnIds(catIds=[2, 3], iscrowd=False) == ref_gt.getAnnIds(
        catIds=[2, 3], iscrowd=False
    )
    assert gt.getAnnIds(areaRng=[100, 5000]) == ref_gt.getAnnIds(areaRng=[100, 5000])
    assert sorted(gt.getImgIds(catIds=[1, 2])) == sorted(ref_gt.getImgIds(catIds=[1, 2]))
    # pycocotools adds "ignore"/"_ignore" to its dicts while evaluating
    keep = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
    ref_anns = [{k: a[k] for k in keep} for a in ref_gt.loadAnns(ref_gt.getAnnIds()[:3])]
    assert gt.loadAnns(gt.getAnnIds()[:3]) == ref_anns
    assert gt.dataset["images"] == ref_gt.dataset["images"]
    assert len(dt.dataset["annotations"]) == len(results)
    assert dt.dataset["annotations"][0]["area"] == results[0]["bbox"][2] * results[0]["bbox"][3]


def test_summarize_prints_pycocotools_lines() -> None:
    dataset, results = _synthetic(40, 3, seed=3)
    ref_gt = _ref_gt(dataset)
    ref = RefCOCOeval(ref_gt, _ref_dt(ref_gt, results), "bbox")
    _quiet(ref.evaluate)
    _quiet(ref.accumulate)
    gt, dt = _ours(dataset, results)
    ours = COCOeval(gt, dt, "bbox")
    _quiet(ours.evaluate)
    _quiet(ours.accumulate)
    buf_ref, buf_ours = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_ref):
        ref.summarize()
    with contextlib.redirect_stdout(buf_ours):
        ours.summarize()
    assert buf_ours.getvalue() == buf_ref.getvalue()


def test_load_res_from_numpy_array() -> None:
    dataset, results = _synthetic(20, 3, seed=4)
    arr = np.array(
        [[r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in results], np.float64
    )
    ref_gt = _ref_gt(dataset)
    ref = _run(RefCOCOeval(ref_gt, _quiet(ref_gt.loadRes, arr), "bbox"))
    gt, _ = _ours(dataset, [])
    ours = _run(COCOeval(gt, _quiet(gt.loadRes, arr), "bbox"))
    np.testing.assert_array_equal(ours.stats, ref.stats)


def test_no_detections_gives_zero_ap() -> None:
    dataset, _ = _synthetic(10, 2, seed=5)
    ours, ref = assert_same(dataset, [])
    assert ours.stats[0] == 0.0


def test_no_ground_truth_gives_minus_one() -> None:
    dataset, results = _synthetic(10, 2, seed=6)
    dataset["annotations"] = []
    ours, _ = assert_same(dataset, results)
    assert (ours.stats == -1).all()


def test_gt_with_id_zero_behaves_as_in_pycocotools() -> None:
    dataset = {
        "images": [{"id": 1}],
        "categories": [{"id": 1}],
        "annotations": [
            {
                "id": 0,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 10, 10],
                "area": 100,
                "iscrowd": 0,
            }
        ],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
    ]
    assert_same(dataset, results)


# --------------------------------------------------------------------- errors
def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        COCO(tmp_path / "nope.json")
    gt, _ = _ours({"images": [{"id": 1}], "categories": [], "annotations": []}, [])
    with pytest.raises(FileNotFoundError):
        gt.loadRes(str(tmp_path / "nope.json"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"images": [{"id": 1}], "annotations": [', "EOF"),
        ('{"images": [{"id": 1.5}]}', "images[0]: expected an integer or a string id, got 1.5"),
        ('{"images": [{"id": 1}, {"id": "a"}]}', "all integers or all strings"),
        ('{"annotations": [{"id": 1, "image_id": 1, "category_id": 1}]}', "bbox"),
        ("[1, 2]", "COCO"),
    ],
)
def test_malformed_ground_truth_names_file_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        COCO(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_malformed_results(tmp_path: Path) -> None:
    gt, _ = _ours({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []}, [])
    path = tmp_path / "res.json"
    path.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5}]')
    with pytest.raises(ValueError, match="res.json"):
        gt.loadRes(str(path))
    path.write_text('[{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]')
    with pytest.raises(ValueError, match="do not correspond"):
        gt.loadRes(str(path))
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        gt.loadRes(np.zeros((3, 6)))


# ------------------------------------------------- what pycocotools also reads
def _files(tmp_path: Path, dataset: Any, results: Any) -> tuple[str, str]:
    gt_file, dt_file = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_file.write_text(json.dumps(dataset))  # NaN/Infinity as Python's json writes them
    dt_file.write_text(json.dumps(results))
    return str(gt_file), str(dt_file)


def _both_from_files(gt_file: str, dt_file: str, ref_dt: Any = None) -> tuple[Any, Any]:
    ref_gt = _quiet(RefCOCO, gt_file)
    ref = _run(RefCOCOeval(ref_gt, _quiet(ref_gt.loadRes, ref_dt or dt_file), "bbox"))
    gt = _quiet(COCO, gt_file)
    ours = _run(COCOeval(gt, _quiet(gt.loadRes, dt_file), "bbox"))
    return ours, ref


def _assert_same_eval(ours: Any, ref: Any) -> None:
    np.testing.assert_array_equal(ours.stats, ref.stats)
    for key in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(ours.eval[key], ref.eval[key], err_msg=key)


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf", "mixed"])
def test_non_finite_scores_read_and_evaluated_as_pycocotools(tmp_path: Path, kind: str) -> None:
    dataset, results = _synthetic(40, 4, seed=5)
    values = {
        "nan": [float("nan")],
        "inf": [float("inf")],
        "-inf": [float("-inf")],
        "mixed": [float("nan"), float("inf"), float("-inf")],
    }[kind]
    for i, r in enumerate(results[::3]):
        r["score"] = values[i % len(values)]
    ours, ref = _both_from_files(*_files(tmp_path, dataset, results))
    _assert_same_eval(ours, ref)


def test_string_image_ids_read_and_evaluated_as_pycocotools(tmp_path: Path) -> None:
    dataset, results = _synthetic(50, 4, seed=6)
    name = {
        img["id"]: f"img_{img['id'] * 7919 % 1000:03d}_{img['id']}" for img in dataset["images"]
    }
    for img in dataset["images"]:
        img["id"] = name[img["id"]]
    for a in dataset["annotations"] + results:
        a["image_id"] = name[a["image_id"]]
    ours, ref = _both_from_files(*_files(tmp_path, dataset, results))
    _assert_same_eval(ours, ref)
    gt = _quiet(COCO, tmp_path / "gt.json")
    ref_gt = _quiet(RefCOCO, str(tmp_path / "gt.json"))
    assert gt.getImgIds() == ref_gt.getImgIds()
    some = ref_gt.getImgIds()[:5]
    assert gt.getAnnIds(imgIds=some) == ref_gt.getAnnIds(imgIds=some)
    # results as a list of dicts, and an unknown string id
    dt = _quiet(gt.loadRes, copy.deepcopy(results))
    _assert_same_eval(_run(COCOeval(gt, dt, "bbox")), ref)
    with pytest.raises(ValueError, match=r"do not correspond.*'nope'"):
        _quiet(gt.loadRes, [{**results[0], "image_id": "nope"}])
    with pytest.raises(ValueError, match="strings"):
        _quiet(gt.loadRes, [{**results[0], "image_id": 3}])


def test_integral_float_ids_read_as_integers(tmp_path: Path) -> None:
    dataset, results = _synthetic(30, 3, seed=7)
    for img in dataset["images"]:
        img["id"] = float(img["id"])
    for a in dataset["annotations"]:
        a["id"], a["image_id"], a["category_id"] = (
            float(a["id"]),
            float(a["image_id"]),
            float(a["category_id"]),
        )
    for r in results:
        r["image_id"], r["category_id"] = float(r["image_id"]), float(r["category_id"])
    dataset["categories"] = [{**c, "id": float(c["id"])} for c in dataset["categories"]]
    ours, ref = _both_from_files(*_files(tmp_path, dataset, results))
    _assert_same_eval(ours, ref)


def test_boxes_with_extra_numbers_use_the_first_four(tmp_path: Path) -> None:
    # pycocotools reads such files but its IoU refuses the boxes; the reference
    # here evaluates the same boxes cut to four numbers.
    dataset, results = _synthetic(30, 3, seed=8)
    long_dataset = copy.deepcopy(dataset)
    for a in long_dataset["annotations"]:
        a["bbox"] = [*a["bbox"], 0.5]
    long_results = [{**r, "bbox": [*r["bbox"], 0.9, 1.0]} for r in results]
    gt_file, dt_file = _files(tmp_path, long_dataset, long_results)
    short_gt = tmp_path / "short_gt.json"
    short_gt.write_text(json.dumps(dataset))
    ref_gt = _quiet(RefCOCO, str(short_gt))
    ref = _run(RefCOCOeval(ref_gt, _quiet(ref_gt.loadRes, copy.deepcopy(results)), "bbox"))
    gt = _quiet(COCO, gt_file)
    _assert_same_eval(_run(COCOeval(gt, _quiet(gt.loadRes, dt_file), "bbox")), ref)
    _assert_same_eval(_run(COCOeval(gt, _quiet(gt.loadRes, long_results), "bbox")), ref)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1},'
            ' {"image_id": 1, "category_id": 1, "bbox": [1, 2, "3", 4], "score": 1}]',
            'results[1], key "bbox": invalid type: string "3", expected a number',
        ),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]',
            'results[0]: missing key "score"',
        ),
        (
            '[{"image_id": 1, "category_id": 1, "segmentation": [[1, 2]], "score": 1}]',
            'results[0]: missing key "bbox"',
        ),
        ('{"annotations": []}', "expected a list of results"),
    ],
)
def test_refused_results_name_the_record_key_and_expectation(
    tmp_path: Path, text: str, problem: str
) -> None:
    gt, _ = _ours({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []}, [])
    path = tmp_path / "res.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        _quiet(gt.loadRes, str(path))
    assert str(path) in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "stage", "problem"),
    [
        ("iouThrs", [], "evaluate", "params.iouThrs is"),
        ("iouThrs", [0.5, 1.5], "evaluate", r"values in \[0.0, 1.0\]"),
        ("recThrs", [], "accumulate", "params.recThrs is"),
        ("maxDets", [], "evaluate", "params.maxDets is"),
        ("maxDets", [1.5], "evaluate", "non-negative integers"),
        ("areaRng", [], "evaluate", "params.areaRng is"),
        ("areaRng", [[0, 1, 2]], "evaluate", r"\[min, max\] pairs"),
        ("areaRng", [[5, 1]], "evaluate", "min <= max"),
        ("areaRngLbl", ["all"], "evaluate", "one per areaRng"),
    ],
)
def test_invalid_params_raise_value_error(name: str, value: Any, stage: str, problem: str) -> None:
    dataset, results = _synthetic(10, 2, seed=9)
    gt, dt = _ours(dataset, results)
    ev = COCOeval(gt, dt, "bbox")
    if stage == "accumulate":
        _quiet(ev.evaluate)
    setattr(ev.params, name, value)
    with pytest.raises(ValueError, match=problem):
        _quiet(getattr(ev, stage))


def test_unsupported_iou_type() -> None:
    with pytest.raises(NotImplementedError):
        COCOeval(None, None, "segm")
