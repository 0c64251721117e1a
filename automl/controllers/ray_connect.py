"""Joining a Ray cluster, or starting a local Ray instance that listens on 127.0.0.1 only."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from automl.config import RayConfig
from automl.errors import UserError


def connect(cfg: RayConfig) -> bool:
    """Join the cluster at `cfg.address`, or start a local instance that listens on 127.0.0.1
    only and runs no dashboard unless asked. Returns True when a new connection was made."""
    if ray.is_initialized():
        return False
    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    if cfg.address:
        try:
            ray.init(address=cfg.address, **common)
        except Exception as exc:
            raise UserError(
                f"cannot join the Ray cluster at {cfg.address} ({type(exc).__name__}: {exc}). "
                "Start one with `ray start --head --port PORT`; a driver of a cluster started "
                "that way needs RAY_AUTH_MODE=token in its environment"
            ) from None
        return True
    with _single_node():
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=cfg.dashboard,
            dashboard_host="127.0.0.1",
            **common,
        )
    return True


@contextmanager
def _single_node() -> Iterator[None]:
    """Ray swaps 127.0.0.1 for the machine's interface address and listens on every interface
    (measured with Ray 2.60) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0. The processes that
    `ray.init` starts read it from the environment; this process read it when it imported ray,
    into `ray_constants.ENABLE_RAY_CLUSTER`, which no public API sets. Both are set for the
    start of the local instance only and restored after, so that a later join of a real
    cluster uses the machine's address."""
    from ray._private import ray_constants  # the one private use: see the docstring

    var = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    env, flag = os.environ.get(var), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[var] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        if env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = env
