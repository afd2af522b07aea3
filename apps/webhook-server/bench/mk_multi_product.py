# Writes a wrk Lua script like shared/bench/mk_wrk_script.py, but cycling
# through N signed variants of the body, each with its own product id, so
# that dispatch (in order per product) can run N products side by side.
#   python3 mk_multi_product.py SECRET BODY_FILE OUT PATH N
import base64, hashlib, hmac, json, sys

secret, body_file, out, path, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
body = open(body_file, "rb").read().decode()
product_id = str(json.loads(body)["id"])
bodies, sigs = [], []
for i in range(n):
    b = body.replace(product_id, str(9000000000000 + i))
    bodies.append(b)
    sigs.append(base64.b64encode(hmac.new(secret.encode(), b.encode(), hashlib.sha256).digest()).decode())
lua = f'''
local bodies = {{{",".join(json.dumps(b) for b in bodies)}}}
local sigs = {{{",".join(json.dumps(s) for s in sigs)}}}
local n = {n}
local threads = {{}}
local t = 0
function setup(thread) t = t + 1; thread:set("tid", t) end
local counter = 0
local nonce = "0"
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  nonce = string.format("%d-%d", os.time(), math.random(1, 1000000000))
end
function request()
  counter = counter + 1
  local i = (counter % n) + 1
  local h = {{}}
  h["Content-Type"] = "application/json"
  h["X-Shopify-Topic"] = "products/create"
  h["X-Shopify-Hmac-Sha256"] = sigs[i]
  h["X-Shopify-Shop-Domain"] = "bench-store.myshopify.com"
  h["X-Shopify-API-Version"] = "2026-01"
  h["X-Shopify-Webhook-Id"] = string.format("m%s-%s-%d", tostring(tid), nonce, counter)
  h["X-Shopify-Event-Id"] = h["X-Shopify-Webhook-Id"]
  h["X-Shopify-Triggered-At"] = "2026-11-28T05:00:00.000Z"
  return wrk.format("POST", "{path}", h, bodies[i])
end
'''
open(out, "w").write(lua)
