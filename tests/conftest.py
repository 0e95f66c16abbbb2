from __future__ import annotations

import os

import pytest

# No test may reach the network: botocore's credential chain would otherwise ask the EC2 instance
# metadata address when no credentials are configured, and a developer's own AWS profile must not
# leak into a test. Set before any test builds a boto3 session.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_name, None)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both event loops anyio supports."""
    return str(request.param)


pytest_plugins = ["pytester"]
