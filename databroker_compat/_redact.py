"""One redactor for every message, report and repr the package writes.

Secrets come in a few shapes, and :func:`redact` masks each of them:

- the password of a URI's user info: ``scheme://user:password@host`` → ``scheme://user:***@host``
  (any scheme: ``mongodb``, ``mongodb+srv``, ``http``, ``postgresql``...);
- secret query or key=value parameters: ``api_key=``, ``apikey=``, ``password=``, ``passwd=``,
  ``pwd=``, ``token=``, ``access_token=``, ``secret=`` (any case) → ``name=***``.

Environment references written in a configuration (``${TILED_API_KEY}``, ``$TOKEN``,
``{{ env("KEY") }}``) are not secrets, only their values are: they are kept as written,
so a printed configuration still says where the secret comes from.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

# The password runs to the first "@": one with an unescaped "/" (not a valid URI, yet
# written in configurations) is masked too, rather than printed. A port followed by a
# path or query ("http://host:8000/x?owner=a@b") is not a password.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>(?!\d+[/?#])[^@\s]*)@")
# A value runs to the next "&", space or quote; an intake reference {{ env("X") }} is one value.
_QUERY_SECRET = re.compile(
    r"(?P<name>\b(?:api_key|apikey|password|passwd|pwd|token|access_token|secret)=)(?P<value>\{\{.*?\}\}|[^&\s'\"]+)",
    re.IGNORECASE,
)
# A value that names an environment variable instead of holding the secret.
_ENV_REFERENCE = re.compile(r"^(?:\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\})$")


def _mask_password(match: re.Match) -> str:
    if _ENV_REFERENCE.match(match["password"]):
        return match.group(0)
    return f"{match['scheme']}{match['user']}:{MASK}@"


def _mask_value(match: re.Match) -> str:
    if _ENV_REFERENCE.match(match["value"]):
        return match.group(0)
    return f"{match['name']}{MASK}"


def redact(text: object) -> str:
    """``text`` as a string with URI passwords and secret parameters masked.

    Parameters
    ----------
    text : object
        A URI, a message, or anything with a useful ``str()``.

    Returns
    -------
    str
        The same text, each secret replaced by ``***``; ``${ENV}`` references kept.

    Examples
    --------
    >>> redact("mongodb://beamline:s3cret@mongo.example:27017/metadatastore")
    'mongodb://beamline:***@mongo.example:27017/metadatastore'
    >>> redact("http://tiled:8000/api/v1?api_key=abc123&token=t0k")
    'http://tiled:8000/api/v1?api_key=***&token=***'
    >>> redact("password=hunter2 api_key=${TILED_API_KEY}")
    'password=*** api_key=${TILED_API_KEY}'
    """
    out = _USERINFO.sub(_mask_password, str(text))
    return _QUERY_SECRET.sub(_mask_value, out)
