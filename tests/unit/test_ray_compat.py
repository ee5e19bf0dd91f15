"""The private Ray APIs that serendipity.ray_compat wraps exist in the installed Ray, the one checked."""

from __future__ import annotations

import inspect

import ray
import ray.serve.context

from serendipity.ray_compat import RAY_VERSION_CHECKED


def test_the_installed_ray_is_the_release_the_wrappers_were_checked_against() -> None:
    # on a Ray upgrade: re-check each wrapper of serendipity/ray_compat.py (a public API may exist now)
    assert ray.__version__ == RAY_VERSION_CHECKED


def test_the_private_names_the_wrappers_use_are_there() -> None:
    client = inspect.signature(ray.serve.context._get_global_client)
    assert "raise_if_no_controller_running" in client.parameters
    # ray.init takes it from **kwargs (its docstring: "RayConfig override dict; testing only")
    assert 'kwargs.pop("_system_config"' in inspect.getsource(ray.init)
