"""pycocotools-compatible ``COCO`` and ``COCOeval`` (``iouType="bbox"``) on the native core.

Scripts written for pycocotools switch by changing one import::

    from autotimm.metrics import COCO, COCOeval

    gt = COCO("instances_val2017.json")
    dt = gt.loadRes("detections.json")
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ev.stats, ev.eval["precision"]  # same values and shapes as pycocotools

JSON files are parsed in Rust into columns (image, category, box, area, crowd
flag, score); matching, accumulation and the summary run in Rust with the GIL
released and give pycocotools' numbers to the last bit. The dict views of
pycocotools (``dataset``, ``anns``, ``imgs``, ``cats``, ``imgToAnns``,
``catToImgs``) are built lazily on first access.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from autotimm import _native

__all__ = ["COCO", "COCOeval", "Params", "format_summary", "num_threads"]

_STAT_SPECS: list[tuple[int, float | None, str, int | None]] = [
    # (ap, iouThr, areaRng, index into maxDets; None = the literal 100)
    (1, None, "all", None),
    (1, 0.5, "all", 2),
    (1, 0.75, "all", 2),
    (1, None, "small", 2),
    (1, None, "medium", 2),
    (1, None, "large", 2),
    (0, None, "all", 0),
    (0, None, "all", 1),
    (0, None, "all", 2),
    (0, None, "small", 2),
    (0, None, "medium", 2),
    (0, None, "large", 2),
]


def num_threads() -> int:
    """Worker threads for the native core: ``AUTOTIMM_NUM_THREADS`` or 0 (all cores)."""
    value = os.environ.get("AUTOTIMM_NUM_THREADS", "")
    try:
        return max(int(value), 0)
    except ValueError:
        return 0


def _is_array_like(obj: Any) -> bool:
    return hasattr(obj, "__iter__") and hasattr(obj, "__len__")


def _int_ids(values: Sequence[Any], what: str) -> np.ndarray:
    """``values`` as int64 ids; integral floats are accepted (the same Python dict key).

    Raises
    ------
    ValueError
        Naming ``what[index]`` for a non-integral, non-finite or non-numeric id.
    """
    arr = np.asarray(values)
    if arr.size == 0:
        return np.empty(arr.shape, np.int64)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = ~(np.isfinite(arr) & (arr == np.floor(arr)) & (np.abs(arr) < 2.0**63))
        if not bad.any():
            return arr.astype(np.int64)
        i = int(np.flatnonzero(bad.reshape(-1))[0])
    else:
        i = next(
            (k for k, v in enumerate(arr.reshape(-1).tolist()) if not isinstance(v, (int, float))),
            0,
        )
    value = arr.reshape(-1)[i]
    raise ValueError(f"{what}[{i}] is {value!r}; expected an integer id")


def _image_names(*id_lists: Sequence[Any]) -> list[str] | None:
    """Sorted distinct string image ids of a dataset, or ``None`` if the ids are integers.

    Raises
    ------
    ValueError
        If integer and string ids are mixed.
    """
    kinds = {isinstance(v, str) for ids in id_lists for v in ids}
    if kinds == {True, False}:
        raise ValueError("image ids mix integers and strings; use all integers or all strings")
    if kinds != {True}:
        return None
    return sorted({v for ids in id_lists for v in ids})


def _image_codes(
    values: Sequence[Any], names: list[str] | None, what: str, results: bool = False
) -> np.ndarray:
    """int64 codes of image ids: the ids themselves, or indices into ``names``.

    String ids that are not in ``names`` get distinct codes past its end, so
    they match no image, or with ``results`` raise ``ValueError`` as
    ``loadRes`` does; an integer among string ids raises ``ValueError`` naming
    ``what[index]``.
    """
    if names is None:
        return _int_ids(values, what)
    lookup = {name: code for code, name in enumerate(names)}
    codes = np.empty(len(values), np.int64)
    extra: dict[str, int] = {}
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"{what}[{i}] is {v!r}; the image ids of this dataset are strings")
        code = lookup.get(v)
        if code is None:
            code = extra.setdefault(v, len(names) + len(extra))
        codes[i] = code
    if results and extra:
        raise ValueError(
            "Results do not correspond to current coco set: image ids "
            f"{list(extra)[:5]} are not in the ground truth"
        )
    return codes


def _empty_columns() -> dict[str, np.ndarray]:
    return {
        "id": np.empty(0, np.int64),
        "image_id": np.empty(0, np.int64),
        "category_id": np.empty(0, np.int64),
        "bbox": np.empty((0, 4), np.float64),
        "area": np.empty(0, np.float64),
        "iscrowd": np.empty(0, np.uint8),
        "score": np.empty(0, np.float64),
    }


def _boxes(anns: Sequence[dict[str, Any]], what: str) -> np.ndarray:
    """``(N, 4)`` float64 boxes: the first four numbers of each ``bbox``."""
    rows = []
    for i, a in enumerate(anns):
        if "bbox" not in a:
            raise ValueError(f"{what}[{i}]: missing key 'bbox' (only bbox results are supported)")
        box = a["bbox"]
        if not isinstance(box, (list, tuple, np.ndarray)) or len(box) < 4:
            raise ValueError(
                f"{what}[{i}], key 'bbox': {box!r}; expected a list of at least 4 numbers"
            )
        rows.append(box[:4])
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _columns_from_annotations(
    anns: Sequence[dict[str, Any]], names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Columns of a list of annotation dicts (ground truth or results)."""
    if len(anns) == 0:
        return _empty_columns()
    bbox = _boxes(anns, "annotations")
    cols = {
        "id": _int_ids([a.get("id", i + 1) for i, a in enumerate(anns)], "annotations id"),
        "image_id": _image_codes([a["image_id"] for a in anns], names, "annotations image_id"),
        "category_id": _int_ids([a["category_id"] for a in anns], "annotations category_id"),
        "bbox": bbox,
        "iscrowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=np.uint8),
    }
    wh = bbox[:, 2] * bbox[:, 3]
    areas = [a.get("area", w) for a, w in zip(anns, wh.tolist(), strict=True)]
    cols["area"] = np.array(areas, dtype=np.float64)
    cols["score"] = np.array([a.get("score", np.nan) for a in anns], dtype=np.float64)
    return cols


def _results_from_list(
    anns: Sequence[dict[str, Any]], names: list[str] | None
) -> dict[str, np.ndarray]:
    """``loadRes`` semantics for bbox results: ids from 1, area = w*h, iscrowd 0."""
    if len(anns) == 0:
        return _empty_columns()
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise TypeError(f"results[{i}] is a {type(a).__name__}; expected a dict")
        for key in ("image_id", "category_id", "score"):
            if key not in a:
                raise ValueError(f"results[{i}]: missing key {key!r}")
    bbox = _boxes(anns, "results")
    n = len(anns)
    return {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "image_id": _image_codes(
            [a["image_id"] for a in anns], names, "results image_id", results=True
        ),
        "category_id": _int_ids([a["category_id"] for a in anns], "results category_id"),
        "bbox": bbox,
        "area": bbox[:, 2] * bbox[:, 3],
        "iscrowd": np.zeros(n, np.uint8),
        "score": np.array([a["score"] for a in anns], dtype=np.float64),
    }


def _results_from_array(data: np.ndarray) -> dict[str, np.ndarray]:
    """``loadNumpyAnnotations`` + ``loadRes``: rows ``[image_id, x, y, w, h, score, class]``."""
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 7:
        raise ValueError(f"results array has shape {data.shape}; expected (N, 7)")
    n = data.shape[0]
    bbox = np.ascontiguousarray(data[:, 1:5], dtype=np.float64)
    return {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "image_id": data[:, 0].astype(np.int64),
        "category_id": data[:, 6].astype(np.int64),
        "bbox": bbox,
        "area": bbox[:, 2] * bbox[:, 3],
        "iscrowd": np.zeros(n, np.uint8),
        "score": np.ascontiguousarray(data[:, 5], dtype=np.float64),
    }


class COCO:
    """A COCO dataset (pycocotools' ``COCO``), backed by native columns.

    Parameters
    ----------
    annotation_file : str or os.PathLike, optional
        A COCO ground-truth JSON file. Malformed files raise ``ValueError``
        naming the file and the problem; a missing file ``FileNotFoundError``.
    """

    def __init__(self, annotation_file: str | os.PathLike[str] | None = None) -> None:
        self._dataset: dict[str, Any] | None = {}
        self._path: str | None = None
        self._parent: COCO | None = None
        self._cols: dict[str, np.ndarray] = _empty_columns()
        self._image_ids: np.ndarray = np.empty(0, np.int64)
        # String image ids, sorted; image ids are then indices into it.
        self._image_names: list[str] | None = None
        self._categories: list[dict[str, Any]] = []
        self._index: dict[str, Any] | None = None
        if annotation_file is not None:
            print("loading annotations into memory...")
            tic = time.time()
            path = os.fspath(annotation_file)
            loaded = _native.coco_load_ground_truth(path)
            print(f"Done (t={time.time() - tic:0.2f}s)")
            print("creating index...")
            self._path = path
            self._dataset = None
            self._image_ids = loaded.pop("image_ids")
            self._image_names = loaded.pop("image_names", None)
            self._categories = loaded.pop("categories")
            loaded["score"] = np.full(len(loaded["id"]), np.nan)
            self._cols = loaded
            print("index created!")

    # ------------------------------------------------------------------ views
    @property
    def dataset(self) -> dict[str, Any]:
        """The dataset as a dict (read from the file or built on first access)."""
        if self._dataset is None:
            if self._path is not None:
                with open(self._path) as f:
                    self._dataset = json.load(f)
            else:
                self._dataset = self._build_dataset()
        return self._dataset

    @dataset.setter
    def dataset(self, value: dict[str, Any]) -> None:
        self._dataset = value
        self._path = None
        self._parent = None

    def _build_dataset(self) -> dict[str, Any]:
        c = self._cols
        anns = []
        for aid, img, cat, box, area, crowd, score in zip(
            c["id"].tolist(),
            c["image_id"].tolist(),
            c["category_id"].tolist(),
            c["bbox"].tolist(),
            c["area"].tolist(),
            c["iscrowd"].tolist(),
            c["score"].tolist(),
            strict=True,
        ):
            x1, y1, x2, y2 = box[0], box[1], box[0] + box[2], box[1] + box[3]
            ann = {
                "image_id": self._image_name(img),
                "category_id": cat,
                "bbox": box,
                "segmentation": [[x1, y1, x1, y2, x2, y2, x2, y1]],
                "area": area,
                "id": aid,
                "iscrowd": crowd,
            }
            if score == score:
                ann["score"] = score
            anns.append(ann)
        if self._parent is not None:
            parent = self._parent.dataset
            images = list(parent.get("images", []))
            info = copy.deepcopy(parent.get("info", {}))
        else:
            images = [{"id": self._image_name(i)} for i in self._image_ids.tolist()]
            info = {}
        return {
            "info": info,
            "images": images,
            "categories": copy.deepcopy(self._categories),
            "annotations": anns,
        }

    def createIndex(self) -> None:  # noqa: N802 (pycocotools name)
        """Rebuilds the columns from ``self.dataset`` (after assigning it)."""
        print("creating index...")
        ds = self.dataset
        image_ids = [img["id"] for img in ds.get("images", [])]
        anns = ds.get("annotations", [])
        self._image_names = _image_names(image_ids, [a["image_id"] for a in anns])
        self._cols = _columns_from_annotations(anns, self._image_names)
        self._image_ids = _image_codes(image_ids, self._image_names, "images id")
        self._categories = list(ds.get("categories", []))
        self._index = None
        print("index created!")

    def _lazy_index(self) -> dict[str, Any]:
        if self._index is None:
            ds = self.dataset
            anns: dict[Any, Any] = {}
            cats: dict[Any, Any] = {}
            imgs: dict[Any, Any] = {}
            img_to_anns: defaultdict[Any, list[Any]] = defaultdict(list)
            cat_to_imgs: defaultdict[Any, list[Any]] = defaultdict(list)
            for ann in ds.get("annotations", []):
                img_to_anns[ann["image_id"]].append(ann)
                anns[ann["id"]] = ann
            for img in ds.get("images", []):
                imgs[img["id"]] = img
            for cat in ds.get("categories", []):
                cats[cat["id"]] = cat
            if "annotations" in ds and "categories" in ds:
                for ann in ds["annotations"]:
                    cat_to_imgs[ann["category_id"]].append(ann["image_id"])
            self._index = {
                "anns": anns,
                "cats": cats,
                "imgs": imgs,
                "imgToAnns": img_to_anns,
                "catToImgs": cat_to_imgs,
            }
        return self._index

    @property
    def anns(self) -> dict[Any, Any]:
        return self._lazy_index()["anns"]

    @property
    def imgs(self) -> dict[Any, Any]:
        return self._lazy_index()["imgs"]

    @property
    def cats(self) -> dict[Any, Any]:
        return self._lazy_index()["cats"]

    @property
    def imgToAnns(self) -> dict[Any, list[Any]]:  # noqa: N802
        return self._lazy_index()["imgToAnns"]

    @property
    def catToImgs(self) -> dict[Any, list[Any]]:  # noqa: N802
        return self._lazy_index()["catToImgs"]

    def info(self) -> None:
        """Prints the ``info`` section."""
        for key, value in self.dataset.get("info", {}).items():
            print(f"{key}: {value}")

    # ---------------------------------------------------------------- queries
    def getAnnIds(  # noqa: N802
        self,
        imgIds: Any = (),  # noqa: N803
        catIds: Any = (),  # noqa: N803
        areaRng: Sequence[float] = (),  # noqa: N803
        iscrowd: bool | int | None = None,
    ) -> list[int]:
        """Annotation ids filtered like pycocotools (image order follows ``imgIds``)."""
        img_ids = list(imgIds) if _is_array_like(imgIds) else [imgIds]
        cat_ids = list(catIds) if _is_array_like(catIds) else [catIds]
        c = self._cols
        sel = np.arange(len(c["id"]))
        if img_ids:
            wanted = self._image_codes(list(dict.fromkeys(img_ids)), "imgIds")
            mask = np.isin(c["image_id"], wanted)
            sel = sel[mask]
            sorter = np.argsort(wanted, kind="stable")
            rank = sorter[np.searchsorted(wanted, c["image_id"][sel], sorter=sorter)]
            sel = sel[np.argsort(rank, kind="stable")]
        if cat_ids:
            sel = sel[np.isin(c["category_id"][sel], np.array(cat_ids, dtype=np.int64))]
        if len(areaRng) > 0:
            area = c["area"][sel]
            sel = sel[(area > areaRng[0]) & (area < areaRng[1])]
        if iscrowd is not None:
            sel = sel[c["iscrowd"][sel] == int(iscrowd)]
        return c["id"][sel].tolist()

    def getCatIds(  # noqa: N802
        self,
        catNms: Any = (),  # noqa: N803
        supNms: Any = (),  # noqa: N803
        catIds: Any = (),  # noqa: N803
    ) -> list[int]:
        """Category ids filtered by name, supercategory and id."""
        cat_nms = list(catNms) if _is_array_like(catNms) else [catNms]
        sup_nms = list(supNms) if _is_array_like(supNms) else [supNms]
        cat_ids = list(catIds) if _is_array_like(catIds) else [catIds]
        cats = self._categories
        if cat_nms:
            cats = [c for c in cats if c.get("name") in cat_nms]
        if sup_nms:
            cats = [c for c in cats if c.get("supercategory") in sup_nms]
        if cat_ids:
            cats = [c for c in cats if c["id"] in cat_ids]
        return [c["id"] for c in cats]

    def getImgIds(self, imgIds: Any = (), catIds: Any = ()) -> list[int]:  # noqa: N802, N803
        """Image ids (all, or those with annotations of every category in ``catIds``)."""
        img_ids = list(imgIds) if _is_array_like(imgIds) else [imgIds]
        cat_ids = list(catIds) if _is_array_like(catIds) else [catIds]
        if not img_ids and not cat_ids:
            return [self._image_name(i) for i in dict.fromkeys(self._image_ids.tolist())]
        ids = set(img_ids)
        c = self._cols
        for i, cat in enumerate(cat_ids):
            codes = c["image_id"][c["category_id"] == cat].tolist()
            with_cat = {self._image_name(code) for code in codes}
            ids = with_cat if i == 0 and not ids else ids & with_cat
        return list(ids)

    def _image_name(self, code: int) -> Any:
        """The image id as the dataset writes it (a string id, or the integer)."""
        return code if self._image_names is None else self._image_names[code]

    def _image_codes(self, ids: Sequence[Any], what: str) -> np.ndarray:
        """int64 codes of image ids as the native core and the columns hold them."""
        return _image_codes(ids, self._image_names, what)

    def loadAnns(self, ids: Any = ()) -> list[dict[str, Any]]:  # noqa: N802
        if _is_array_like(ids):
            return [self.anns[i] for i in ids]
        return [self.anns[ids]]

    def loadCats(self, ids: Any = ()) -> list[dict[str, Any]]:  # noqa: N802
        if _is_array_like(ids):
            return [self.cats[i] for i in ids]
        return [self.cats[ids]]

    def loadImgs(self, ids: Any = ()) -> list[dict[str, Any]]:  # noqa: N802
        if _is_array_like(ids):
            return [self.imgs[i] for i in ids]
        return [self.imgs[ids]]

    @staticmethod
    def loadNumpyAnnotations(data: np.ndarray) -> list[dict[str, Any]]:  # noqa: N802
        """Rows ``[image_id, x, y, w, h, score, class]`` as result dicts."""
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != 7:
            raise ValueError(f"results array has shape {data.shape}; expected (N, 7)")
        return [
            {
                "image_id": int(row[0]),
                "bbox": [row[1], row[2], row[3], row[4]],
                "score": row[5],
                "category_id": int(row[6]),
            }
            for row in data.tolist()
        ]

    def loadRes(self, resFile: Any) -> COCO:  # noqa: N802, N803
        """Loads detections (a JSON file, a list of dicts or an ``(N, 7)`` array).

        Follows pycocotools' ``loadRes`` for bbox results: ``area = w * h``,
        ``id`` from 1, ``iscrowd = 0``. An empty result list is accepted (no
        detections). Raises ``ValueError`` if a result names an image that is
        not in this dataset.
        """
        res = COCO()
        print("Loading and preparing results...")
        tic = time.time()
        if isinstance(resFile, (str, os.PathLike)):
            cols = _native.coco_load_results(os.fspath(resFile), num_threads())
            names = cols.pop("image_names", None)
            if names is not None and self._image_names is None:
                raise ValueError(
                    "Results do not correspond to current coco set: the results' image ids "
                    f"are strings (first: {names[0]!r}) but this dataset's are integers"
                )
            if names is not None:  # string ids: codes of this dataset
                codes = _image_codes(names, self._image_names, "results image_id", results=True)
                cols["image_id"] = codes[cols["image_id"]]
            elif self._image_names is not None and len(cols["image_id"]):
                raise ValueError(
                    "Results do not correspond to current coco set: the results' image ids "
                    f"are integers (first: {int(cols['image_id'][0])}) but this dataset's "
                    "are strings"
                )
        elif isinstance(resFile, np.ndarray):
            cols = _results_from_array(resFile)
        elif isinstance(resFile, list):
            cols = _results_from_list(resFile, self._image_names)
        else:
            raise TypeError(
                f"results must be a file path, a list of dicts or an (N, 7) array; "
                f"got {type(resFile).__name__}"
            )
        unknown = _native.coco_missing_ids(
            np.ascontiguousarray(cols["image_id"], dtype=np.int64),
            np.ascontiguousarray(self._image_ids, dtype=np.int64),
        )
        if unknown.size:
            missing = [self._image_name(i) for i in unknown[:5].tolist()]
            raise ValueError(
                "Results do not correspond to current coco set: image ids "
                f"{missing} are not in the ground truth"
            )
        res._cols = cols
        res._image_ids = self._image_ids
        res._image_names = self._image_names
        res._categories = copy.deepcopy(self._categories)
        res._dataset = None
        res._parent = self
        print(f"DONE (t={time.time() - tic:0.2f}s)")
        return res

    def __len__(self) -> int:
        return len(self._cols["id"])


class Params:
    """Evaluation parameters (pycocotools' ``Params`` for detection)."""

    def __init__(self, iouType: str = "bbox") -> None:  # noqa: N803
        if iouType not in ("bbox", "segm"):
            raise ValueError(f"iouType {iouType!r} is not supported; use 'bbox'")
        self.imgIds: list[Any] = []
        self.catIds: list[Any] = []
        self.iouThrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        self.recThrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        self.maxDets = [1, 10, 100]
        self.areaRng = [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]]
        self.areaRngLbl = ["all", "small", "medium", "large"]
        self.useCats = 1
        self.iouType = iouType
        self.useSegm: int | None = None


def format_summary(stats: Sequence[float], params: Params) -> list[str]:
    """The 12 lines ``COCOeval.summarize`` prints for ``stats``."""
    lines = []
    fmt = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    for value, (ap, iou_thr, area, mdet) in zip(stats, _STAT_SPECS, strict=True):
        title = "Average Precision" if ap == 1 else "Average Recall"
        kind = "(AP)" if ap == 1 else "(AR)"
        if iou_thr is None:
            iou = f"{params.iouThrs[0]:0.2f}:{params.iouThrs[-1]:0.2f}"
        else:
            iou = f"{iou_thr:0.2f}"
        max_det = 100 if mdet is None else int(params.maxDets[mdet])
        lines.append(fmt.format(title, kind, iou, area, max_det, value))
    return lines


class COCOeval:
    """pycocotools' ``COCOeval`` for ``iouType="bbox"``, on the native core.

    Parameters
    ----------
    cocoGt, cocoDt : COCO, optional
        Ground truth and detections (``cocoGt.loadRes(...)``).
    iouType : str
        Only ``"bbox"`` is supported.

    Notes
    -----
    ``evaluate`` stores per-detection match records (not pycocotools'
    ``evalImgs`` dicts); ``accumulate`` fills ``eval["precision"]``
    ``[T, R, K, A, M]``, ``eval["recall"]`` ``[T, K, A, M]`` and
    ``eval["scores"]``; ``summarize`` prints the 12 lines and sets ``stats``.
    The thread count follows ``AUTOTIMM_NUM_THREADS`` (default: all cores).
    """

    def __init__(
        self,
        cocoGt: COCO | None = None,  # noqa: N803
        cocoDt: COCO | None = None,  # noqa: N803
        iouType: str = "bbox",  # noqa: N803
    ) -> None:
        if iouType != "bbox":
            raise NotImplementedError(f"iouType {iouType!r} is not supported; only 'bbox' is")
        self.cocoGt = cocoGt
        self.cocoDt = cocoDt
        self.evalImgs: list[Any] = []
        self.eval: dict[str, Any] = {}
        self._gts: defaultdict[Any, list[Any]] = defaultdict(list)
        self._dts: defaultdict[Any, list[Any]] = defaultdict(list)
        self.params = Params(iouType=iouType)
        self._paramsEval: Params | None = None
        self._records: dict[str, np.ndarray] | None = None
        self.stats: np.ndarray | list[float] = []
        self.ious: dict[Any, Any] = {}
        if cocoGt is not None:
            self.params.imgIds = sorted(cocoGt.getImgIds())
            self.params.catIds = sorted(cocoGt.getCatIds())

    def evaluate(self) -> None:
        """Per image and category matching (pycocotools' ``evaluate``)."""
        tic = time.time()
        print("Running per image evaluation...")
        p = self.params
        if p.useSegm is not None:
            p.iouType = "segm" if p.useSegm == 1 else "bbox"
            print(f"useSegm (deprecated) is not None. Running {p.iouType} evaluation")
        print(f"Evaluate annotation type *{p.iouType}*")
        if p.iouType != "bbox":
            raise NotImplementedError(f"iouType {p.iouType!r} is not supported; only 'bbox' is")
        if self.cocoGt is None or self.cocoDt is None:
            raise ValueError("COCOeval needs cocoGt and cocoDt to evaluate")
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        _check_params(p)
        self.params = p
        cat_ids = list(dict.fromkeys(p.catIds))
        self._records = evaluate_columns(
            self.cocoGt._cols,
            self.cocoDt._cols,
            self.cocoGt._image_codes(p.imgIds, "params.imgIds"),
            _int_ids(cat_ids, "params.catIds"),
            p.iouThrs,
            p.areaRng,
            int(p.maxDets[-1]),
            bool(p.useCats),
        )
        self._paramsEval = copy.deepcopy(self.params)
        print(f"DONE (t={time.time() - tic:0.2f}s).")

    def accumulate(self, p: Params | None = None) -> None:
        """Precision, recall and scores arrays (pycocotools' ``accumulate``)."""
        print("Accumulating evaluation results...")
        tic = time.time()
        if self._records is None or self._paramsEval is None:
            print("Please run evaluate() first")
            return
        if p is None:
            p = self.params
        p.catIds = p.catIds if p.useCats == 1 else [-1]
        _check_params(p)
        pe = self._paramsEval
        precision, recall, scores = _native.coco_accumulate(
            *_record_args(self._records),
            np.asarray(p.catIds, dtype=np.int64),
            len(pe.iouThrs),
            np.ascontiguousarray(p.recThrs, dtype=np.float64),
            [int(m) for m in p.maxDets],
            num_threads(),
        )
        self.eval = {
            "params": p,
            "counts": list(precision.shape),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": precision,
            "recall": recall,
            "scores": scores,
        }
        print(f"DONE (t={time.time() - tic:0.2f}s).")

    def summarize(self) -> None:
        """Prints the 12-line summary and sets ``stats``."""
        if not self.eval:
            raise Exception("Please run accumulate() first")
        p = self.params
        stats = _native.coco_summarize(
            self.eval["precision"],
            self.eval["recall"],
            np.ascontiguousarray(p.iouThrs, dtype=np.float64),
            [str(lbl) for lbl in p.areaRngLbl],
            [int(m) for m in p.maxDets],
        )
        for line in format_summary(stats, p):
            print(line)
        self.stats = np.array(stats, dtype=np.float64)

    def __str__(self) -> str:
        if len(self.stats) == 12:
            return "\n".join(format_summary(list(self.stats), self.params))
        return object.__repr__(self)


def _check_params(p: Params) -> None:
    """Refuses parameter lists that pycocotools would fail on (or silently misuse).

    Raises
    ------
    ValueError
        Naming the parameter, the value received and what is expected.
    """

    def as_floats(value: Any) -> np.ndarray | None:
        if isinstance(value, str) or not _is_array_like(value):
            return None
        try:
            return np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return None

    def floats(name: str, value: Any, lo: float, hi: float) -> None:
        arr = as_floats(value)
        if arr is None or arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"params.{name} is {value!r}; expected a non-empty list of numbers")
        if not np.all((arr >= lo) & (arr <= hi)):
            raise ValueError(f"params.{name} is {value!r}; expected values in [{lo}, {hi}]")

    floats("iouThrs", p.iouThrs, 0.0, 1.0)
    floats("recThrs", p.recThrs, 0.0, 1.0)
    max_dets = list(p.maxDets) if _is_array_like(p.maxDets) else None
    if not max_dets or not all(
        isinstance(m, (int, np.integer)) and not isinstance(m, bool) and m >= 0 for m in max_dets
    ):
        raise ValueError(
            f"params.maxDets is {p.maxDets!r}; expected a non-empty list of non-negative integers"
        )
    rng = as_floats(p.areaRng)
    if rng is None or rng.ndim != 2 or rng.shape[0] == 0 or rng.shape[1] != 2:
        raise ValueError(
            f"params.areaRng is {p.areaRng!r}; expected a non-empty list of [min, max] pairs"
        )
    if np.isnan(rng).any() or (rng[:, 0] > rng[:, 1]).any():
        raise ValueError(f"params.areaRng is {p.areaRng!r}; expected pairs with min <= max")
    if len(p.areaRngLbl) != rng.shape[0]:
        raise ValueError(
            f"params.areaRngLbl has {len(p.areaRngLbl)} labels; expected one per areaRng "
            f"({rng.shape[0]})"
        )


def _record_args(rec: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return (
        rec["dt_image"],
        rec["dt_category"],
        rec["dt_rank"],
        rec["dt_score"],
        rec["dt_flags"],
        rec["gt_category"],
        rec["gt_count"],
    )


def evaluate_columns(
    gt: dict[str, np.ndarray],
    dt: dict[str, np.ndarray],
    img_ids: np.ndarray,
    cat_ids: np.ndarray | None,
    iou_thrs: Iterable[float],
    area_rng: Iterable[Iterable[float]],
    max_det: int,
    use_cats: bool = True,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Runs the native per image and category evaluation on annotation columns.

    Parameters
    ----------
    gt, dt : dict of numpy arrays
        ``id``, ``image_id``, ``category_id``, ``bbox`` (N, 4) xywh, ``area``,
        ``iscrowd`` (ground truth) / ``score`` (detections).
    img_ids : numpy.ndarray
        Images to evaluate, in accumulation order.
    cat_ids : numpy.ndarray or None
        Categories; ``None`` = every category present.
    iou_thrs, area_rng, max_det, use_cats
        As pycocotools' ``Params`` (``max_det`` = largest ``maxDets``).
    threads : int, optional
        Worker threads (default: :func:`num_threads`).

    Returns
    -------
    dict of numpy arrays
        The evaluation records (see ``autotimm._native.coco_evaluate``).
    """

    def i64(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.int64)

    def f64(a: Any) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float64)

    return _native.coco_evaluate(
        i64(gt["id"]),
        i64(gt["image_id"]),
        i64(gt["category_id"]),
        f64(gt["bbox"]).reshape(-1, 4),
        f64(gt["area"]),
        np.ascontiguousarray(gt["iscrowd"], dtype=np.uint8),
        i64(dt["id"]),
        i64(dt["image_id"]),
        i64(dt["category_id"]),
        f64(dt["bbox"]).reshape(-1, 4),
        f64(dt["area"]),
        f64(dt["score"]),
        i64(img_ids),
        None if cat_ids is None else i64(cat_ids),
        f64(iou_thrs).reshape(-1),
        f64(area_rng).reshape(-1, 2),
        int(max_det),
        bool(use_cats),
        num_threads() if threads is None else int(threads),
    )
