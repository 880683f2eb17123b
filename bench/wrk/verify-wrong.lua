-- POST /verify with a wrong code for a random one of 100,000 users.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local body = string.format('{"username":"u%06d","token":"000000"}', math.random(0, 99999))
  return wrk.format(nil, "/verify", nil, body)
end
