"""Both architectures train end to end with Lightning on a tiny synthetic set."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from test_detector_api import batch_of  # one random-batch helper for the detector tests
from torch.utils.data import DataLoader, Dataset

from autotimm import FeatureBackboneConfig, LoggingConfig, ObjectDetector


def make_shapes(n: int, size: int = 64, seed: int = 0):
    """Filled rectangles (class 0) and ellipses (class 1), bright on dark, not overlapping."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(size).view(-1, 1).float() + 0.5
    xs = torch.arange(size).view(1, -1).float() + 0.5
    items = []
    for _ in range(n):
        image = torch.rand(3, 1, 1, generator=g) * 0.3
        image = image + torch.randn(3, size, size, generator=g) * 0.03
        boxes, labels = [], []
        for _ in range(10):
            if len(boxes) == 2:
                break
            w, h = torch.randint(12, 30, (2,), generator=g).tolist()
            x1 = int(torch.randint(0, size - w + 1, (1,), generator=g))
            y1 = int(torch.randint(0, size - h + 1, (1,), generator=g))
            if any(x1 < b[2] + 2 and b[0] < x1 + w + 2 and y1 < b[3] + 2 and b[1] < y1 + h + 2
                   for b in boxes):
                continue
            cls = len(boxes) % 2
            if cls == 0:
                mask = (xs >= x1) & (xs < x1 + w) & (ys >= y1) & (ys < y1 + h)
            else:
                mask = ((xs - x1 - w / 2) / (w / 2)) ** 2 + ((ys - y1 - h / 2) / (h / 2)) ** 2 <= 1
            image = torch.where(mask, torch.rand(3, 1, 1, generator=g) * 0.3 + 0.7, image)
            boxes.append([x1, y1, x1 + w, y1 + h])
            labels.append(cls)
        items.append({"image": (image - 0.3) / 0.3,
                      "boxes": torch.tensor(boxes, dtype=torch.float32),
                      "labels": torch.tensor(labels, dtype=torch.int64)})
    return items


class Shapes(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def collate(items: list[dict]) -> dict:
    return {"images": torch.stack([it["image"] for it in items]),
            "boxes": [it["boxes"] for it in items], "labels": [it["labels"] for it in items]}


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize(("arch", "epochs"), [("fcos", 15), ("yolox", 30)])
def test_trains_end_to_end(arch: str, epochs: int, tmp_path) -> None:
    pl.seed_everything(0)
    items = make_shapes(8)
    loader = DataLoader(Shapes(items), batch_size=4, shuffle=True, collate_fn=collate)
    val_loader = DataLoader(Shapes(items[:4]), batch_size=4, collate_fn=collate)
    model = ObjectDetector(
        FeatureBackboneConfig("resnet18", pretrained=False), num_classes=2, detection_arch=arch,
        fpn_channels=16, head_num_convs=1, lr=2e-3, scheduler=None, compile_model=False,
        deterministic=False,
        logging_config=LoggingConfig(log_learning_rate=True, log_gradient_norm=True,
                                     log_weight_norm=True),
    )
    recorder = LossRecorder()
    trainer = pl.Trainer(
        max_epochs=epochs, check_val_every_n_epoch=epochs, num_sanity_val_steps=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[recorder], default_root_dir=tmp_path, accelerator="cpu",
    )
    trainer.fit(model, loader, val_loader)

    losses = recorder.losses
    assert min(losses) >= 0, losses
    assert sum(losses[-4:]) / 4 <= 0.5 * losses[0], losses
    metrics = trainer.logged_metrics
    assert "val/map" in metrics and "val/map_50" in metrics
    assert 0.0 <= float(metrics["val/map"]) <= 1.0
    assert float(metrics["train/lr"]) == pytest.approx(2e-3)
    assert {"train/loss", "train/cls_loss", "train/reg_loss", "train/num_pos",
            "train/grad_norm", "train/weight_norm"} <= set(metrics)
    assert ("train/centerness_loss" in metrics) == (arch == "fcos")
    assert "train/loss" in trainer.progress_bar_metrics

    # checkpoint round trip: the same model, the same detections
    path = tmp_path / "det.ckpt"
    trainer.save_checkpoint(path)
    loaded = ObjectDetector.load_from_checkpoint(path)
    assert loaded.hparams["backbone"] == model.hparams["backbone"]
    assert loaded.detection_arch == arch
    model.eval()
    loaded.eval()
    images = torch.stack([it["image"] for it in items[:4]])
    for a, b in zip(model.predict(images), loaded.predict(images), strict=True):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(a[key], b[key])
    result = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu").test(loaded, val_loader, verbose=False)[0]
    assert "test/map" in result and "test/map_50" in result
    # losses of val and test come from the forward pass that makes the detections
    loss_names = {"loss", "cls_loss", "reg_loss"}
    loss_names |= {"centerness_loss"} if arch == "fcos" else set()
    assert {f"test/{name}" for name in loss_names} <= set(result)
    assert {f"val/{name}" for name in loss_names} <= set(metrics)
    assert ("test/centerness_loss" in result) == (arch == "fcos")
    validated = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                           accelerator="cpu").validate(loaded, val_loader, verbose=False)[0]
    assert {f"val/{name}" for name in loss_names} | {"val/map"} <= set(validated)
    assert all(float(validated[f"val/{name}"]) >= 0 for name in loss_names)


def _batch(n: int = 4, size: int = 64, boxes_per_image: int = 12, seed: int = 0) -> dict:
    return batch_of(n=n, size=size, boxes_per_image=boxes_per_image, seed=seed)


def _small(arch: str, **kwargs) -> ObjectDetector:
    return ObjectDetector(FeatureBackboneConfig("resnet18", pretrained=False), num_classes=2,
                          detection_arch=arch, fpn_channels=16, head_num_convs=1,
                          compile_model=False, deterministic=False, **kwargs)


def test_yolox_training_step_makes_no_host_sync() -> None:
    from torch.profiler import profile

    model = _small("yolox")
    model.log = lambda *a, **k: None  # type: ignore[method-assign]  # logging aside
    batch = _batch()
    for use_l1 in (False, True):
        model.use_l1_loss = use_l1
        with profile() as prof:
            loss = model.training_step(batch, 0)
        names = [e.name for e in prof.events()]
        assert names.count("aten::item") == 0 and names.count("aten::_local_scalar_dense") == 0
        assert loss.requires_grad and float(loss) > 0


def test_yolox_losses_l1_switch_and_empty_images() -> None:
    model = _small("yolox", yolox_l1_epochs=2)
    batch = _batch(n=2)
    plain = model.compute_losses(batch)
    assert float(plain["l1_loss"]) == 0 and float(plain["num_pos"]) > 0
    model.use_l1_loss = True
    with_l1 = model.compute_losses(batch)
    assert float(with_l1["l1_loss"].detach()) > 0
    torch.testing.assert_close(with_l1["loss"], plain["loss"] + with_l1["l1_loss"])
    empty = {**batch, "boxes": [torch.zeros(0, 4)] * 2,
             "labels": [torch.zeros(0, dtype=torch.int64)] * 2}
    losses = model.compute_losses(empty)
    assert float(losses["num_pos"]) == 0 and float(losses["reg_loss"]) == 0
    assert float(losses["cls_loss"]) > 0  # every point is pushed towards background
    losses["loss"].backward()


def test_backbone_batchnorm_statistics_follow_pretrained_and_frozen() -> None:
    def bn_modes(model: ObjectDetector) -> set[bool]:
        return {m.training for m in model.backbone.modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}

    scratch = _small("fcos").train()
    assert bn_modes(scratch) == {True}  # a from-scratch backbone trains its statistics
    frozen = _small("fcos", freeze_backbone=True).train()
    assert bn_modes(frozen) == {False} and frozen.fpn.training and frozen.head.training
    before = [m.running_mean.clone() for m in frozen.backbone.modules()
              if isinstance(m, torch.nn.BatchNorm2d)]
    frozen.compute_losses(_batch(n=2))
    after = [m.running_mean for m in frozen.backbone.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert bn_modes(frozen.eval()) == {False} and bn_modes(frozen.train()) == {False}
