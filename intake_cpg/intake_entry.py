"""The Intake entry class shared by the intake-cpg catalogs (the adapter side of the entry table).

:class:`CPGEntry` is a :class:`~intake.catalog.local.LocalCatalogEntry` that silences one
bogus warning: intake 2.0.9 checks every string user-parameter default for ``shell(...)``
and warns "Shell command not executed due to getshell=False" even when the default is a
plain string (intake issue 887). Only that exact warning is filtered, only while the
entry's open arguments are built; every other warning still shows.

Entries parsed from YAML files are intake's own class, so for YAML catalogs whose drivers
live in intake-cpg (``catalogs/jump.yaml``) :func:`intake_cpg.silence_shell_warning` installs
the same filter process-wide (``import intake_cpg`` does), restricted to that message issued
from ``intake.catalog.utils``.
"""

from __future__ import annotations

import warnings
from typing import Any

from intake.catalog.local import LocalCatalogEntry

from . import SHELL_WARNING, silence_shell_warning
from .errors import not_found

__all__ = ["CPGEntry", "silence_shell_warning"]


#: Arguments of intake-cpg's drivers that are never templates: passed on exactly as given.
LITERAL_ARGS = ("urlpath", "storage_options", "cache_dir", "listing_ttl", "manifests", "root")


class CPGEntry(LocalCatalogEntry):
    """A ``LocalCatalogEntry`` without intake's bogus "Shell command not executed" warning.

    >>> import warnings
    >>> from intake.catalog.local import UserParameter
    >>> from intake.source.textfiles import TextFilesSource
    >>> up = UserParameter(name="pattern", description="files", type="str", default="*.txt")
    >>> entry = CPGEntry(name="t", description="", driver=TextFilesSource,
    ...                  args={"urlpath": "{{ pattern }}"}, parameters=[up])
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error")
    ...     entry.get()._captured_init_kwargs["urlpath"]
    '*.txt'
    """

    def __init__(
        self,
        name: str,
        description: str,
        driver: Any,
        direct_access: bool = True,
        args: dict[str, Any] | None = None,
        parameters: list[Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # what the entry was made from, kept to freeze it without Intake's private attributes
        self._given = (driver, dict(args or {}), list(parameters or []), dict(metadata or {}))
        super().__init__(
            name,
            description,
            driver,
            direct_access=direct_access,
            args=args or {},
            parameters=parameters or [],
            metadata=metadata or {},
            **{**kwargs, "getenv": False, "getshell": False},  # never env() or shell()
        )

    def frozen(self) -> dict[str, Any]:
        """The entry as plain YAML-able data (what ``Catalog.save`` writes for it)."""
        driver, args, parameters, metadata = self._given
        return {
            "description": self.describe()["description"],
            "driver": f"{driver.__module__}.{driver.__name__}",
            "args": dict(args),
            "parameters": plain_parameters(parameters),
            "metadata": metadata,
        }

    def _literal_keys(self) -> tuple[str, ...]:
        """:data:`LITERAL_ARGS` for intake-cpg's own drivers; nothing for other drivers."""
        plugins = self._plugin if isinstance(self._plugin, list) else list(self._plugin.values())
        ours = plugins and all(
            getattr(p, "__module__", "").startswith(__package__) for p in plugins
        )
        return LITERAL_ARGS if ours else ()

    def _create_open_args(self, user_parameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # Roots, storage options and cache folders are passed on exactly as given: intake
        # would render them as templates (``{{ env(X) }}`` would send a variable's value to
        # whatever endpoint the text names).
        # A list or a DataFrame given for a parameter (``source=["source_2", "source_4"]``,
        # ``plates=frame``) is passed on as given too: a template would render it as text.
        literal = {k: self._open_args[k] for k in self._literal_keys() if k in self._open_args}
        given = {k: v for k, v in user_parameters.items() if not _is_scalar(v)}
        templated = self._open_args
        self._open_args = {k: v for k, v in templated.items() if k not in literal}
        scalars = {k: v for k, v in user_parameters.items() if k not in given}
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=SHELL_WARNING, category=UserWarning)
                plugin, args = super()._create_open_args(scalars)
        finally:
            self._open_args = templated
        return plugin, {**args, **literal, **given}

    def describe(self) -> dict[str, Any]:
        """Intake's description, with secret ``storage_options`` values shown as ``'***'``."""
        from .storage import redact

        out = super().describe()
        args = out.get("args")
        if isinstance(args, dict):
            out["args"] = {
                k: redact(v) if k == "storage_options" and isinstance(v, dict) else v
                for k, v in args.items()
            }
        return out

    def get(self, **user_parameters: Any) -> Any:
        """Open the source; a value outside a parameter's allowed list names what exists.

        Intake would raise a bare ``ValueError``; this raises
        :class:`~intake_cpg.errors.ProductNotFoundError` (a ``KeyError``) with close matches.
        """
        for p in self._user_parameters:
            allowed = getattr(p, "allowed", None)
            if p.name in user_parameters and allowed:
                value = user_parameters[p.name]
                try:
                    p.validate(value)
                except ValueError:
                    where = f"entry {self._name!r}"
                    raise not_found(p.name, str(value), [str(a) for a in allowed], where) from None
        return super().get(**user_parameters)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float, dict))


def plain_parameters(params: Any) -> dict[str, Any]:
    """``{name: keyword arguments}`` of ``UserParameter``s, as plain YAML-able data."""
    return {p.name: _plain(p.__getstate__()["kwargs"]) for p in params}


def _plain(value: Any) -> Any:
    """Plain dicts and lists (YAML-safe) from Intake's OrderedDicts and tuples.

    >>> _plain({"a": (1, [2])})
    {'a': [1, [2]]}
    """
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
