"""The kit's own errors: each says what was checked and how to fix it."""

from __future__ import annotations


class KitError(Exception):
    """A harness problem (not a product failure); the CLI prints it on one line."""


class ImageBuildError(KitError):
    @classmethod
    def step_failed(cls, what: str, detail: str) -> ImageBuildError:
        return cls(f"image build failed at {what}: {detail.strip()[-400:]}")


class EngineUnavailable(KitError):
    @classmethod
    def no_daemon(cls, detail: str) -> EngineUnavailable:
        return cls(
            "no Docker engine answers "
            f"({detail}); start dockerd (see README 'Prerequisites') or set DOCKER_HOST"
        )


class TargetError(KitError):
    """The server under test could not be started, stopped or reached."""
