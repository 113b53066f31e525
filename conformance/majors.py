"""The PostgreSQL majors the kit runs: the Debian suite that ships each, the
pre-release majors and the suite their packages come from, and the majors
past end of life (still tested, marked as such in reports)."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.errors import KitError

SUITE_FOR_MAJOR = {13: "bullseye", 15: "bookworm", 17: "trixie", 18: "forky", 19: "forky"}
SUPPORTED_MAJORS = tuple(SUITE_FOR_MAJOR)
#: majors no Debian suite ever shipped: targetable only with an extra apt source that carries
#: ``postgresql-<major>`` (e.g. apt.postgresql.org), on the newest stable Debian suite
SOURCE_ONLY = {14: "trixie", 16: "trixie"}
KNOWN_MAJORS = tuple(sorted((*SUPPORTED_MAJORS, *SOURCE_ONLY)))


def base_suite(major: int) -> str:
    """The Debian suite a major's image starts from."""
    return SUITE_FOR_MAJOR.get(major) or SOURCE_ONLY[major]


def require_source(major: int, has_sources: bool) -> None:
    """A major Debian never shipped needs an apt source: KitError (one line) without one."""
    if major in SOURCE_ONLY and not has_sources:
        raise KitError(
            f"target pg{major}: Debian never shipped PostgreSQL {major}; name an apt source that "
            f"provides postgresql-{major} ([[install.apt_source]] in the profile, or --apt-source), "
            "e.g. apt.postgresql.org"
        )


@dataclass(frozen=True)
class Prerelease:
    """A major that no Debian suite releases yet: the binaries of its source
    package (server, client, headers, libpq) and the extensions built for it
    come from ``suite``, pinned so that nothing else does; everything else
    from its base suite."""

    suite: str
    source: str  # the server's source package
    extensions: str  # apt_preferences pattern of extension packages for the major


PRERELEASE = {19: Prerelease("experimental", "postgresql-19", "/^postgresql-19-/")}


def suites_of(major: int) -> str:
    """Where a major's packages come from, for messages: ``forky`` or ``forky and experimental``."""
    suite = base_suite(major)
    return f"{suite} and {PRERELEASE[major].suite}" if major in PRERELEASE else suite


#: https://www.postgresql.org/support/versioning/
END_OF_LIFE = {13: "2025-11-13", 14: "2026-11-12"}


def release_note(major: int | None, version: str = "") -> str:
    """How a report marks a major that is not a current release: end of life,
    or pre-release (with the server's own version, e.g. 19rc1); else ""."""
    if major in END_OF_LIFE:
        return f"end of life since {END_OF_LIFE[major]}"
    if major in PRERELEASE:
        words = version.split()
        return f"pre-release{f' ({words[1]})' if len(words) > 1 else ''}"
    return ""
