"""Keep secrets out of log lines and reports.

Every message the migration writes that could hold a MongoDB URI or a Tiled URI goes
through :func:`redact`: passwords in ``scheme://user:password@host`` become ``***``, and
so do ``api_key=``/``password=`` query parameters and ``key=`` style secrets.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@")
_QUERY_SECRET = re.compile(
    r"(?P<name>\b(?:api_key|apikey|password|passwd|pwd|token|access_token|secret)=)(?P<value>[^&\s'\"]+)",
    re.IGNORECASE,
)
MASK = "***"


def redact(text: object) -> str:
    """``text`` as a string with URI passwords and secret query parameters masked.

    Parameters
    ----------
    text : object
        A URI, a message or anything with a useful ``str()``.

    Returns
    -------
    str

    Examples
    --------
    >>> redact("mongodb://beamline:s3cret@mongo.example:27017/metadatastore")
    'mongodb://beamline:***@mongo.example:27017/metadatastore'
    >>> redact("http://tiled:8000/api/v1?api_key=abc123")
    'http://tiled:8000/api/v1?api_key=***'
    """
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", str(text))
    return _QUERY_SECRET.sub(lambda m: f"{m['name']}{MASK}", out)
