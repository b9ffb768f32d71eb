"""A seeded synthetic COCO-val-sized detection set (ground truth + results).

5,000 images, 80 categories, ~36k ground-truth boxes (~7.4 per image, 1 % crowd,
COCO-like size mix) and 100 detections per image (500k): noisy copies of most
ground-truth boxes plus random false positives, scores rounded to 3 decimals
so ties occur, as real detector output does.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def synthetic_coco(
    n_images: int = 5000,
    n_categories: int = 80,
    dets_per_image: int = 100,
    seed: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Returns ``(ground_truth_dataset, results)`` in COCO JSON form."""
    rng = np.random.default_rng(seed)
    image_ids = np.sort(rng.choice(600_000, n_images, replace=False)) + 1
    widths = rng.integers(320, 641, n_images)
    heights = rng.integers(240, 481, n_images)
    n_gt = rng.poisson(7.36, n_images)
    gt_img = np.repeat(np.arange(n_images), n_gt)
    g = len(gt_img)
    size = np.exp(rng.normal(3.7, 1.0, g)).clip(1, 600)  # sqrt(area): COCO-like small/medium/large
    aspect = np.exp(rng.normal(0, 0.5, g))
    w = (size * np.sqrt(aspect)).clip(1, widths[gt_img])
    h = (size / np.sqrt(aspect)).clip(1, heights[gt_img])
    x = rng.random(g) * (widths[gt_img] - w)
    y = rng.random(g) * (heights[gt_img] - h)
    gt_box = np.round(np.stack([x, y, w, h], 1), 2)
    gt_cat = rng.integers(1, n_categories + 1, g)
    gt_area = np.round(gt_box[:, 2] * gt_box[:, 3] * rng.uniform(0.55, 0.95, g), 2)
    crowd = (rng.random(g) < 0.01).astype(int)

    # detections: noisy copies of 90 % of the ground truth, the rest random
    keep = rng.random(g) < 0.9
    src = np.nonzero(keep)[0]
    jitter = rng.normal(0, 0.08, (len(src), 4)) * np.repeat(gt_box[src, 2:], 2, axis=1)
    tp_box = gt_box[src] + jitter
    tp_box[:, 2:] = tp_box[:, 2:].clip(0.5)
    tp_img = gt_img[src]
    other_cat = rng.integers(1, n_categories + 1, len(src))
    tp_cat = np.where(rng.random(len(src)) < 0.9, gt_cat[src], other_cat)
    tp_score = rng.beta(4, 2, len(src))
    per_image_tp = np.bincount(tp_img, minlength=n_images)
    n_fp = np.maximum(dets_per_image - per_image_tp, 0)
    fp_img = np.repeat(np.arange(n_images), n_fp)
    f = len(fp_img)
    fsize = np.exp(rng.normal(3.5, 1.0, f)).clip(1, 500)
    fw, fh = fsize, fsize * np.exp(rng.normal(0, 0.4, f))
    fx = rng.random(f) * widths[fp_img]
    fy = rng.random(f) * heights[fp_img]
    fp_box = np.stack([fx, fy, fw, fh], 1)
    fp_cat = rng.integers(1, n_categories + 1, f)
    fp_score = rng.beta(1.2, 5, f)
    dt_img = np.concatenate([tp_img, fp_img])
    order = np.argsort(dt_img, kind="stable")
    dt_img = dt_img[order]
    dt_box = np.round(np.concatenate([tp_box, fp_box])[order], 2)
    dt_cat = np.concatenate([tp_cat, fp_cat])[order]
    dt_score = np.round(np.concatenate([tp_score, fp_score])[order], 3)

    images = [
        {"id": int(i), "width": int(wd), "height": int(ht), "file_name": f"{int(i):012d}.jpg"}
        for i, wd, ht in zip(image_ids, widths, heights, strict=True)
    ]
    categories = [
        {"id": c, "name": f"class_{c}", "supercategory": "thing"}
        for c in range(1, n_categories + 1)
    ]
    gt_img_ids = image_ids[gt_img].tolist()
    annotations = [
        {
            "id": k + 1,
            "image_id": i,
            "category_id": c,
            "bbox": b,
            "area": a,
            "iscrowd": z,
            "segmentation": [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3]]],
        }
        for k, (i, c, b, a, z) in enumerate(
            zip(
                gt_img_ids,
                gt_cat.tolist(),
                gt_box.tolist(),
                gt_area.tolist(),
                crowd.tolist(),
                strict=True,
            )
        )
    ]
    results = [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(
            image_ids[dt_img].tolist(),
            dt_cat.tolist(),
            dt_box.tolist(),
            dt_score.tolist(),
            strict=True,
        )
    ]
    dataset = {
        "info": {"description": "synthetic"},
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }
    return dataset, results
