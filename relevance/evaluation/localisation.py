"""Ground-truth localisation metrics for scenes whose object masks are known (the shapes world).

All functions take relevance maps (B, H, W) at the mask resolution and boolean masks (B, H, W),
and return one value per map (B,). Negative relevance (full LRP, some gradient methods) is
**clamped at 0** before the mass measures: they measure where the positive evidence lies. The
pointing game uses the raw map (only the position of its maximum matters).

* :func:`pointing_game` (Zhang et al., ECCV 2016; no tolerance by default): 1 if the map's maximum lies
  in the explained object's mask (or within ``tolerance`` pixels of it). If several pixels share the maximum (plateaus from bilinear
  upsampling, constant maps) the hit counts when at least half of them lie inside the mask; a
  constant map (no maximum) is a miss.
* :func:`mass_inside`: share of the (clamped) relevance mass that lies inside the explained
  object's mask, ``sum(r+ * m) / sum(r+)``; 0 for a map without positive mass. A uniform map scores
  the mask's area share.
* :func:`class_specificity`: mass on the explained object against the mass on the *other* objects
  of the scene, ``M_t / (M_t + M_o)`` with ``M_t = sum(r+ * target_mask)`` and ``M_o = sum(r+ *
  other_masks)``. 1 = all object evidence on the explained object, 0 = all on the others. NaN when
  the scene has no other object; 0.5 when the map puts no mass on any object. A class-agnostic
  map scores about the target's share of the objects' area, so compare methods on the same scenes.
"""

from __future__ import annotations

import torch

__all__ = ["pointing_game", "mass_inside", "class_specificity", "dilate"]


def _prepare(maps: torch.Tensor, *masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
    maps = torch.as_tensor(maps)
    if maps.ndim == 2:
        maps = maps[None]
        masks = tuple(torch.as_tensor(m)[None] if torch.as_tensor(m).ndim == 2 else torch.as_tensor(m) for m in masks)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W) or (H, W), got shape {tuple(maps.shape)}")
    out = [torch.nan_to_num(maps.detach().double())]
    for m in masks:
        m = torch.as_tensor(m)
        if m.shape != maps.shape:
            raise ValueError(f"mask shape {tuple(m.shape)} differs from map shape {tuple(maps.shape)}")
        out.append(m.to(maps.device) > 0)
    return tuple(out)


def dilate(masks: torch.Tensor, radius: float) -> torch.Tensor:
    """Grow boolean masks (B, H, W) by a disk of ``radius`` pixels (Euclidean distance <= radius)."""
    if radius < 0:
        raise ValueError(f"radius must be non-negative, got {radius}")
    if radius == 0:
        return masks
    k = int(radius)
    yy, xx = torch.meshgrid(torch.arange(-k, k + 1), torch.arange(-k, k + 1), indexing="ij")
    disk = ((yy**2 + xx**2) <= radius**2).double()[None, None]
    grown = torch.nn.functional.conv2d(masks.double()[:, None], disk, padding=k)[:, 0]
    return grown > 0.5


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """1.0 where the map's maximum lies inside the mask, else 0.0. (B, H, W), (B, H, W) -> (B,).

    ``tolerance`` (pixels) counts a maximum within that distance of the mask as a hit (Zhang et al.
    use 15 px on 224 px images); with coarse patch grids, half a patch absorbs the boundary effect of
    a maximum on a patch that straddles the object's edge.
    """
    r, m = _prepare(maps, masks)
    m = dilate(m, float(tolerance))
    flat = r.flatten(1)
    hi = flat.max(1, keepdim=True).values
    lo = flat.min(1, keepdim=True).values
    tol = 1e-6 * (hi - lo)
    top = flat >= hi - tol  # (B, HW) maximal pixels
    inside = (top & m.flatten(1)).sum(1).double()
    hit = (inside * 2 >= top.sum(1).double()) & (hi.squeeze(1) > lo.squeeze(1))
    return hit.double()


def mass_inside(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive relevance mass inside the mask, in [0, 1]. (B, H, W), (B, H, W) -> (B,)."""
    r, m = _prepare(maps, masks)
    r = r.clamp(min=0)
    total = r.flatten(1).sum(1)
    inside = (r * m).flatten(1).sum(1)
    return torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(total))


def class_specificity(maps: torch.Tensor, target_masks: torch.Tensor, other_masks: torch.Tensor) -> torch.Tensor:
    """``M_t / (M_t + M_o)``: positive mass on the explained object vs the other objects. -> (B,).

    Parameters
    ----------
    maps:
        (B, H, W) relevance for the explained class.
    target_masks:
        (B, H, W) mask of the explained object.
    other_masks:
        (B, H, W) union of the masks of the other objects in the same scene
        (all False if there is none, which gives NaN).
    """
    r, t, o = _prepare(maps, target_masks, other_masks)
    r = r.clamp(min=0)
    mt = (r * t).flatten(1).sum(1)
    mo = (r * (o & ~t)).flatten(1).sum(1)
    total = mt + mo
    spec = torch.where(total > 0, mt / torch.where(total > 0, total, torch.ones_like(total)), torch.full_like(total, 0.5))
    has_other = o.flatten(1).any(1)
    return torch.where(has_other, spec, torch.full_like(spec, float("nan")))
