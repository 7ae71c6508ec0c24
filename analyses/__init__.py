"""Geometry analyses of SWA trajectories (rays, segment, plane, FGE)."""
