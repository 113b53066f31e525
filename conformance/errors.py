"""The kit's own errors: each says what was checked and how to fix it."""

from __future__ import annotations

import re


class KitError(Exception):
    """Bad input or a harness problem (never a product failure); the CLI prints it on one line."""


class HarnessError(KitError):
    """The harness broke (an image that would not build, no engine, a server that
    would not start): the run's verdict is ``HARNESS ERROR``, never a judgement
    of the extension."""


class ImageBuildError(HarnessError):
    """A build step failed; ``step`` is the step, ``tail`` the last lines it printed."""

    step: str = ""
    tail: str = ""

    @classmethod
    def step_failed(cls, what: str, detail: str, step: str = "") -> ImageBuildError:
        noise = (" ---> ", "Removing intermediate container", "Step ", "The command '/bin/sh -c")
        plain = re.sub(r"\x1b\[[0-9;]*m", "", detail)
        lines = [ln[:300] for ln in plain.strip().splitlines() if ln.strip() and not ln.startswith(noise)][
            -8:
        ]
        err = cls(f"image build failed at {what}; last lines:\n" + "\n".join(f"  | {ln}" for ln in lines))
        err.step, err.tail = step, detail
        return err


class NotPackaged(ImageBuildError):
    """Debian's suite for a major has no package of that name: the extension
    is not packaged for the major (a verdict of its own when a profile names
    the package; a bad input when the command line does)."""

    def __init__(self, message: str, major: int, packages: list[str], suite: str) -> None:
        super().__init__(message)
        self.major, self.packages, self.suite = major, packages, suite


class EngineUnavailable(HarnessError):
    @classmethod
    def no_daemon(cls, detail: str) -> EngineUnavailable:
        return cls(
            "no Docker engine answers "
            f"({detail}); start dockerd (see README 'Prerequisites') or set DOCKER_HOST"
        )


class TargetError(HarnessError):
    """The server under test could not be started, stopped or reached."""


class HarnessTimeout(BaseException):
    """A test outlived its budget (``conformance.suite.budgets``): stopped where
    it was, recorded as a harness timeout naming the last thing it waited for.
    A BaseException, so that no wait or clean-up that retries on Exception
    can swallow it."""


class NotReached(HarnessError):
    """A test that never ran: the server could not be restored to the
    promised state after an earlier test (``not-reached``, never a verdict)."""


class ProfileMismatch(HarnessError):
    """What the extension did contradicts what its profile declares by
    design (a kind declared to stay down came back): the profile is wrong,
    which is the harness's input, never a pass nor a product failure."""
