"""Trainer: learning, determinism, bit-exact resume (limit, crash, SIGINT), task losses."""

import json
import math
import os
import random
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from densepac.engine.checkpoint import load_checkpoint
from densepac.engine.tasks import DepthTask, SegmentationTask, masked_depth_loss
from densepac.engine.trainer import Trainer, evaluate
from densepac.errors import InputError

SIZE = 16


class TinyDepthSet(Dataset):
    """Depth = function of a smooth RGB image; random augmentations from all three global RNGs
    (so the test notices if the per-sample seeding or the RNG restore is wrong)."""

    def __init__(self, n: int = 10, seed: int = 0, augment: bool = True) -> None:
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 3, SIZE // 4, SIZE // 4, generator=g)
        self.rgb = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        self.depth = 1.0 + 3.0 * self.rgb.mean(dim=1, keepdim=True)
        self.depth[:, :, 0, :3] = 0.0  # missing pixels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int) -> dict:
        rgb, depth = self.rgb[i].clone(), self.depth[i].clone()
        if self.augment:
            rgb = (rgb + 0.02 * torch.randn_like(rgb)).clamp(0, 1)
            if np.random.rand() < 0.5:
                rgb, depth = rgb.flip(-1), depth.flip(-1)
            depth = depth * (1.0 + 0.01 * random.random())
        return {"rgb": rgb, "depth": depth, "depth_lr": F.avg_pool2d(depth, 4), "name": f"s{i}"}


class TinyUpsampler(nn.Module):
    """Bilinear upsampling plus a learned residual from the guide (with dropout)."""

    task = "depth"

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.2))
        self.head = nn.Conv2d(8, 1, 3, padding=1)
        self.crash_at: int | None = None
        self.interrupt_at: int | None = None
        self.calls = 0

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.crash_at:
                raise RuntimeError("simulated crash")
            if self.calls == self.interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)
        up = F.interpolate(depth_lr, size=guide.shape[-2:], mode="bilinear", align_corners=False)
        return up + self.head(self.body(torch.cat([up, guide], dim=1)))


def make_model(seed: int = 0) -> TinyUpsampler:
    torch.manual_seed(seed)
    return TinyUpsampler()


def make_trainer(model, out_dir, **kw) -> Trainer:
    args = dict(out_dir=out_dir, epochs=3, batch_size=3, lr=1e-2, log_every=1, seed=0, checkpoint_every="epoch")
    args.update(kw)
    val = TinyDepthSet(4, seed=1, augment=False)
    return Trainer(model, DepthTask(), TinyDepthSet(10), val, **args)


def weights(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run that the other tests compare against."""
    out = tmp_path_factory.mktemp("reference")
    model = make_model()
    result = make_trainer(model, out).fit()
    return weights(model), result, out


def read_log(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_loss_goes_down_and_files_are_written(tmp_path):
    model = make_model()
    trainer = make_trainer(model, tmp_path, epochs=8, batch_size=5, lr=5e-2, checkpoint_every=4)
    result = trainer.fit()
    assert not result.interrupted and result.step == 16 and result.epoch == 8
    losses = [r["loss"] for r in read_log(tmp_path) if r["event"] == "train"]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert set(result.metrics) >= {"rmse", "mae", "absrel", "delta1", "rmse_per_image"}
    assert load_checkpoint(tmp_path / "checkpoints").step == 16
    assert load_checkpoint(tmp_path / "checkpoints", which="best").extra["monitor"] == "rmse"


def test_same_seed_same_weights(reference, tmp_path):
    ref_weights, ref_result, _ = reference
    model = make_model()
    result = make_trainer(model, tmp_path).fit()
    assert_same(weights(model), ref_weights)
    assert result.metrics == ref_result.metrics
    # Sample seeds come from (seed, epoch, index): a worker process changes nothing.
    model = make_model()
    make_trainer(model, tmp_path / "workers", num_workers=1).fit()
    assert_same(weights(model), ref_weights)


@pytest.mark.parametrize("how", ["max_steps", "crash", "sigint"])
def test_resume_mid_epoch_is_bit_identical(reference, tmp_path, how):
    ref_weights, ref_result, _ = reference
    model = make_model()
    if how == "max_steps":
        result = make_trainer(model, tmp_path).fit(max_steps=6)  # epoch 2, batch 2 of 4
        assert result.interrupted and result.step == 6
    elif how == "crash":
        model.crash_at = 8
        with pytest.raises(RuntimeError, match="simulated crash"):
            make_trainer(model, tmp_path, checkpoint_every=3).fit()
        assert load_checkpoint(tmp_path / "checkpoints").step == 6
    else:
        model.interrupt_at = 7
        before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background (nohup, &)
        result = make_trainer(model, tmp_path).fit()
        assert result.interrupted and result.step == 7
        assert signal.getsignal(signal.SIGINT) is before  # the trainer puts back the handler it found
    assert load_checkpoint(tmp_path / "checkpoints").batch_in_epoch > 0

    resumed = make_model(seed=123)  # different init: everything must come from the checkpoint
    result = make_trainer(resumed, tmp_path).fit(resume=True)
    assert not result.interrupted and result.step == ref_result.step
    assert_same(weights(resumed), ref_weights)
    assert result.metrics == ref_result.metrics
    assert [r["event"] for r in read_log(tmp_path)].count("resume") == 1


def test_resume_rules(reference, tmp_path):
    _, _, ref_dir = reference
    with pytest.raises(InputError, match="resume=True"):
        make_trainer(make_model(), ref_dir).fit()
    with pytest.raises(InputError, match="not a checkpoint"):
        make_trainer(make_model(), tmp_path / "a").fit(resume=tmp_path / "nothing")
    result = make_trainer(make_model(), tmp_path / "b", epochs=1).fit(resume=True)  # none yet
    assert result.step == 4
    # A finished run resumed does no more steps.
    again = make_trainer(make_model(), ref_dir).fit(resume=True)
    assert again.step == 12 and not again.interrupted


def test_param_groups_and_bad_arguments(tmp_path):
    model = make_model()
    t = make_trainer(model, tmp_path, param_groups=[{"params": [model.head.weight], "lr": 1e-4}], scheduler="none")
    groups = t.optimizer.param_groups
    assert len(groups) == 2 and groups[1]["lr"] == 1e-4 and groups[0]["lr"] == 1e-2
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(InputError, match="not a parameter"):
        make_trainer(model, tmp_path, param_groups=[{"params": [nn.Parameter(torch.ones(1))]}])
    with pytest.raises(InputError, match="optimizer"):
        make_trainer(model, tmp_path, optimizer="rmsprop")
    with pytest.raises(InputError, match="checkpoint_every"):
        make_trainer(model, tmp_path, checkpoint_every=0)
    with pytest.raises(InputError, match="empty"):
        Trainer(model, DepthTask(), TinyDepthSet(0), out_dir=tmp_path)
    with pytest.raises(InputError, match="task"):
        Trainer(model, SegmentationTask(3), TinyDepthSet(2), out_dir=tmp_path)


class TinySegSet(Dataset):
    def __init__(self, n: int = 6, k: int = 3) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, k, SIZE, SIZE, generator=g)
        self.labels = self.images.argmax(dim=1)
        self.labels[:, :2] = 255

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "name": f"s{i}"}


def test_segmentation_task_trains_and_evaluates(tmp_path):
    torch.manual_seed(0)
    model = nn.Conv2d(3, 3, 1)
    task = SegmentationTask(3, boundary_width=2)
    trainer = Trainer(
        model,
        task,
        TinySegSet(),
        TinySegSet(2),
        out_dir=tmp_path,
        epochs=6,
        batch_size=3,
        lr=1.0,
        optimizer="sgd",
        scheduler="poly",
    )
    result = trainer.fit()
    assert set(result.metrics) >= {"miou", "iou", "pixel_acc", "mean_class_acc", "boundary_miou"}
    assert result.metrics["pixel_acc"] > 0.5
    scores = [r["metrics"]["miou"] for r in read_log(tmp_path) if r["event"] == "eval"]
    assert result.best_score == max(scores)
    direct = evaluate(model, task, TinySegSet(2), batch_size=2)
    assert direct == result.metrics  # counts do not depend on the batch size


def test_depth_loss_masks_missing_pixels():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]], requires_grad=True)
    target = torch.tensor([[[[2.0, 0.0], [float("nan"), 4.0]]]])
    loss = masked_depth_loss(pred, target)
    assert loss.item() == pytest.approx((1.0 + 1.0) / 2)
    loss.backward()
    assert pred.grad.tolist() == [[[[-0.5, 0.0], [0.0, 0.5]]]]
    charb = masked_depth_loss(pred, target, kind="charbonnier", eps=1e-3)
    assert charb.item() == pytest.approx(math.sqrt(1 + 1e-6))
    far = torch.tensor([[[[1.0, 2.0], [3.0, 7.0]]]])  # errors -1 and 3 on the two valid pixels
    assert masked_depth_loss(far, target, kind="l2").item() == pytest.approx((1 + 9) / 2)
    with pytest.raises(InputError, match="l2"):
        masked_depth_loss(far, target, kind="huber")

    # No valid pixel: exactly zero, yet backward still works (DDP needs every grad).
    pred = torch.ones(1, 1, 2, 2, requires_grad=True)
    loss = masked_depth_loss(pred, torch.zeros(1, 1, 2, 2))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))
    with pytest.raises(InputError, match="shape"):
        masked_depth_loss(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 4, 4))


def test_segmentation_loss_all_ignored_is_zero_not_nan():
    task = SegmentationTask(3)
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = task.loss(logits, {"label": torch.full((1, 4, 4), 255)})
    assert loss.item() == 0.0
    loss.backward()
    label = torch.randint(0, 3, (1, 4, 4))
    expected = F.cross_entropy(logits, label)
    assert task.loss(logits, {"label": label}).item() == pytest.approx(expected.item())
    weighted = SegmentationTask(3, class_weights=torch.tensor([1.0, 2.0, 0.5]))
    expected = F.cross_entropy(logits, label, weight=torch.tensor([1.0, 2.0, 0.5]))
    assert weighted.loss(logits, {"label": label}).item() == pytest.approx(expected.item())
    with pytest.raises(InputError, match="label"):
        task.loss(logits, {"image": logits})


def test_amp_grad_clip_and_step_schedule_run(tmp_path):
    model = make_model()
    trainer = make_trainer(
        model, tmp_path, epochs=2, amp=True, grad_clip=0.5, scheduler="step", step_epochs=1, gamma=0.5, optimizer="adam"
    )
    result = trainer.fit()
    assert result.step == 8 and math.isfinite(result.metrics["rmse"])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)
    assert all(torch.isfinite(p).all() for p in model.parameters())
