"""Verifies Standard Webhooks signatures with the reference `standardwebhooks` library.

Reads a JSON file: {"secret": "whsec_...", "requests": [{"headers": {...}, "body": "..."}]} and
prints one line per request: "ok <webhook-id>" or "bad <error>". Exit status 0 always (the Rust
test reads the lines); used by crates/channels/tests/it/webhooks.rs.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

spec = json.load(open(sys.argv[1]))
wh = Webhook(spec["secret"])
for r in spec["requests"]:
    try:
        payload = wh.verify(r["body"], r["headers"])
        print("ok", r["headers"]["webhook-id"], payload["type"])
    except Exception as e:  # noqa: BLE001 - any failure is reported to the test
        print("bad", type(e).__name__, str(e).replace("\n", " "))
