"""Target names, the one place they are parsed: ``pg17`` is a server of that
major in a container, ``pg17+standby`` that server as a primary with a
streaming hot standby beside it (``TOPOLOGIES``), ``local`` the host's
server.  Every other module asks
a ``TargetSpec`` what a name means (``parse``, ``kind``, ``major``), and
which names exist (``all_names``); a new kind of target is one entry in
``KINDS`` here and a class beside this file.  ``pg14`` and ``pg16``, majors
Debian never shipped, parse too: their images start from trixie, the newest
stable suite (``majors.SOURCE_ONLY``), and configuration refuses them unless
an extra apt source (e.g. apt.postgresql.org) is named to provide them."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.errors import KitError
from conformance.majors import KNOWN_MAJORS, SOURCE_ONLY, SUPPORTED_MAJORS

CONTAINER, LOCAL = "container", "local"
#: the kinds of target and what each runs on
KINDS = {
    CONTAINER: "a server of one PostgreSQL major in a container (pgNN, or pgNN+standby)",
    LOCAL: "the host's own server (local)",
}
PRIMARY, PRIMARY_STANDBY = "primary", "primary+standby"
#: a container target's topologies, by the suffix of its name
TOPOLOGIES = {"": PRIMARY, "+standby": PRIMARY_STANDBY}


@dataclass(frozen=True)
class TargetSpec:
    """What a target name means: its kind, and the major of a container's server
    (None for ``local``, whose major the host's pg_config tells)."""

    name: str
    kind: str
    major: int | None = None
    topology: str = PRIMARY

    @classmethod
    def parse(cls, name: str) -> TargetSpec:
        """``pg17``, ``pg17+standby`` or ``local``; KitError naming the valid names otherwise."""
        name = name.strip()
        if name == LOCAL:
            return cls(LOCAL, LOCAL)
        base, plus, suffix = name.partition("+")
        topology = TOPOLOGIES.get(plus + suffix)
        digits = base.removeprefix("pg")
        if topology and base.startswith("pg") and digits.isdigit() and int(digits) in KNOWN_MAJORS:
            # SOURCE_ONLY majors: configuration checks the source
            return cls(name, CONTAINER, int(digits), topology)
        raise KitError(
            f"target {name!r}: choose from all, {', '.join(all_names())}{_WITH_SOURCE}; "
            "pgNN+standby adds a streaming hot standby"
        )

    @classmethod
    def container(cls, major: int) -> TargetSpec:
        return cls.parse(f"pg{major}")

    @property
    def in_container(self) -> bool:
        return self.kind == CONTAINER

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL

    @property
    def has_standby(self) -> bool:
        return self.topology == PRIMARY_STANDBY


_WITH_SOURCE = f" ({', '.join(f'pg{m}' for m in SOURCE_ONLY)} with an apt source that provides them)"


def all_names() -> tuple[str, ...]:
    """Every target name there is: each supported major's container, then local."""
    return (*(f"pg{m}" for m in SUPPORTED_MAJORS), LOCAL)


def parse_list(text: str, majors_of_profile: tuple[int, ...] = ()) -> tuple[TargetSpec, ...]:
    """A comma-separated list of names, or ``all`` (every supported major the
    profile runs on, in containers); each once, in the order given."""
    names = [p.strip() for p in str(text or "").split(",") if p.strip()]
    if names == ["all"]:
        names = [f"pg{m}" for m in SUPPORTED_MAJORS if not majors_of_profile or m in majors_of_profile]
    if not names:
        raise KitError(f"target {text!r}: choose from all, {', '.join(all_names())}")
    return tuple(dict.fromkeys(TargetSpec.parse(n) for n in names))


def major_of(name: str | None) -> int | None:
    """The major a target name fixes (None for ``local`` or no name)."""
    if not name:
        return None
    try:
        return TargetSpec.parse(name).major
    except KitError:
        return None


def parse_majors(text: str, option: str = "--pg", source_only: bool = False) -> tuple[int, ...]:
    """``17,18`` (or ``pg17,pg18``, as targets are named), in the order given, each once;
    with ``source_only``, also the majors only an apt source provides (14, 16)."""
    allowed = KNOWN_MAJORS if source_only else SUPPORTED_MAJORS
    try:
        majors = [major_of(p.strip()) or int(p.strip()) for p in text.split(",") if p.strip()]
    except ValueError:
        raise KitError(f"{option} {text!r}: give majors like 17,18") from None
    if not majors or any(m not in allowed for m in majors):
        raise KitError(f"{option} {text!r}: supported majors are {', '.join(map(str, allowed))}")
    return tuple(dict.fromkeys(majors))
