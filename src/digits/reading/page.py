"""Find the page in a photo: a sheet of paper (a form, a label, a note) lighter than what surrounds it.

A photo of paper on a desk, a scan with the scanner bed showing along one edge, a page turned a few degrees
with the corners it uncovered filled dark: in each, the dark surround is no ink, yet thresholded with the
page it makes shapes (a scanner edge reads as a confident 1) or, on a desk, takes the paper for the ink.
:func:`find_page` finds the largest light, convex region on a darker surround, fits a quadrilateral to it
and straightens it with a perspective warp, so the digits are read inside the page only. Whether a page
was found is a guess; :class:`digits.reading.Recognizer` reads both the page and the whole picture and
keeps the reading it trusts more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# The page is found on a copy at most this many pixels on its long side: it is the biggest thing in view.
_FIND_SIDE = 256
# A page is at least this share of the picture ...
_MIN_AREA = 0.1
# ... leaves at least this share of it outside (else there is no surround to drop) ...
_MIN_SURROUND = 0.003
# ... is convex: at least this share of its convex hull (ink inside it counted as page) ...
_MIN_SOLIDITY = 0.9
# ... and is lighter than its surround by at least this (of the full gray range), medians compared, all
# round and right at its edge (where light merely falls off, there is no edge).
_MIN_CONTRAST = 0.15
_EDGE_BAND = 3  # pixels of the copy on either side of the page's outline
# A straightened page is cut in by this share of its size on every side: its edge, anti-aliased against
# the surround, is no ink either.
_INSET = 0.01
# Straightened pages are at most this many pixels (a big photo's page is shrunk: digits need far fewer).
_MAX_PAGE_PIXELS = 4_000_000
# A picture under this many pixels on its short side is a digit's crop (MNIST's are 28), not a page in view: a
# filled 0 would pass for one.
_MIN_PICTURE_SIDE = 48


@dataclass(frozen=True, eq=False)
class Page:
    """A page found in a picture, and the page straightened."""

    corners: np.ndarray  # (4, 2) float32 picture pixels (x, y): top-left, top-right, bottom-right, bottom-left
    gray: np.ndarray  # (h, w) float32 in [0, 1]: the page seen from straight above, upright
    to_picture: np.ndarray  # (3, 3) float64 homography from page pixels to picture pixels
    region: np.ndarray  # (h, w) bool: the page's pixels in a copy of the picture `scale` times its size
    scale: float

    def holds(self, box: tuple[int, int, int, int]) -> bool:
        """Whether the centre of a box (x, y, w, h) in picture pixels lies on the page (not on what the
        corners take in beyond it, where the picture's frame cut the page)."""
        x, y, w, h = box
        row = min(max(int((y + h / 2) * self.scale), 0), self.region.shape[0] - 1)
        col = min(max(int((x + w / 2) * self.scale), 0), self.region.shape[1] - 1)
        return bool(self.region[row, col])

    def box_in_picture(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box (x, y, w, h) in page pixels as the box around it in picture pixels."""
        x, y, w, h = box
        points = np.array([[[x, y]], [[x + w, y]], [[x + w, y + h]], [[x, y + h]]], np.float64)
        mapped = cv2.perspectiveTransform(points, self.to_picture)[:, 0]
        x0, y0 = np.floor(mapped.min(axis=0)).astype(int)
        x1, y1 = np.ceil(mapped.max(axis=0)).astype(int)
        return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def find_page(gray: np.ndarray) -> Page | None:
    """The page in ``gray`` ((H, W) float32 in [0, 1]), or None when no light convex region on a darker
    surround is big enough to be one."""
    H, W = gray.shape
    if min(H, W) < _MIN_PICTURE_SIDE:
        return None
    f = min(1.0, _FIND_SIDE / max(H, W))
    small = cv2.resize(gray, (max(1, round(W * f)), max(1, round(H * f))), interpolation=cv2.INTER_AREA)
    if min(small.shape) < 16:
        return None
    small = cv2.GaussianBlur(small, (5, 5), 0)
    u8 = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
    _, light = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(light, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    region = np.zeros_like(light)
    cv2.drawContours(region, [outline], -1, 255, cv2.FILLED)  # the page with its ink
    inside = region > 0
    area, hull = float(np.count_nonzero(inside)), cv2.convexHull(outline)
    surround = ~inside
    if (
        area < _MIN_AREA * inside.size
        or np.count_nonzero(surround) < _MIN_SURROUND * inside.size
        or area < _MIN_SOLIDITY * max(1.0, cv2.contourArea(hull))
        or float(np.median(small[inside])) - float(np.median(small[surround])) < _MIN_CONTRAST
    ):
        return None
    band = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * _EDGE_BAND + 1, 2 * _EDGE_BAND + 1))
    rim_in = inside & (cv2.erode(region, band) == 0) & (light > 0)  # the paper along the outline
    rim_out = (cv2.dilate(region, band) > 0) & surround
    if not (rim_in.any() and rim_out.any()):
        return None
    if float(np.median(small[rim_in])) - float(np.median(small[rim_out])) < _MIN_CONTRAST:
        return None
    paper = float(np.median(small[inside & (light > 0)]))
    # The surround is painted paper first: where the page is cut by the picture's frame, the quadrilateral
    # takes in some of it (a turned page's filled corners).
    beyond = cv2.resize(surround.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
    r = math.ceil(1 / f) + 1  # a small pixel's width, and the page's anti-aliased edge
    beyond = cv2.dilate(beyond, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)))
    painted = np.where(beyond > 0, np.float32(paper), gray)
    corners = _quadrilateral(hull) / np.float32(f)
    straight = _straighten(painted, corners, paper)
    if straight is None:
        return None
    gray_page, to_picture = straight
    return Page(corners, gray_page, to_picture, region=inside, scale=f)


def _quadrilateral(hull: np.ndarray) -> np.ndarray:
    """Four corners (top-left, top-right, bottom-right, bottom-left) of a convex outline: its own, when it
    simplifies to four; else the smallest rectangle around it (a page cut by the picture's frame)."""
    perimeter = cv2.arcLength(hull, True)
    quad = cv2.approxPolyDP(hull, 0.02 * perimeter, True)
    points = quad[:, 0].astype(np.float32) if len(quad) == 4 else cv2.boxPoints(cv2.minAreaRect(hull))
    # The corner nearest the picture's top-left has the smallest x + y, and so on; the page is taken as
    # upright to within 45 degrees.
    s, d = points.sum(axis=1), points[:, 0] - points[:, 1]
    return np.array(
        [points[np.argmin(s)], points[np.argmax(d)], points[np.argmax(s)], points[np.argmin(d)]], np.float32
    )


def _straighten(gray: np.ndarray, corners: np.ndarray, paper: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The page inside ``corners`` seen from straight above, cut in by _INSET (beyond the picture, paper),
    and the homography from its pixels to the picture's; None for a sliver."""
    tl, tr, br, bl = corners
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    if min(width, height) < 16:
        return None
    q = min(1.0, math.sqrt(_MAX_PAGE_PIXELS / (width * height)))
    w, h = width * q, height * q
    full = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    mx, my = _INSET * w, _INSET * h
    to_picture = cv2.getPerspectiveTransform(full, corners).astype(np.float64) @ np.array(
        [[1, 0, mx], [0, 1, my], [0, 0, 1]], np.float64
    )
    size = (max(1, round(w - 2 * mx)), max(1, round(h - 2 * my)))
    straight = cv2.warpPerspective(
        gray, to_picture, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=paper
    )
    return straight.astype(np.float32), to_picture
