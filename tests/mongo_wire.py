"""A MongoDB wire-protocol server answering from a mongomock client (``mockupdb``).

The command-line path takes ``mongodb://`` URIs; this serves a mongomock database over
a real socket so a ``databroker-migrate`` subprocess reads it through pymongo. It
answers the commands a read-only reader sends: the handshake, ``find``/``getMore``/
``killCursors``, ``count``, ``aggregate``, ``distinct``, ``listCollections`` and
``listIndexes``. Anything else gets an error reply that names the command.
"""

from __future__ import annotations

import itertools
import threading


class MongoWireServer:
    """Serve ``mongo_client`` (a ``mongomock.MongoClient``) on 127.0.0.1; ``close()`` stops it."""

    MAX_WIRE_VERSION = 17

    def __init__(self, mongo_client):
        from mockupdb import MockupDB

        self.mongo = mongo_client
        self.server = MockupDB(request_timeout=3600)
        self.port = self.server.run()
        self._cursors: dict[int, list] = {}
        self._ids = itertools.count(1000)
        self._stopped = False
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="mongo-wire", daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def close(self) -> None:
        self._stopped = True
        self.server.stop()
        self._thread.join(5)

    # -- dispatch ---------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopped:
            try:
                request = self.server.receives(timeout=0.5)
            except AssertionError:
                continue
            except Exception:  # server stopped under us
                if self._stopped:
                    return
                raise
            if request is None:
                return
            try:
                reply = self._answer(request)
            except Exception as err:  # report to the client, keep serving
                self.errors.append(repr(err))
                reply = {"ok": 0, "errmsg": f"test wire server: {err!r}", "code": 2}
            try:
                request.reply(reply)
            except Exception:
                if self._stopped:
                    return

    def _batch(self, docs: list, batch_size: int | None, key: str, ns: str) -> dict:
        size = batch_size or 101
        first, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest:
            cursor_id = next(self._ids)
            self._cursors[cursor_id] = rest
        return {"cursor": {"id": cursor_id, "ns": ns, key: first}, "ok": 1}

    def _answer(self, request) -> dict:
        doc = dict(request.doc)
        name = request.command_name
        lname = name.lower()
        dbname = request.namespace
        db = self.mongo[dbname]
        if lname in ("ismaster", "hello"):
            return {
                "ismaster": True,
                "isWritablePrimary": True,
                "helloOk": True,
                "minWireVersion": 0,
                "maxWireVersion": self.MAX_WIRE_VERSION,
                "maxBsonObjectSize": 16 * 1024 * 1024,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
                "logicalSessionTimeoutMinutes": 30,
                "ok": 1,
            }
        if lname in ("ping", "endsessions"):
            return {"ok": 1}
        if lname == "buildinfo":
            return {"version": "6.0.0", "versionArray": [6, 0, 0, 0], "ok": 1}
        if lname == "find":
            coll = db[doc["find"]]
            cursor = coll.find(doc.get("filter") or {}, doc.get("projection"))
            if doc.get("sort"):
                cursor = cursor.sort(list(doc["sort"].items()))
            if doc.get("skip"):
                cursor = cursor.skip(doc["skip"])
            if doc.get("limit"):
                cursor = cursor.limit(abs(doc["limit"]))
            docs = list(cursor)
            batch = doc.get("batchSize")
            if doc.get("singleBatch") or (doc.get("limit") and doc["limit"] < 0):
                batch = len(docs) or 1
            return self._batch(docs, batch, "firstBatch", f"{dbname}.{doc['find']}")
        if lname == "getmore":
            rest = self._cursors.pop(doc["getMore"], [])
            size = doc.get("batchSize") or len(rest)
            first, rest = rest[:size], rest[size:]
            cursor_id = 0
            if rest:
                cursor_id = doc["getMore"]
                self._cursors[cursor_id] = rest
            ns = f"{dbname}.{doc['collection']}"
            return {"cursor": {"id": cursor_id, "ns": ns, "nextBatch": first}, "ok": 1}
        if lname == "killcursors":
            for cid in doc.get("cursors", []):
                self._cursors.pop(cid, None)
            return {"cursorsKilled": doc.get("cursors", []), "ok": 1}
        if lname == "count":
            n = db[doc["count"]].count_documents(doc.get("query") or {})
            return {"n": n, "ok": 1}
        if lname == "aggregate":
            docs = list(db[doc["aggregate"]].aggregate(doc.get("pipeline", [])))
            size = (doc.get("cursor") or {}).get("batchSize")
            return self._batch(docs, size, "firstBatch", f"{dbname}.{doc['aggregate']}")
        if lname == "distinct":
            values = db[doc["distinct"]].distinct(doc["key"], doc.get("query") or {})
            return {"values": values, "ok": 1}
        if lname == "listcollections":
            names = db.list_collection_names()
            docs = [{"name": n, "type": "collection", "options": {}, "info": {"readOnly": False}} for n in names]
            return self._batch(docs, None, "firstBatch", f"{dbname}.$cmd.listCollections")
        if lname == "listindexes":
            info = db[doc["listIndexes"]].index_information()
            docs = [{"v": 2, "name": k, "key": dict(v["key"])} for k, v in info.items()]
            return self._batch(docs, None, "firstBatch", f"{dbname}.{doc['listIndexes']}")
        if lname == "listdatabases":
            names = self.mongo.list_database_names()
            return {"databases": [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names], "ok": 1}
        return {"ok": 0, "errmsg": f"command {name!r} is not served by the test wire server", "code": 59}


def _serve_pickled_spec(path: str) -> None:
    """Serve the database a pickled ``SyntheticSource`` builds; print the port; stop at EOF on stdin.

    Lets a benchmark keep the MongoDB stand-in in another process, as a real server is,
    so that what the migrating process allocates can be measured alone.
    """
    import pickle
    import sys

    with open(path, "rb") as fh:
        spec = pickle.load(fh)
    db, _ = spec.build()
    server = MongoWireServer(db.client)
    print(server.port, flush=True)
    sys.stdin.read()
    server.close()


if __name__ == "__main__":
    import sys

    _serve_pickled_spec(sys.argv[1])
