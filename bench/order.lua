-- wrk script (bench/waf.sh): POST a typical limit order to /v1/orders.
-- Usage: wrk ... -s bench/order.lua https://HOST:PORT/v1/orders
wrk.method = "POST"
wrk.path = "/v1/orders"
-- A host name, as real clients send: with an IP address in Host, CRS rule
-- 920350 adds a warning and ModSecurity writes an audit-log entry for every
-- request, which would slow it down for a reason unrelated to the WAF work.
wrk.headers["Host"] = "localhost"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}'
