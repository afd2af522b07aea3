#!/usr/bin/env python3
"""Sends N signed Shopify products/create deliveries one after the other on
one kept-alive connection (for instructions.sh: a fixed, repeatable load).

    send_sequential.py PORT N TAG SECRET BODY_FILE

Prints how many were answered 200. Event ids are TAG-0, TAG-1, ...
"""
import base64
import hashlib
import hmac
import http.client
import sys

port, n, tag, secret, body_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
body = open(body_file, "rb").read()
signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
ok = 0
for i in range(n):
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "products/create",
        "X-Shopify-Hmac-Sha256": signature,
        "X-Shopify-Shop-Domain": "bench.myshopify.com",
        "X-Shopify-Webhook-Id": f"{tag}-w{i}",
        "X-Shopify-Event-Id": f"{tag}-{i}",
        "X-Shopify-API-Version": "2026-01",
        "X-Shopify-Triggered-At": "2026-11-28T00:00:00Z",
    }
    conn.request("POST", "/webhooks/shopify/products/create", body, headers)
    response = conn.getresponse()
    response.read()
    ok += response.status == 200
print(ok)
