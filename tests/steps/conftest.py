"""Fixtures of the step tests: a stack whose batches are small enough to count by hand."""

from __future__ import annotations

import pytest

from tests.conftest import Stack, make_stack


@pytest.fixture
def small_batches(aws_endpoint: str) -> Stack:
    return make_stack(aws_endpoint, max_files_per_manifest=4, max_manifests_per_run=3, max_attempts=2)
