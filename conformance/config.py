"""The kit's settings: one frozen dataclass, read from pytest's command line
or ini file.  Each option has one help string, used by both.

| option                 | ini                 | default                        |
|------------------------|---------------------|--------------------------------|
| --bgwc-target          | bgwc_target         | pg17                           |
| --bgwc-profile         | bgwc_profile        | bgw_pool                       |
| --bgwc-extension       | bgwc_extension      | (the profile's install.source) |
| --bgwc-package         | bgwc_package        | (the profile's packages)       |
| --bgwc-recipe          | bgwc_recipe         | (the profile's recipe)         |
| --bgwc-library         | bgwc_library        | (the profile's preload)        |
| --bgwc-make-args       | bgwc_make_args      | (the profile's make_args)      |
| --bgwc-apt-source      | bgwc_apt_source     | (the profile's apt_source)     |
| --bgwc-base            | bgwc_base           | debian:<suite>                 |
| --bgwc-pg-config       | bgwc_pg_config      | pg_config                      |
| --bgwc-seed            | bgwc_seed           | (CI seed set)                  |
| --bgwc-expectations    | bgwc_expectations   | <profile>.expectations.toml    |

A command-line value wins over the ini value, which wins over the default.
The profile is loaded (and validated) first; the input options replace the
matching parts of its ``[install]`` table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance import aptsources
from conformance.errors import KitError
from conformance.expectations import Expectations, default_path, load
from conformance.images import Extension, check_source
from conformance.majors import require_source
from conformance.profile import Profile, load_profile
from conformance.targets.spec import TargetSpec, parse_list

OPTIONS: dict[str, tuple[str, str]] = {
    "target": (
        "pg17",
        "targets to run on, comma-separated: pg13,pg15,pg17,pg18,pg19 (containers), pgNN+standby "
        "(that server with a streaming hot standby: the REPLICA family) and local (the host's "
        "server); all: every supported major",
    ),
    "profile": ("bgw_pool", "extension profile: a name in fixtures/profiles/ or a path to a TOML file"),
    "extension": ("", "source directory of the extension under test (PGXS, or built by --recipe)"),
    "package": ("", "Debian packages of the extension, comma-separated; {major} is the server's major"),
    "recipe": ("", "shell command that builds and installs the sources (cmake, meson, cargo, configure)"),
    "library": ("", "shared_preload_libraries entries, comma-separated"),
    "make_args": ("", "extra make arguments for a PGXS build"),
    "apt_source": (
        "",
        "extra apt sources of server and extension packages, ';'-separated: "
        "'[signed-by=KEY] URI SUITE [COMPONENT...]' (SUITE may hold {codename}; file:DIR is a local one)",
    ),
    "base": ("", "base image for the container targets; default: the Debian suite that ships the major"),
    "pg_config": ("pg_config", "pg_config of the host server for the local target"),
    "seed": ("", "replay randomized workloads with this seed (default: the fixed CI seed set)"),
    "expectations": (
        "",
        "expected outcomes (TOML); default: <profile>.expectations.toml beside the profile, if there is one",
    ),
}


def _csv(value: object) -> tuple[str, ...]:
    return tuple(p.strip() for p in str(value or "").split(",") if p.strip())


def extension_for(profile: Profile, values: dict[str, Any]) -> Extension:
    """The extension under test: the profile's [install], with the input
    options replacing the parts they name."""
    inst = profile.install
    source = Path(values["extension"]).resolve() if values.get("extension") else inst.source
    packages = _csv(values.get("package")) or inst.packages
    recipe = values.get("recipe") or inst.recipe
    preload = _csv(values.get("library")) or inst.preload
    make_args = values.get("make_args") or inst.make_args
    given = values.get("apt_source")
    apt_sources = aptsources.parse_lines(str(given), Path.cwd()) if given else inst.apt_sources
    if source is None and not packages:
        raise KitError(
            f"profile {profile.name}: nothing to install; give --extension DIR or --package NAME "
            "(or [install] in the profile)"
        )
    if recipe and source is None:
        raise KitError("--recipe needs the sources it builds: give --extension DIR")
    if source is not None:
        check_source(source, pgxs=not recipe)
        if not preload and not packages and not recipe:
            return dataclasses.replace(Extension.from_dir(source, None, make_args), apt_sources=apt_sources)
    return Extension(profile.name, preload, source, packages, recipe, make_args, apt_sources)


@dataclass(frozen=True)
class KitConfig:
    targets: tuple[str, ...]
    profile: Profile
    extension: Extension
    base: str | None
    pg_config: str
    seed: int | None
    expectations: Expectations | None = None

    @property
    def specs(self) -> tuple[TargetSpec, ...]:
        """What each target name means (``conformance.targets.spec``)."""
        return tuple(TargetSpec.parse(t) for t in self.targets)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> KitConfig:
        profile = load_profile(str(values["profile"] or "bgw_pool"))
        try:  # ``all``: every supported major the profile runs on, in containers
            specs = parse_list(values["target"], profile.majors)
        except KitError as exc:
            raise KitError(f"--bgwc-target {values['target']!r}: {str(exc).split(': ', 1)[-1]}") from None
        for spec in specs:
            if spec.major is not None and not profile.runs_on(spec.major):
                majors = ", ".join(map(str, profile.majors))
                raise KitError(f"profile {profile.name} runs on PostgreSQL {majors} only, not {spec.name}")
        targets = tuple(s.name for s in specs)
        ext = extension_for(profile, values)
        for spec in specs:
            if spec.major is not None:
                require_source(spec.major, bool(ext.apt_sources))
        if any(s.is_local for s in specs) and ext.packages:
            raise KitError("Debian packages (--package) install into container targets only, not local")
        seed = values["seed"]
        if seed not in ("", None) and not str(seed).isdigit():
            raise KitError(f"--bgwc-seed {seed!r}: give a non-negative integer")
        given = values.get("expectations") or ""
        beside = default_path(profile.path)
        expectations = load(Path(given)) if given else load(beside) if beside.is_file() else None
        return cls(
            targets,
            profile,
            ext,
            values["base"] or None,
            values["pg_config"],
            int(seed) if seed not in ("", None) else None,
            expectations,
        )
