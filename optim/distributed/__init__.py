"""Measuring an experiment's variants on a Ray cluster (`python -m optim.run SPEC --ray`); see docs/ray.md."""
