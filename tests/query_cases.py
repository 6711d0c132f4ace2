"""Query cases shared by the served searches (tests/test_search.py) and the unit tier (tests/unit/test_queries.py).

``MIXED`` are start documents where keys hold scalars in some runs and arrays in others.
The expectations are MongoDB's (mongoquery disagrees on arrays with ``$ne``/``$gt``/``$lt``
and on booleans vs numbers): an array matches when any element does; ``true`` is not ``1``.
Each expectation lists the indices of the matching documents, oldest first.
"""

from __future__ import annotations

MIXED = [
    {"tag": "alpha", "level": 1, "flag": True},
    {"tag": ["alpha", "beta"], "level": [1, 7]},
    {"tag": ["gamma"], "level": 3, "info": [{"name": "Si"}, {"name": "Ge"}]},
    {"tag": "beta", "level": 0, "info": {"name": "Si"}, "note": "scan of\nfoil\tsheet"},
    {"tag": "alphabet", "level": "high", "flag": 1, "note": 'a "quoted" word, \\escaped'},
]

#: (query, indices of MIXED that MongoDB matches)
MIXED_QUERIES = [
    ({"tag": "alpha"}, [0, 1]),
    ({"tag": "beta"}, [1, 3]),
    ({"tag": {"$in": ["beta", "gamma"]}}, [1, 2, 3]),
    ({"tag": {"$ne": "alpha"}}, [2, 3, 4]),
    ({"tag": {"$nin": ["alpha", "gamma"]}}, [3, 4]),
    ({"tag": {"$gt": "b"}}, [1, 2, 3]),
    ({"tag": {"$regex": "^alpha"}}, [0, 1, 4]),
    ({"level": {"$gt": 2}}, [1, 2]),
    ({"level": {"$lt": 2}}, [0, 1, 3]),
    ({"level": 1}, [0, 1]),
    ({"level": 0}, [3]),
    ({"level": {"$in": [0, 7]}}, [1, 3]),
    ({"level": {"$gte": "a"}}, [4]),
    ({"info.name": "Si"}, [2, 3]),
    ({"info.name": {"$exists": True}}, [2, 3]),
    ({"info": {"$exists": False}}, [0, 1, 4]),
    ({"flag": 1}, [4]),
    ({"flag": True}, [0]),
    ({"flag": {"$gte": 1}}, [4]),
]

#: (text search, indices of MIXED whose start strings hold one of its words)
MIXED_TEXT = [("foil", [3]), ("sheet", [3]), ("quoted", [4]), ("escaped", [4]), ("alpha", [0, 1]), ("gamma Ge", [2])]
