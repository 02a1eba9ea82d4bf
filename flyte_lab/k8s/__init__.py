"""Kubernetes through dask-kubernetes: worker groups per resource profile, their manifests, the config file."""
