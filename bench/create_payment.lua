-- wrk script for bench/payments.py: POST /api/v1/payment/create with a new idempotency_token
-- (a UUID) in every request, so every request is a real, durable create, never a replay.
--   wrk -t1 -c64 -d10s --latency -s bench/create_payment.lua http://127.0.0.1:PORT -- TOKEN
-- The token is the client's x_auth_token. Each wrk thread gets its own random 80-bit prefix
-- and counts up in the last 12 hex digits: unique within a run and across runs.

local token = nil
local prefix = nil
local counter = 0
local path = "/api/v1/payment/create"

local function rand_hex(digits)
    local out = {}
    for i = 1, digits do
        out[i] = string.format("%x", math.random(0, 15))
    end
    return table.concat(out)
end

function init(args)
    token = args[1]
    if token == nil or token == "" then
        error("create_payment.lua: pass the client token after --")
    end
    -- seed from /dev/urandom: threads started in the same second must not share a prefix
    local f = io.open("/dev/urandom", "rb")
    local seed = os.time()
    if f then
        local bytes = f:read(4)
        f:close()
        seed = 0
        for i = 1, #bytes do
            seed = seed * 256 + bytes:byte(i)
        end
    end
    math.randomseed(seed)
    -- version 4 layout: xxxxxxxx-xxxx-4xxx-8xxx-<12-digit counter>
    prefix = rand_hex(8) .. "-" .. rand_hex(4) .. "-4" .. rand_hex(3) .. "-8" .. rand_hex(3) .. "-"
end

function request()
    counter = counter + 1
    local body = string.format(
        '{"idempotency_token":"%s%012x",' ..
        '"money_info":{"method_id":"card-7781","currency":"USD","amount":"12.50"},' ..
        '"recipcient":{"recipcient_id":"merchant-42"},' ..
        '"sender":{"sender_id":"user-1001"}}', prefix, counter)
    return wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        ["x_auth_token"] = token,
    }, body)
end
