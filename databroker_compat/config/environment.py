"""``${ENV}`` references in configurations: found, and expanded only when a configuration is opened.

A configuration may name a secret instead of holding it, in any of three spellings:
``${NAME}``, ``$NAME`` and intake's ``{{ env("NAME") }}``. What :func:`lookup_config`
and ``Broker.get_config`` give keeps them as written; :func:`expand` replaces them by
the variables' values at the moment a server is opened.

>>> import os
>>> os.environ["DBC_DOC_KEY"] = "k"
>>> expand({"api_key": "${DBC_DOC_KEY}", "verify": True}, "doc.yml")
{'api_key': 'k', 'verify': True}
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..exceptions import ConfigError

__all__ = ["ENV_PATTERN", "expand"]

#: The three spellings of an environment reference; the group that matched names the variable.
ENV_PATTERN = re.compile(
    r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}"  # ${NAME}
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"  # $NAME
    # intake's {{ env("NAME") }}
    r"""|\{\{\s*env\(\s*["']?(?P<jinja>[A-Za-z_][A-Za-z0-9_]*)["']?\s*\)\s*\}\}"""
)


def expand(value: Any, where: str) -> Any:
    """``value`` with every environment reference in its strings replaced by the variable's value.

    Parameters
    ----------
    value : object
        A string, or a dict, list or tuple of them (nested); other values pass through.
    where : str
        Where the value comes from (a file), for the error message.

    Returns
    -------
    object
        A new value of the same shape.

    Raises
    ------
    ConfigError
        A reference names a variable that is not set (``err.variable`` names it).

    Examples
    --------
    >>> expand(["$HOME_OF_NOBODY_DBC"], "x.yml")
    Traceback (most recent call last):
    ...
    databroker_compat.exceptions.ConfigError: x.yml refers to the environment variable HOME_OF_NOBODY_DBC, \
which is not set. Set it (export HOME_OF_NOBODY_DBC=...) before opening the broker.
    """
    if isinstance(value, dict):
        return {k: expand(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(expand(v, where) for v in value)
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        variable = match.group("braced") or match.group("bare") or match.group("jinja")
        if variable not in os.environ:
            raise ConfigError(
                f"{where} refers to the environment variable {variable}, which is not set. "
                f"Set it (export {variable}=...) before opening the broker.",
                variable=variable,
                where=where,
            )
        return os.environ[variable]

    return ENV_PATTERN.sub(substitute, value)
