"""Raw image inputs of ``ObjectDetector.predict`` and the data settings in checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from autotimm import ObjectDetector
from autotimm.tasks.inputs import (
    DataInfo,
    boxes_to_original,
    eval_mode,
    find_image_files,
    load_inputs,
    output_names,
    preprocess_images,
)


def _model(**kw) -> ObjectDetector:
    args = dict(
        backbone={"model_name": "test_byobnet", "pretrained": False},
        num_classes=2, fpn_channels=16, head_num_convs=1, score_thresh=0.0,
        compile_model=False, deterministic=False,
    )  # fmt: skip
    return ObjectDetector(**{**args, **kw})


def test_boxes_to_original_undoes_resize_and_clamps() -> None:
    # a 200x100 (w x h) image resized to 64x32 inside a 64x64 canvas
    boxes = torch.tensor([[8.0, 4.0, 32.0, 16.0], [60.0, 30.0, 64.0, 64.0]])
    out = boxes_to_original(boxes, (32, 64), (100, 200))
    torch.testing.assert_close(
        out, torch.tensor([[25.0, 12.5, 100.0, 50.0], [187.5, 93.75, 200, 100]])
    )


def test_preprocess_matches_the_validation_transform() -> None:
    info = DataInfo(image_size=64)
    image = torch.randint(0, 255, (3, 100, 200), dtype=torch.uint8)
    batch, resized = preprocess_images([image], info)
    assert batch.shape == (1, 3, 64, 64) and resized.tolist() == [[32, 64]]
    from autotimm.data.transforms import DetectionTransform

    ref = DetectionTransform(image_size=64, train=False, preset="none")(
        {"image": image, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    )
    torch.testing.assert_close(batch[0], ref["image"])


def test_inputs_of_every_kind(tmp_path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    files = find_image_files(tmp_path)
    assert [p.name for p in files] == ["a.png", "b.jpg"]
    assert find_image_files(str(tmp_path / "*.jpg")) == [tmp_path / "b.jpg"]
    with pytest.raises(FileNotFoundError, match="no image files"):
        find_image_files(str(tmp_path / "*.webp"))
    items = load_inputs(
        [str(files[0]), Image.fromarray(arr), arr, torch.from_numpy(arr).permute(2, 0, 1)]
    )
    assert all(t.shape == (3, 40, 60) and t.dtype == torch.uint8 for t in items)
    assert torch.equal(items[0], items[3])
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        load_inputs(torch.zeros(4, 40, 60, dtype=torch.uint8))
    with pytest.raises(TypeError, match="images\\[0\\]"):
        load_inputs([3.5])


def test_float_pixels_must_be_finite_and_in_0_1() -> None:
    ok = load_inputs([torch.rand(3, 8, 8), np.random.default_rng(0).random((8, 8, 3))])
    assert [t.dtype for t in ok] == [torch.float32, torch.float64]
    with pytest.raises(ValueError, match=r"images\[1\]: .* in \[0, 1\], got \[0, 255\]"):
        load_inputs([torch.rand(3, 8, 8), torch.linspace(0, 255, 192).view(3, 8, 8)])
    with pytest.raises(ValueError, match=r"images\[0\]: .*\[-1, 0\]"):
        load_inputs(torch.linspace(-1, 0, 192).view(3, 8, 8))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN or Inf"):
            load_inputs(torch.zeros(3, 8, 8).index_fill_(1, torch.tensor([2]), bad))
    with pytest.raises(TypeError, match="got torch.int16"):
        load_inputs(np.zeros((8, 8, 3), np.int16))


def test_predict_on_raw_images_restores_modes_and_keeps_bn_stats(tmp_path) -> None:
    model = _model()
    model.set_data_info(DataInfo(class_names=("cat", "dog"), image_size=64))
    model.train()
    model.backbone.eval()  # a frozen part stays in eval mode afterwards
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    image = torch.randint(0, 255, (3, 90, 150), dtype=torch.uint8)
    [det] = model.predict(image)
    assert model.training and not model.backbone.training and model.head.training
    assert torch.equal(bn.running_mean, stats)
    assert det["boxes"].shape[1] == 4 and len(det["label_names"]) == len(det["labels"])
    assert set(det["label_names"]) <= {"cat", "dog"}
    assert float(det["boxes"][:, 2].max()) <= 150 and float(det["boxes"][:, 3].max()) <= 90
    # a float image in [0, 1] gives the same detections as its uint8 version
    [same] = model.predict(image.float() / 255)
    torch.testing.assert_close(same["boxes"], det["boxes"], atol=0.05, rtol=0)
    # a preprocessed float batch keeps its meaning: boxes in its own pixels
    [net] = model.predict(torch.randn(1, 3, 64, 64))
    assert "label_names" not in net and float(net["boxes"].max()) <= 64


def test_checkpoint_carries_data_settings(tmp_path) -> None:
    import lightning.pytorch as pl

    model = _model()
    info = DataInfo(class_names=("cat", "dog"), image_size=96, mean=(0.5,) * 3, std=(0.25,) * 3)
    model.set_data_info(info)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, map_location="cpu", weights_only=False)
    assert stored["autotimm_data"]["class_names"] == ["cat", "dog"]
    assert stored["hyper_parameters"]["username"] == ""
    loaded = ObjectDetector.load_from_checkpoint(path)
    assert loaded.data_info == info


def test_eval_mode_restores_even_on_error() -> None:
    model = _model()
    model.train()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training


def test_compile_model_is_skipped_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not _model(compile_model=True).is_compiled


def test_output_names_are_distinct_for_a_recursive_glob(tmp_path) -> None:
    for rel in ("a.jpg", "sub/a.jpg", "sub/deeper/b.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    files = find_image_files(str(tmp_path / "**" / "*.*"))
    names = dict(zip((f.relative_to(tmp_path).as_posix() for f in files),
                     (n.as_posix() for n in output_names(files)), strict=True))
    assert names == {"a.jpg": "a", "sub/a.jpg": "sub/a", "sub/deeper/b.png": "sub/deeper/b"}
    (tmp_path / "a.png").touch()  # differs from a.jpg only in its suffix: suffixes kept
    both = [tmp_path / "a.jpg", tmp_path / "a.png"]
    assert [n.as_posix() for n in output_names(both)] == ["a.jpg", "a.png"]
    assert [n.as_posix() for n in output_names([tmp_path / "sub" / "a.jpg"])] == ["a"]
    assert output_names([]) == []
