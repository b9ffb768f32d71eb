"""COCO bbox evaluation: ours beside hotcoco, faster-coco-eval and pycocotools.

On the seeded synthetic COCO-val-sized set of ``bench_coco_synthetic`` (5,000
images, ~36.9k ground truth, 500k detections), single process:

* ``test_evaluate_accumulate_summarize``: from loaded datasets, evaluate +
  accumulate + summarize;
* ``test_json_path``: loading the ground-truth and result JSON files, then the
  same evaluation.

Every implementation's 12 stats are checked against ours (pycocotools' and
hotcoco's bit for bit, faster-coco-eval's to 1e-10: it omits pycocotools'
precision epsilon), and pycocotools' precision, recall and scores arrays are
checked equal to ours. Timings: best of a few rounds for ours and hotcoco, one
run for faster-coco-eval and pycocotools (minutes on this set).

    pytest benches/bench_coco.py -s                        # full size, prints ratios
    pytest benches/bench_coco.py --benchmark-disable       # 100 images, quick
    AUTOTIMM_BENCH_COCO_IMAGES=1000 AUTOTIMM_BENCH_PYCOCOTOOLS=0 pytest benches/bench_coco.py -s
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_coco_synthetic import synthetic_coco

from autotimm.metrics import COCO, COCOeval


def _quick(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable", False))


@pytest.fixture(scope="module")
def coco_files(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    default = 100 if _quick(request.config) else 5000
    n_images = int(os.environ.get("AUTOTIMM_BENCH_COCO_IMAGES", default))
    dataset, results = synthetic_coco(n_images=n_images)
    root = tmp_path_factory.mktemp("coco")
    gt, dt = root / "instances.json", root / "results.json"
    gt.write_text(json.dumps(dataset))
    dt.write_text(json.dumps(results))
    print(
        f"\nsynthetic COCO: {n_images} images, {len(dataset['annotations'])} ground truth, "
        f"{len(results)} detections "
        f"({gt.stat().st_size / 1e6:.1f} + {dt.stat().st_size / 1e6:.1f} MB)"
    )
    return gt, dt


def _silent(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def _impls() -> dict[str, tuple[Any, Any]]:
    impls: dict[str, tuple[Any, Any]] = {"autotimm": (COCO, COCOeval)}
    with contextlib.suppress(ImportError):
        import hotcoco

        impls["hotcoco"] = (hotcoco.COCO, hotcoco.COCOeval)
    with contextlib.suppress(ImportError):
        import faster_coco_eval

        impls["faster-coco-eval"] = (faster_coco_eval.COCO, faster_coco_eval.COCOeval_faster)
    if os.environ.get("AUTOTIMM_BENCH_PYCOCOTOOLS", "1") != "0":
        with contextlib.suppress(ImportError):
            from pycocotools.coco import COCO as PyCOCO
            from pycocotools.cocoeval import COCOeval as PyCOCOeval

            impls["pycocotools"] = (PyCOCO, PyCOCOeval)
    return impls


def _load(impl: tuple[Any, Any], gt: Path, dt: Path) -> tuple[Any, Any]:
    coco_cls, _ = impl
    g = coco_cls(str(gt))
    return g, g.loadRes(str(dt))


def _evaluate(impl: tuple[Any, Any], g: Any, d: Any) -> dict[str, np.ndarray]:
    _, eval_cls = impl
    ev = eval_cls(g, d, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    out = {"stats": np.asarray(ev.stats, dtype=np.float64)}
    for key in ("precision", "recall", "scores"):
        with contextlib.suppress(Exception):
            out[key] = np.asarray(ev.eval[key])
    return out


def _best(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        out = _silent(fn)
        best = min(best, time.perf_counter() - start)
    return best, out


def _check(name: str, got: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> None:
    """12 stats and the precision/recall arrays against ours."""
    if name == "faster-coco-eval":  # no precision epsilon: equal to ~1e-10
        np.testing.assert_allclose(got["stats"], ours["stats"], rtol=0, atol=1e-10, err_msg=name)
        return
    np.testing.assert_array_equal(got["stats"], ours["stats"], err_msg=name)
    if name == "pycocotools":
        for key in ("precision", "recall", "scores"):
            np.testing.assert_array_equal(got[key], ours[key], err_msg=f"{name} {key}")


def _report(title: str, times: dict[str, float]) -> None:
    ours = times["autotimm"]
    print(f"\n{title}")
    for name, t in times.items():
        ratio = "" if name == "autotimm" else f"   ours is {t / ours:7.1f}x faster"
        print(f"  {name:<17} {t:9.3f} s{ratio}")


def test_evaluate_accumulate_summarize(benchmark: Any, coco_files: tuple[Path, Path]) -> None:
    gt, dt = coco_files
    quick = benchmark.disabled
    times: dict[str, float] = {}
    stats: dict[str, dict[str, np.ndarray]] = {}
    for name, impl in _impls().items():
        g, d = _silent(lambda impl=impl: _load(impl, gt, dt))
        rounds = 1 if quick or name in ("faster-coco-eval", "pycocotools") else 5
        times[name], stats[name] = _best(lambda impl=impl, g=g, d=d: _evaluate(impl, g, d), rounds)
    for name, s in stats.items():
        _check(name, s, stats["autotimm"])
    _report("evaluate + accumulate + summarize (loaded datasets)", times)
    g, d = _silent(lambda: _load((COCO, COCOeval), gt, dt))
    benchmark.extra_info.update({f"{k}_s": v for k, v in times.items()})
    benchmark.pedantic(lambda: _silent(lambda: _evaluate((COCO, COCOeval), g, d)), rounds=3)


def test_json_path(benchmark: Any, coco_files: tuple[Path, Path]) -> None:
    gt, dt = coco_files
    quick = benchmark.disabled
    times: dict[str, float] = {}
    loads: dict[str, float] = {}
    stats: dict[str, dict[str, np.ndarray]] = {}
    for name, impl in _impls().items():
        rounds = 1 if quick or name in ("faster-coco-eval", "pycocotools") else 3
        loads[name], _ = _best(lambda impl=impl: _load(impl, gt, dt), rounds)

        def full(impl: tuple[Any, Any] = impl) -> np.ndarray:
            g, d = _load(impl, gt, dt)
            return _evaluate(impl, g, d)

        if name == "pycocotools":  # one run of each half (about a minute)
            g, d = _silent(lambda impl=impl: _load(impl, gt, dt))
            t_eval, stats[name] = _best(lambda impl=impl, g=g, d=d: _evaluate(impl, g, d), 1)
            times[name] = loads[name] + t_eval
        else:
            times[name], stats[name] = _best(full, rounds)
    for name, s in stats.items():
        _check(name, s, stats["autotimm"])
    _report("JSON load (ground truth + results)", loads)
    _report("JSON path: load + evaluate + accumulate + summarize", times)
    benchmark.extra_info.update({f"{k}_s": v for k, v in times.items()})
    benchmark.pedantic(
        lambda: _silent(lambda: _evaluate((COCO, COCOeval), *_load((COCO, COCOeval), gt, dt))),
        rounds=3,
    )
