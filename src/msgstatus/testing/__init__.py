"""Test helpers: loopback emulators of the providers' APIs, for this project's tests and yours."""

__all__: list[str] = []
