# What tests/scopes.rs checks with the Rust driver, through pymongo (a driver we did not write):
# database and deployment streams, $match, rename and dropDatabase with their invalidate rules,
# startAfter an invalidate, transactions (lsid and txnNumber at commit, abort).
# Usage: python3 pymongo_scopes.py mongodb://127.0.0.1:PORT/?directConnection=true
import sys
import time
from pymongo import MongoClient
uri = sys.argv[1]
c = MongoClient(uri)
def take(stream, n):
    out = []
    deadline = time.monotonic() + 20
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} events: {out}"
        e = stream.try_next()
        if e is not None:
            out.append(e)
    assert stream.try_next() is None, "extra event"
    return out
c.shop.customers.insert_one({"_id": 7, "n": 0})
db_stream = c.shop.watch(max_await_time_ms=300)
all_stream = c.watch(max_await_time_ms=300, pipeline=[{"$match": {"ns.coll": {"$in": ["orders", "customers", "leads"]}}}])
c.crm.leads.insert_one({"_id": 1})
with c.start_session() as s:
    sid = s.session_id
    with s.start_transaction():
        c.shop.orders.insert_one({"_id": 1}, session=s)
        c.shop.customers.update_one({"_id": 7}, {"$inc": {"n": 1}}, session=s)
    with s.start_transaction():
        c.shop.orders.insert_one({"_id": 2}, session=s)
        s.abort_transaction()
assert c.shop.orders.count_documents({}) == 1
es = take(db_stream, 2)
assert [e["ns"]["coll"] for e in es] == ["orders", "customers"], es
assert es[0]["lsid"] == es[1]["lsid"] and es[0]["txnNumber"] == es[1]["txnNumber"], es
assert es[0]["clusterTime"] == es[1]["clusterTime"]
assert es[0]["lsid"]["id"] == sid["id"]
es = take(all_stream, 3)
assert [e["ns"]["coll"] for e in es] == ["leads", "orders", "customers"], es
assert "lsid" not in es[0]
c.shop.orders.rename("old_orders")
c.drop_database("shop")
es = take(db_stream, 5)
ops = [e["operationType"] for e in es]
assert ops[0] == "rename" and es[0]["to"] == {"db": "shop", "coll": "old_orders"}, es[0]
assert sorted(ops[1:3]) == ["drop", "drop"] and ops[3:] == ["dropDatabase", "invalidate"], ops
assert not db_stream.alive
again = c.shop.watch(start_after=es[4]["_id"], max_await_time_ms=300)
c.shop.orders.insert_one({"_id": 9})
assert take(again, 1)[0]["documentKey"] == {"_id": 9}
print("pymongo", __import__("pymongo").version, "OK")
