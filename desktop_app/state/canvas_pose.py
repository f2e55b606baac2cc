"""Pose layers: a control layer of kind "pose" holds figures (OpenPose's 18 body keypoints each, in
the layer's ``pose`` property, image pixels) and its pixels are those figures drawn as OpenPose draws
them (engine.preprocess.draw_pose), which is the image the pose ControlNet gets. Here: a new figure,
finding the joint under the pointer, and the area a figure covers. Qt-free; GUI thread.
"""

from __future__ import annotations

import math
from typing import Any

# A person standing, facing the viewer (their right side on the image's left), in units of the figure's
# height from the top of the head, x from its middle; in OpenPose's keypoint order.
_STANDING = ((0.0, 0.08), (0.0, 0.18), (-0.11, 0.18), (-0.15, 0.35), (-0.17, 0.5), (0.11, 0.18), (0.15, 0.35),
             (0.17, 0.5), (-0.07, 0.52), (-0.08, 0.74), (-0.08, 0.95), (0.07, 0.52), (0.08, 0.74), (0.08, 0.95),
             (-0.025, 0.065), (0.025, 0.065), (-0.05, 0.08), (0.05, 0.08))

Person = list  # 18 entries: [x, y] or None


def pose_of(layer: Any) -> list[Person]:
    """The figures of ``layer`` (a pose control layer); [] for any other layer."""
    if layer is None or layer.kind != "control" or layer.props.get("control") != "pose":
        return []
    return [list(person) for person in layer.props.get("pose") or []]


def is_pose_layer(layer: Any) -> bool:
    return layer is not None and layer.kind == "control" and layer.props.get("control") == "pose"


def standing_figure(width: int, height: int, count: int = 0) -> Person:
    """A standing figure 80% of the canvas's height, centred; the ``count``-th one added stands a
    fifth of the width further right (wrapping round), so figures do not land on each other."""
    tall = height * 0.8
    top = height * 0.1
    cx = width * (0.5 + 0.2 * ((count + 2) % 5 - 2))
    return [[round(cx + dx * tall, 2), round(top + dy * tall, 2)] for dx, dy in _STANDING]


def joint_at(people: list[Person], x: float, y: float, radius: float) -> tuple[int, int] | None:
    """The (figure, joint) nearest to (x, y) within ``radius``; None when none is that close. The figure
    added last wins a tie (it is drawn on top)."""
    best, found = radius, None
    for p in range(len(people) - 1, -1, -1):
        for j, point in enumerate(people[p]):
            if point is not None:
                d = math.hypot(point[0] - x, point[1] - y)
                if d < best:
                    best, found = d, (p, j)
    return found


def bounds(person: Person, margin: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The rect (l, t, r, b) a figure's drawing covers, inside the canvas; None if none of it is."""
    points = [p for p in person if p is not None]
    if not points:
        return None
    l = max(0, math.floor(min(p[0] for p in points)) - margin)
    t = max(0, math.floor(min(p[1] for p in points)) - margin)
    r = min(width, math.floor(max(p[0] for p in points)) + margin + 1)
    b = min(height, math.floor(max(p[1] for p in points)) + margin + 1)
    return (l, t, r, b) if l < r and t < b else None
