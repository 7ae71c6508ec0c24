"""Point sets in weight space: the one abstraction every analysis produces.

A :class:`PointSet` is ``origin [P] + coords [K, d] @ basis [d, P]`` over a flat
parameter vector. Rays, segments and planes are affine families; an explicit list
of snapshots is the special case origin = 0, basis = the points, coords = identity
(its chunks are read directly instead of multiplied by an identity). Points are
materialised chunk by chunk on the evaluation device, so ``K x P`` never has to
exist at once.

BatchNorm buffers can travel with the points in the same form (``buffer_origin +
coords @ buffer_basis``, or explicit ``[K, Q]``): that is what "stored" and
"interpolated" BN modes evaluate with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .errors import UserError

__all__ = ["PointSet", "affine_buffers", "segment_points"]


def _check_finite(name: str, t: torch.Tensor | None) -> None:
    if t is not None and not torch.isfinite(t).all():
        raise UserError(f"{name} contains NaN or inf")


@dataclass(frozen=True)
class PointSet:
    """``K`` points in weight space.

    Attributes:
        coords: Coordinates ``[K, d]`` (None for explicit points).
        basis: Directions ``[d, P]`` (None for explicit points).
        origin: Origin ``[P]`` (None for explicit points).
        points: Explicit points ``[K, P]`` (None for affine families).
        buffer_origin: Buffers at the origin ``[Q]``, optional.
        buffer_basis: Buffer directions ``[d, Q]``, optional (interpolated buffers).
        buffers: Explicit buffers ``[K, Q]``, optional.
    """

    coords: torch.Tensor | None = None
    basis: torch.Tensor | None = None
    origin: torch.Tensor | None = None
    points: torch.Tensor | None = None
    buffer_origin: torch.Tensor | None = None
    buffer_basis: torch.Tensor | None = None
    buffers: torch.Tensor | None = None

    @classmethod
    def affine(cls, origin: torch.Tensor, basis: torch.Tensor, coords: torch.Tensor,
               buffer_origin: torch.Tensor | None = None, buffer_basis: torch.Tensor | None = None) -> PointSet:
        """The family ``origin + coords @ basis``.

        Args:
            origin: ``[P]``.
            basis: ``[d, P]`` (rows need not be orthonormal).
            coords: ``[K, d]`` in units of the basis rows.
            buffer_origin: ``[Q]`` buffers used at every point (or at the origin when
                ``buffer_basis`` is given).
            buffer_basis: ``[d, Q]``: interpolate buffers with the same coordinates.

        Raises:
            UserError: Mismatched shapes or non-finite values.
        """
        if origin.dim() != 1 or basis.dim() != 2 or coords.dim() != 2:
            raise UserError(f"expected origin [P], basis [d, P], coords [K, d]; got {list(origin.shape)}, "
                            f"{list(basis.shape)}, {list(coords.shape)}")
        if basis.shape[1] != origin.shape[0]:
            raise UserError(f"basis has {basis.shape[1]} columns but origin has length {origin.shape[0]}")
        if coords.shape[1] != basis.shape[0]:
            raise UserError(f"coords have {coords.shape[1]} columns but the basis has {basis.shape[0]} directions")
        if buffer_basis is not None and (buffer_origin is None or buffer_basis.shape != (basis.shape[0], buffer_origin.shape[0])):
            raise UserError("buffer_basis needs buffer_origin and shape [d, Q]")
        for n, t in (("origin", origin), ("basis", basis), ("coords", coords), ("buffer_origin", buffer_origin),
                     ("buffer_basis", buffer_basis)):
            _check_finite(n, t)
        return cls(coords=coords, basis=basis, origin=origin, buffer_origin=buffer_origin, buffer_basis=buffer_basis)

    @classmethod
    def explicit(cls, points: torch.Tensor, buffers: torch.Tensor | None = None) -> PointSet:
        """Explicit points ``[K, P]`` with optional per-point buffers ``[K, Q]``."""
        if points.dim() != 2:
            raise UserError(f"explicit points must be [K, P], got shape {list(points.shape)}")
        if buffers is not None and (buffers.dim() != 2 or buffers.shape[0] != points.shape[0]):
            raise UserError(f"buffers must be [K, Q] with K = {points.shape[0]}, got {list(buffers.shape)}")
        _check_finite("weights", points)
        _check_finite("buffers", buffers)
        return cls(points=points, buffers=buffers)

    def __len__(self) -> int:
        return (self.points if self.points is not None else self.coords).shape[0]

    @property
    def dim(self) -> int:
        """Length P of each point."""
        return (self.points if self.points is not None else self.origin).shape[-1]

    @property
    def has_buffers(self) -> bool:
        """Whether the points carry BN buffers (explicit, or an origin for a family)."""
        return self.buffers is not None or self.buffer_origin is not None

    @property
    def buffer_dim(self) -> int | None:
        """Length Q of the carried buffers (None when there are none)."""
        if self.buffers is not None:
            return self.buffers.shape[1]
        return None if self.buffer_origin is None else self.buffer_origin.shape[0]

    def subset(self, idx) -> PointSet:
        """The points at indices ``idx`` (``[m]``, any order) as a point set of the same kind."""
        i = torch.as_tensor(idx, dtype=torch.long)
        if self.points is not None:
            return PointSet(points=self.points[i], buffers=None if self.buffers is None else self.buffers[i])
        return dataclasses.replace(self, coords=self.coords[i])

    def chunk(self, start: int, stop: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
              ) -> torch.Tensor:
        """Points ``start:stop`` as ``[k, P]`` on ``device``, computed as ``origin + coords @ basis``."""
        if self.points is not None:
            return self.points[start:stop].to(device=device, dtype=dtype)
        c = self.coords[start:stop].to(device=device, dtype=dtype)
        return self.origin.to(device=device, dtype=dtype) + c @ self.basis.to(device=device, dtype=dtype)

    def buffer_chunk(self, start: int, stop: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                     interpolate: bool = True) -> torch.Tensor | None:
        """Buffers of points ``start:stop`` as ``[k, Q]``, or None when the set carries none.

        Explicit points: their own. A family: ``buffer_origin + coords @ buffer_basis`` with ``interpolate``
        (the origin's buffers if it has no basis), else the origin's buffers at every point.
        """
        if self.buffers is not None:
            return self.buffers[start:stop].to(device=device, dtype=dtype)
        if self.buffer_origin is None:
            return None
        b0 = self.buffer_origin.to(device=device, dtype=dtype)
        if self.buffer_basis is None or not interpolate:
            return b0.expand(stop - start, -1)
        return b0 + self.coords[start:stop].to(device=device, dtype=dtype) @ self.buffer_basis.to(device=device, dtype=dtype)


def affine_buffers(anchor_coords: torch.Tensor, anchor_buffers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map ``coords -> buffers`` through ``d + 1`` anchors, for interpolated BN statistics.

    Args:
        anchor_coords: Coordinates of the anchors in the family ``[d + 1, d]`` (not all on one hyperplane).
        anchor_buffers: Their buffers ``[d + 1, Q]``.

    Returns:
        ``buffer_origin [Q]`` and ``buffer_basis [d, Q]`` (float64) with
        ``buffer_origin + anchor_coords @ buffer_basis == anchor_buffers``.
    """
    a = torch.cat([torch.ones(anchor_coords.shape[0], 1, dtype=torch.float64), anchor_coords.double()], 1)
    sol = torch.linalg.solve(a, anchor_buffers.double())  # [d + 1, Q]
    return sol[0], sol[1:]


def segment_points(start: tuple[torch.Tensor, torch.Tensor], end: tuple[torch.Tensor, torch.Tensor],
                   t: torch.Tensor) -> tuple[PointSet, float]:
    """The points ``w_start + t (w_end - w_start)`` of the line through two points, and its length.

    Args:
        start: Weights ``[P]`` and buffers ``[Q]`` at ``t = 0``.
        end: Weights ``[P]`` and buffers ``[Q]`` at ``t = 1``.
        t: Coordinates along the line ``[T]`` (any real numbers; outside [0, 1] extends beyond the ends).

    Returns:
        The point set (float64, buffers ``t b_end + (1 - t) b_start`` carried along for the BN modes) and
        ``||w_end - w_start||`` (parameter-space L2).
    """
    (w0, b0), (w1, b1) = start, end
    direction = (w1.double() - w0.double())[None]
    borigin, bbasis = affine_buffers(torch.tensor([[0.0], [1.0]]), torch.stack([b0, b1]))
    coords = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    return PointSet.affine(w0.double(), direction, coords, borigin, bbasis), float(direction.norm())
