"""Headless videos of a triangle mesh in motion: a software renderer in numpy (no OpenGL, no display).

``MeshScene`` draws vertices (T, V, 3), Y up, with faces (F, 3) wound counter-clockwise seen from outside;
``plot_mesh_motion`` writes them as a video through ``utils.plot_script.plot_frames`` (MP4 with ffmpeg, GIF through
Pillow otherwise, ``resolve_format``, ``RenderError``). The view is the stick figure's: the camera follows the root
(a 15 degree elevation, front-right three-quarter view of a body facing +Z), so the body stays in the middle while a
checkered floor, lowered to the lowest vertex of the motion, slides underneath; a perspective camera by default, an
orthographic one with ``fov=0``.

Visibility is a z-buffer, not the painter's algorithm. Sorting faces back to front is wrong where triangles
intersect or overlap in depth order cyclically (a hand resting on a thigh), and Pillow can only draw such a list one
polygon per Python call (13776 for SMPL). The z-buffer is exact per pixel and vectorises: each front-facing triangle
(back faces are culled, hence the winding) is expanded into the pixel centres of its
bounding box, barycentric coordinates keep those inside, and per pixel the candidate nearest the camera (a
lexicographic sort by pixel, then depth) wins against the other triangles and the floor. Depth is interpolated as
1/z, which is linear in screen space under perspective. Shading is flat Lambert: each face's colour is scaled by
``ambient + diffuse * max(0, n . l)`` for its world normal ``n`` and a light ``l`` above and left of the camera.

Speed, measured on a 2-core CPU (AMD EPYC, one thread: ``OMP_NUM_THREADS=1``) with ``bench/mesh_render.py`` for a
synthetic mesh of SMPL's size (6890 vertices, 13776 triangles, 24 joints) at the default 400 x 400 pixels: 0.016 s
to draw a frame and 0.04 s per frame for a whole GIF (skinning 0.0006 s, drawing, and matplotlib and Pillow
encoding), about 25 frames a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from utils.plot_script import even_pixels, plot_frames

BODY_COLOR = np.array([0.55, 0.68, 0.85])
FLOOR_COLORS = np.array([[0.83, 0.83, 0.83], [0.70, 0.70, 0.70]])
BACKGROUND = np.array([1.0, 1.0, 1.0])
AMBIENT, DIFFUSE = 0.3, 0.7
TILE = 0.5  # floor checker squares, in the vertices' units (metres for SMPL)
NEAR = 1e-3  # faces closer to the camera than this are not drawn


class Raster(NamedTuple):
    """Per pixel (H, W): the index of the visible face (-1: none) and its depth key (larger is farther)."""

    face: np.ndarray
    depth: np.ndarray


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (F, 3) of the triangles ``faces`` (F, 3) of ``vertices`` (V, 3), outward for counter-clockwise
    winding; a degenerate face gets a zero normal."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    return np.where(length > 0, normals / np.where(length > 0, length, 1.0), 0.0)


def lambert(normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Brightness (F,) of faces with unit ``normals`` (F, 3) under a directional light toward ``light`` (3,):
    ``AMBIENT + DIFFUSE * max(0, n . l)``, from AMBIENT (facing away) to 1 (facing the light)."""
    light = np.asarray(light, dtype=np.float64)
    return AMBIENT + DIFFUSE * np.clip(normals @ (light / np.linalg.norm(light)), 0.0, None)


def rasterize(screen: np.ndarray, depth: np.ndarray, faces: np.ndarray, height: int, width: int) -> Raster:
    """Z-buffer the triangles ``faces`` (F, 3) of vertices at pixel coordinates ``screen`` (V, 2) (x right, y down,
    pixel (i, j) covering [j, j + 1) x [i, i + 1)) with depth keys ``depth`` (V,) that are linear in screen space
    and grow away from the camera. Triangles seen from behind (clockwise on screen) are culled. A pixel belongs to a
    triangle when its centre is inside or on an edge; the nearest such triangle wins, ties to the lower face index."""
    tri = screen[faces]  # (F, 3, 2)
    key = depth[faces]  # (F, 3)
    x, y = tri[..., 0], tri[..., 1]
    # Twice the signed area with y down: negative for a triangle counter-clockwise as seen, i.e. facing the camera.
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    x_lo = np.clip(np.ceil(x.min(1) - 0.5), 0, width - 1).astype(np.int64)
    x_hi = np.clip(np.floor(x.max(1) - 0.5), -1, width - 1).astype(np.int64)
    y_lo = np.clip(np.ceil(y.min(1) - 0.5), 0, height - 1).astype(np.int64)
    y_hi = np.clip(np.floor(y.max(1) - 0.5), -1, height - 1).astype(np.int64)
    cols, rows = np.maximum(x_hi - x_lo + 1, 0), np.maximum(y_hi - y_lo + 1, 0)
    visible = np.flatnonzero((area < 0) & (cols * rows > 0) & np.isfinite(key).all(1))
    face_raster = np.full((height, width), -1, dtype=np.int64)
    depth_raster = np.full((height, width), np.inf)
    if visible.size == 0:
        return Raster(face_raster, depth_raster)
    # Barycentric coordinates b0, b1 and the depth key as planes a * x + b * y + c over the screen, per face.
    x, y, key, area = x[visible], y[visible], key[visible], area[visible]
    planes = []
    for i, j in ((1, 2), (2, 0)):  # b_k is the edge function of the opposite edge over twice the area
        planes.append(np.stack([-(y[:, j] - y[:, i]), x[:, j] - x[:, i],
                                (y[:, j] - y[:, i]) * x[:, i] - (x[:, j] - x[:, i]) * y[:, i]], -1) / area[:, None])
    b0, b1 = planes
    key_plane = b0 * (key[:, 0] - key[:, 2])[:, None] + b1 * (key[:, 1] - key[:, 2])[:, None]
    key_plane[:, 2] += key[:, 2]
    coefficients = np.concatenate([b0, b1, key_plane], axis=1)  # (F', 9)
    # Every pixel centre of every bounding box, face by face.
    counts = cols[visible] * rows[visible]
    owner = np.repeat(np.arange(visible.size), counts)
    local = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    px = x_lo[visible][owner] + local % cols[visible][owner]
    py = y_lo[visible][owner] + local // cols[visible][owner]
    c = coefficients[owner]
    cx, cy = px + 0.5, py + 0.5
    w0 = c[:, 0] * cx + c[:, 1] * cy + c[:, 2]
    w1 = c[:, 3] * cx + c[:, 4] * cy + c[:, 5]
    eps = 1e-9  # pixels on a shared edge go to one of its faces, never to neither
    inside = (w0 >= -eps) & (w1 >= -eps) & (w0 + w1 <= 1 + eps)
    owner, px, py = owner[inside], px[inside], py[inside]
    z = c[inside, 6] * cx[inside] + c[inside, 7] * cy[inside] + c[inside, 8]
    pixel = py * width + px
    order = np.lexsort((z, pixel))  # stable: equal depths keep the lower face index first
    first = order[np.r_[True, pixel[order][1:] != pixel[order][:-1]]]
    face_raster.reshape(-1)[pixel[first]] = visible[owner[first]]
    depth_raster.reshape(-1)[pixel[first]] = z[first]
    return Raster(face_raster, depth_raster)


class MeshScene:
    """The frames of a mesh motion: ``vertices`` (T, V, 3), Y up, ``faces`` (F, 3) counter-clockwise seen from
    outside, ``root`` (T, 3) the point the camera follows (default: the mean vertex of each frame).

    ``size`` pixels square, ``elevation`` and ``azimuth`` of the camera in degrees (the stick figure's view by
    default), ``fov`` the vertical field of view in degrees (0: orthographic), ``radius`` the side of the view in the
    vertices' units (default: fitted to the motion, as the stick figure's), ``light`` the direction toward the light
    (default: above and left of the camera). ``frame(t)`` is (size, size, 3) uint8.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, root: np.ndarray | None = None, size: int = 400,
                 elevation: float = 15.0, azimuth: float = -30.0, fov: float = 35.0,
                 radius: float | None = None, light: Sequence[float] | None = None) -> None:
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces)
        if vertices.ndim != 3 or vertices.shape[-1] != 3 or len(vertices) < 1:
            raise ValueError(f"MeshScene: vertices have shape {vertices.shape}; expected (T, V, 3) with T >= 1")
        if (faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer)
                or faces.min(initial=0) < 0 or faces.max(initial=0) >= vertices.shape[1]):
            raise ValueError(f"MeshScene: faces have shape {faces.shape} ({faces.dtype}); expected (F, 3) integer "
                             f"indices of the {vertices.shape[1]} vertices")
        if not np.isfinite(vertices).all():
            raise ValueError("MeshScene: the vertices hold NaN or Inf")
        if radius is not None and not (np.isfinite(radius) and radius > 0):  # else a blank image, the view reversed
            raise ValueError(f"MeshScene: radius {radius}; expected a finite size > 0 in the vertices' units "
                             f"(None: fitted)")
        if int(size) < 1:
            raise ValueError(f"MeshScene: size {size}; expected at least 1 pixel")
        if not 0 <= fov < 180:
            raise ValueError(f"MeshScene: fov {fov}; expected degrees in [0, 180) (0: orthographic)")
        if light is not None:  # else lambert divides by zero: a black body and only numpy's warnings
            light = np.asarray(light, dtype=np.float64)
            if light.shape != (3,) or not np.isfinite(light).all() or not np.linalg.norm(light) > 0:
                raise ValueError(f"MeshScene: light {light.tolist()}; expected a finite non-zero direction (x, y, z) "
                                 f"toward the light (None: above and left of the camera)")
        root = vertices.mean(axis=1) if root is None else np.asarray(root, dtype=np.float64)
        if root.shape != (len(vertices), 3):
            raise ValueError(f"MeshScene: root has shape {root.shape}; expected ({len(vertices)}, 3)")
        floor = vertices[..., 1].min()
        self.vertices = vertices - np.array([0.0, floor, 0.0])  # the lowest point of the motion on the floor y = 0
        self.faces = faces.astype(np.int64)
        self.trajectory = root[:, [0, 2]]  # (T, 2): the camera follows the root over the floor
        if radius is None:
            around_root = np.abs(self.vertices[..., [0, 2]] - self.trajectory[:, None]).max()
            radius = 1.1 * max(self.vertices[..., 1].max(), 2.0 * around_root) or 1.0
        self.radius = float(radius)
        self.size = int(size)
        half = self.radius / 2.0
        self.floor_lo, self.floor_hi = self.trajectory.min(0) - half, self.trajectory.max(0) + half

        el, az = np.deg2rad(elevation), np.deg2rad(azimuth)
        to_eye = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        self.forward = -to_eye
        right = np.cross(self.forward, [0.0, 1.0, 0.0])
        self.right = right / np.linalg.norm(right)
        self.up = np.cross(self.right, self.forward)
        # Toward the light: by default above and left of the camera, which moves with the body, so the shading
        # does not change as the body walks.
        self.light = to_eye + np.array([0.0, 1.0, 0.0]) - 0.6 * self.right if light is None else light
        self.perspective = fov > 0
        view = 1.15 * self.radius  # what the image's height shows at the target
        self.target_height = 0.45 * self.radius
        if self.perspective:
            self.focal = self.size / 2.0 / np.tan(np.deg2rad(fov) / 2.0)  # pixels
            self.distance = view / 2.0 / np.tan(np.deg2rad(fov) / 2.0)
        else:
            self.focal = self.size / view  # pixels per unit
            self.distance = 10.0 * self.radius  # far enough that the whole scene is in front
        # The camera only moves over the floor, so where each pixel's ray meets the floor is fixed relative to the eye:
        # the ray's depth there and the horizontal offset of the hit point, computed once.
        centre = (np.arange(self.size) + 0.5 - self.size / 2.0) / self.focal
        pixel_right, pixel_up = np.meshgrid(centre, -centre)
        across = pixel_right[..., None] * self.right + pixel_up[..., None] * self.up
        if self.perspective:  # rays from the eye along forward + across, parametrised by depth
            start, direction = np.zeros_like(across), self.forward + across
        else:  # parallel rays from each pixel's point on the image plane
            start, direction = across, np.broadcast_to(self.forward, across.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = -(self.target_height - self.distance * self.forward[1] + start[..., 1]) / direction[..., 1]
        self.floor_hits = np.isfinite(depth) & (depth > NEAR)  # a level camera's rays never meet the floor
        hit = start + np.where(self.floor_hits, depth, 0.0)[..., None] * direction
        self.floor_offset = hit[..., [0, 2]]
        self.floor_depth = np.where(self.floor_hits, -1.0 / np.where(self.floor_hits, depth, 1.0)
                                    if self.perspective else depth, np.inf)

    def __len__(self) -> int:
        return len(self.vertices)

    def eye(self, t: int) -> np.ndarray:
        """The camera position (3,) at frame ``t``."""
        x, z = self.trajectory[t]
        return np.array([x, self.target_height, z]) - self.distance * self.forward

    def project(self, points: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) (x right, y down) and depth keys (N,) (linear in screen space, growing away from
        the camera; inf behind the near plane) of ``points`` (N, 3) seen from frame ``t``'s camera."""
        rel = points - self.eye(t)
        x, y, z = rel @ self.right, rel @ self.up, rel @ self.forward
        if self.perspective:
            front = z > NEAR
            z = np.where(front, z, 1.0)  # points behind the camera get a finite place and an infinite depth
            x, y, depth = x / z, y / z, np.where(front, -1.0 / z, np.inf)
        else:
            depth = z
        return np.stack([self.size / 2.0 + self.focal * x, self.size / 2.0 - self.focal * y], -1), depth

    def frame(self, t: int) -> np.ndarray:
        """The image (size, size, 3) uint8 of frame ``t``."""
        vertices = self.vertices[t]
        screen, depth = self.project(vertices, t)
        raster = rasterize(screen, depth, self.faces, self.size, self.size)
        # Each pixel indexes a palette: 0 the background, 1 and 2 the floor's squares, 3 + f the colour of face f.
        hit = self.floor_offset + self.eye(t)[[0, 2]]
        on_floor = self.floor_hits & np.all((hit >= self.floor_lo) & (hit <= self.floor_hi), -1)
        checker = (np.floor(hit[..., 0] / TILE) + np.floor(hit[..., 1] / TILE)) % 2
        index = np.where(on_floor, 1 + checker.astype(np.int64), 0)
        body = (raster.face >= 0) & (raster.depth <= np.where(on_floor, self.floor_depth, np.inf))
        index[body] = 3 + raster.face[body]  # a foot through the floor stays hidden below it
        shade = lambert(face_normals(vertices, self.faces), self.light)
        palette = np.concatenate([BACKGROUND[None], FLOOR_COLORS, BODY_COLOR * shade[:, None]])
        return np.round(255 * palette).astype(np.uint8)[index]


def plot_mesh_motion(save_path: str, vertices: np.ndarray, faces: np.ndarray, root: np.ndarray | None = None,
                     title: str = "", fps: float = 20, fmt: str = "auto", dpi: int = 100, figsize: float = 4.0,
                     captions: Sequence[tuple[int, str]] | None = None, saved_note: str = "",
                     **view) -> str:
    """Write the mesh motion ``vertices`` (T, V, 3), Y up, ``faces`` (F, 3) as a video of ``figsize * dpi`` pixels
    square, rounded to even (plus a title band), ``save_path``'s extension replaced by the format written (``fmt``:
    "auto", "mp4", "gif"). ``root`` (T, 3) is the point the camera follows; ``view`` takes ``MeshScene``'s
    ``elevation``, ``azimuth``, ``fov``, ``radius`` and ``light``; ``title`` / ``captions`` and ``saved_note`` as in
    ``utils.plot_script.plot_frames``. Returns the path written; raises ``RenderError`` when it could not be."""
    scene = MeshScene(vertices, faces, root, size=even_pixels(figsize * dpi), **view)
    return plot_frames(save_path, scene.frame, len(scene), title=title, fps=fps, dpi=dpi, fmt=fmt, figsize=figsize,
                       captions=captions, saved_note=saved_note)
