#!/usr/bin/env python3
"""Writes a large Shopify products/create body: the shared sample with 60
variants and a long description (about 40 KB), as real catalogues send.

    mk_large_body.py SAMPLE.json OUT.json
"""
import json
import sys

sample, out = sys.argv[1], sys.argv[2]
with open(sample) as f:
    product = json.load(f)
variant = product["variants"][0]
product["variants"] = [
    dict(variant, id=variant["id"] + i, title=f"Variant {i}", sku=f"SKU-{i:05d}")
    for i in range(60)
]
product["body_html"] = "<p>" + "Long description. " * 400 + "</p>"
with open(out, "w") as f:
    json.dump(product, f)
