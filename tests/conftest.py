"""Shared pytest configuration."""

from hypothesis import HealthCheck, settings

# Examples are sized per test with @settings(max_examples=...); timing varies
# on a shared 2-core machine, so no per-example deadline.
settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")
