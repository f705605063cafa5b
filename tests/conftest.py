"""Shared test settings: hypothesis profiles (CI runs the same amount of cases as a developer)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "tvm_mp", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], derandomize=True
)
settings.load_profile("tvm_mp")
