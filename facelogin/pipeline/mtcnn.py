"""MTCNN's three stages (facenet-pytorch's ``detect_face``) with its image resampling done at once, exactly.

facenet-pytorch shrinks the image once per pyramid scale and every candidate box's crop once more, each
with its own ``interpolate(mode="area")`` call: ~40 calls a 320x240 login frame, 5.3 of its 15.7 ms of
detection here (the nets themselves took 7.2). Area resampling is torch's adaptive average pool: output
cell i of n covers input rows floor(i*H/n) .. ceil((i+1)*H/n), and its value is the cell's sum divided
by the rows, then by the columns, in float32. The pixels are integers, so every sum is exact from one
integral image whatever the order, and one numba kernel (``_area_kernels``) fills all cells of all crops
with the same float32 values bit for bit (tests/pipeline/test_mtcnn.py compares the whole detection with
facenet-pytorch's on real faces). Everything else (the nets, box arithmetic, NMS) is facenet-pytorch's
own code, called in its order, so the boxes, scores and landmarks are the library's.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def integral_images(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H + 1, W + 1, 3) int32 running sums with a zero first row and column
    (an int32 holds 255 x 8.4 million pixels: any image the detector is given)."""
    from ._area_kernels import integral

    n, h, w, c = images.shape
    sums = np.zeros((n, h + 1, w + 1, c), dtype=np.int32)
    integral(np.ascontiguousarray(images, dtype=np.uint8), sums)
    return sums


def area_resample(sums: np.ndarray, image: np.ndarray, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Rectangles [y0, y1) x [x0, x1) of images ``image`` (their indices into ``sums``), each resampled to
    ``size`` (rows, columns) as torch's area interpolation does, and scaled for the nets:
    (k, rows, columns, 3) float32."""
    from ._area_kernels import cells

    def column(values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values, dtype=np.int64)

    out = np.empty((len(image), size[0], size[1], 3), dtype=np.float32)
    cells(sums, column(image), column(y0), column(y1), column(x0), column(x1), out)
    return out


def _net_input(batch: np.ndarray) -> Any:
    """(k, rows, columns, 3) float32 as the (k, 3, rows, columns) channels-last tensor the nets took from
    facenet-pytorch (the same memory layout, so the same convolution path)."""
    import torch

    return torch.from_numpy(batch).permute(0, 3, 1, 2)


def _refine(net: Any, sums: np.ndarray, boxes: Any, image_inds: Any, size: tuple[int, int], side: int, score_at: int, threshold: float) -> tuple:
    """One refining stage (R-Net or O-Net) as facenet-pytorch runs it: the candidates' crops, cut as the
    library cuts them (``pad`` clamps a box to the image; 1-based ends), through ``net``; returns the
    boxes scoring over ``threshold`` with their score, their images, their box corrections, the net's
    outputs and which candidates passed."""
    import torch
    from facenet_pytorch.models.utils.detect_face import fixed_batch_process, pad

    y, ey, x, ex = pad(boxes, *size)
    kept = (ey > y - 1) & (ex > x - 1)  # the library skips a crop of no pixels (and then fails: we drop its box)
    batch = area_resample(sums, image_inds.numpy()[kept], y[kept] - 1, ey[kept], x[kept] - 1, ex[kept], (side, side))
    kept_rows = torch.from_numpy(kept)
    boxes, image_inds = boxes[kept_rows], image_inds[kept_rows]
    out = fixed_batch_process(_net_input(batch), net)
    score = out[score_at].permute(1, 0)[1, :]
    passed = score > threshold
    boxes = torch.cat((boxes[passed, :4], score[passed].unsqueeze(1)), dim=1)
    corrections = out[0].permute(1, 0)[:, passed].permute(1, 0)
    return boxes, image_inds[passed], corrections, out, passed


def detect_faces(nets: Any, images: np.ndarray, min_face_size: int, thresholds: tuple[float, float, float], factor: float) -> list[tuple[Any, Any, Any]]:
    """facenet-pytorch's ``MTCNN.detect(images, landmarks=True)`` for (N, H, W, 3) uint8 images of one size,
    ``nets`` its MTCNN (pnet, rnet, onet): per image (boxes (k, 4), probabilities (k,), landmarks (k, 5, 2)),
    largest box first, or (None, [None], None) without a face. Call under ``torch.inference_mode()``."""
    import torch
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg, generateBoundingBox, rerec
    from torchvision.ops.boxes import batched_nms

    batch_size, height, width = images.shape[:3]
    sums = integral_images(images)
    every = np.arange(batch_size)
    whole = (np.zeros(batch_size, int), np.full(batch_size, height), np.zeros(batch_size, int), np.full(batch_size, width))

    # Stage 1: P-Net over the pyramid (the library's scales, sizes and per-scale NMS).
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scales = []
    scale = m
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    boxes_list, inds_list, picks = [], [], []
    offset = 0
    for scale in scales:
        size = (int(height * scale + 1), int(width * scale + 1))
        reg, probs = nets.pnet(_net_input(area_resample(sums, every, *whole, size)))
        boxes_scale, inds_scale = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        boxes_list.append(boxes_scale)
        inds_list.append(inds_scale)
        picks.append(batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], inds_scale, 0.5) + offset)
        offset += boxes_scale.shape[0]
    boxes = torch.cat(boxes_list, dim=0)
    image_inds = torch.cat(inds_list, dim=0)
    pick = torch.cat(picks, dim=0)
    boxes, image_inds = boxes[pick], image_inds[pick]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh, boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]]
    ).permute(1, 0)
    boxes = rerec(boxes)

    # Stage 2: R-Net on 24x24 crops.
    if len(boxes) > 0:
        boxes, image_inds, mv, _, _ = _refine(nets.rnet, sums, boxes, image_inds, (width, height), 24, 1, thresholds[1])
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = rerec(bbreg(boxes, mv))

    # Stage 3: O-Net on 48x48 crops: scores, box corrections and the five landmarks.
    points = torch.zeros(0, 5, 2)
    if len(boxes) > 0:
        boxes, image_inds, mv, out, ipass = _refine(nets.onet, sums, boxes, image_inds, (width, height), 48, 2, thresholds[2])
        points = out[1].permute(1, 0)[:, ipass]
        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, mv)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

    boxes_np, points_np, inds_np = boxes.numpy(), points.numpy(), image_inds.numpy()
    found: list[tuple[Any, Any, Any]] = []
    for index in range(batch_size):
        mine = np.where(inds_np == index)
        box, point = boxes_np[mine], points_np[mine]
        if len(box) == 0:
            found.append((None, [None], None))
            continue
        order = np.argsort((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))[::-1]  # MTCNN(select_largest=True)
        found.append((box[order][:, :4], box[order][:, 4], point[order]))
    return found
